"""`python -m trace_gen filter IN OUT`: run the trace filter on an existing traces directory.

Flags mirror `trace_gen.filters.FilterConfig` fields (one flag per field, same defaults and help),
so the filter run here and the one called from Python agree. Writes OUT/part-00000.parquet,
OUT/rejected/part-00000.parquet and OUT/filter_report.json, and prints the report. OUT is built in a
hidden temporary sibling and renamed when complete (trace_gen.outdir): a killed filter leaves no OUT,
and the next one removes its temporary directory. Rows the code sandbox flagged are dropped
(--no-drop-flagged, or --keep-flagged as `python -m trace_gen` spells it, keeps them); --audit also
writes OUT/audit_report.json, where a sympy-free second opinion disagrees with the math verdicts (the
rows a human should read first).

Usage:
    python -m trace_gen filter runs/traces runs/traces-filtered --policy max_per_prompt --m 4 \\
        --no-decontaminate --audit
"""

import argparse
import dataclasses
import types
import typing
from pathlib import Path

from trace_gen.filters.pipeline import FilterConfig


def _flag_type(annotation):
    """(argparse type, nargs) of a FilterConfig field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return args[0], "*"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return args[0], None
    return annotation, None


def make_parser() -> argparse.ArgumentParser:
    from trace_gen.cli import add_flag, new_parser

    p = new_parser("python -m trace_gen filter", __doc__.split("\n")[0])
    p.add_argument("input", type=Path, help="traces directory (Parquet parts)")
    p.add_argument("output", type=Path, help="new directory for the filtered traces and filter_report.json")
    hints = typing.get_type_hints(FilterConfig)
    for f in dataclasses.fields(FilterConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "")
        if hints[f.name] is bool:
            action = argparse.BooleanOptionalAction
            add_flag(p, (flag,), dest=f.name, action=action, default=default, help=help_text)
            continue
        kind, nargs = _flag_type(hints[f.name])
        add_flag(p, (flag,), dest=f.name, type=kind, nargs=nargs, default=default, help=help_text)
    add_flag(p, ("--keep-flagged",), dest="drop_flagged", action="store_false", default=argparse.SUPPRESS,
             help="same as --no-drop-flagged (the spelling of `python -m trace_gen`)")  # fmt: skip
    add_flag(
        p, ("--debug",), action="store_true", help="print the full traceback instead of the one-line error"
    )
    return p


def run_filter(args: argparse.Namespace) -> dict:
    from trace_gen.dataset import trace_parts
    from trace_gen.errors import UsageError
    from trace_gen.filters.pipeline import filter_traces
    from trace_gen.outdir import building, check_writable

    if not trace_parts(args.input):
        raise UsageError(f"no Parquet parts in {args.input}; give a trace_gen output directory")
    check_writable(args.output, "filter OUTPUT")
    if args.output.exists() and any(args.output.iterdir()):
        raise UsageError(f"{args.output} is not empty; filter into a new directory")
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(FilterConfig)}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    config = FilterConfig(**fields)
    with building(args.output) as tmp:
        report = filter_traces(args.input, tmp, config)
    return report
