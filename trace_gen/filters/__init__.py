"""Data hygiene for traces: format checks, dedup, decontamination, keep policies, and the report."""

from trace_gen.filters.decontam import Decontaminator
from trace_gen.filters.dedup import duplicate_reasons
from trace_gen.filters.format import format_problem
from trace_gen.filters.pipeline import FilterConfig, filter_rows, filter_traces
from trace_gen.filters.policy import apply_policy

__all__ = [
    "Decontaminator",
    "FilterConfig",
    "apply_policy",
    "duplicate_reasons",
    "filter_rows",
    "filter_traces",
    "format_problem",
]
