"""Answer verification: the one place that decides "is this answer right".

Both the trace filter (trace_gen) and the benchmarks (eval_harness) import from here, so a trace
kept for training and a benchmark answer scored correct are judged by the same code.
"""

from trace_gen.verify.math import extract_boxed, verify_math
from trace_gen.verify.verdict import KEPT_VERDICTS, Verdict

__all__ = ["KEPT_VERDICTS", "Verdict", "extract_boxed", "verify_math"]
