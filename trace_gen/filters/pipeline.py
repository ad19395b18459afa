"""The trace filter: verdicts, format, dedup, decontamination and a keep policy, with a report.

`filter_rows(rows, config)` takes trace rows (the schema in ../shared/DESIGN.md) and returns
(kept, rejected, report): each rejected row gains a `filter_reason`, and the report counts rows
per verdict and per reason. Checks run in order and a row is charged to the first one it fails:
verdict -> sandbox flags -> format -> exact/near duplicate (within a prompt) -> decontamination ->
keep policy.

`filter_traces(in_dir, out_dir, config)` does the same on a traces directory of Parquet parts and
writes out_dir/part-00000.parquet, out_dir/rejected/part-00000.parquet and out_dir/filter_report.json;
with `audit=True` also out_dir/audit_report.json: the math rows' verdicts against a sympy-free second
opinion (`trace_gen.verify.audit`), with the rows where the two disagree.

Usage:
    from trace_gen.filters import FilterConfig, filter_traces
    report = filter_traces("traces/", "traces_filtered/", FilterConfig(policy="max_per_prompt", m=4))
"""

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trace_gen.filters.decontam import Decontaminator
from trace_gen.filters.dedup import duplicate_reasons
from trace_gen.filters.format import format_problem
from trace_gen.filters.policy import apply_policy, flag_reason
from trace_gen.verify.verdict import KEPT_VERDICTS, MATH_VERDICTS, Verdict


@dataclass
class FilterConfig:
    """What the filter keeps. Every field has a default; see the module docstring for the order."""

    keep_verdicts: tuple[str, ...] = field(
        default=tuple(sorted(KEPT_VERDICTS)), metadata={"help": "verdicts kept (others rejected)"}
    )
    drop_flagged: bool = field(
        default=True,
        metadata={"help": "drop rows the code sandbox flagged (network, writes, signals, tampering...)"},
    )
    require_think: bool = field(default=True, metadata={"help": "</think> exactly once"})
    min_chars: int = field(default=1, metadata={"help": "shortest completion kept (characters)"})
    max_chars: int | None = field(default=None, metadata={"help": "longest completion kept (characters)"})
    check_repetition: bool = field(default=True, metadata={"help": "drop degenerate repetition"})
    check_language: bool = field(default=True, metadata={"help": "drop mixed-language completions"})
    near_dup_threshold: float | None = field(
        default=0.9, metadata={"help": "MinHash Jaccard threshold within a prompt; None: exact only"}
    )
    decontaminate: bool = field(default=True, metadata={"help": "8-gram check against benchmarks"})
    benchmarks_dir: str | None = field(
        default=None, metadata={"help": "default: the sets shipped in trace_gen/verify/data"}
    )
    extra_contamination_sets: tuple[str, ...] = field(
        default=(), metadata={"help": "more JSONL files whose problem/question/prompt texts are test data"}
    )
    ngram: int = field(default=8, metadata={"help": "n of the decontamination word n-grams"})
    policy: str = field(default="all", metadata={"help": "all | max_per_prompt | shortest"})
    m: int = field(default=1, metadata={"help": "samples per prompt for max_per_prompt"})
    audit: bool = field(
        default=False, metadata={"help": "second opinion on math verdicts; writes audit_report.json"}
    )


def prompt_text(row: dict) -> str:
    """The user turn(s) of a row's messages (what decontamination compares)."""
    messages = row.get("messages") or []
    return "\n".join(str(msg.get("content") or "") for msg in messages if msg.get("role") == "user")


def filter_rows(
    rows: list[dict], config: FilterConfig | None = None, decontaminator: Decontaminator | None = None
) -> tuple[list[dict], list[dict], dict]:
    """Split rows into (kept, rejected with filter_reason, report)."""
    config = config or FilterConfig()
    reasons: list[str | None] = [None] * len(rows)
    for i, row in enumerate(rows):
        verdict = row.get("verdict")
        if verdict not in config.keep_verdicts:
            reasons[i] = f"verdict:{verdict}"
            continue
        if config.drop_flagged and (flag := flag_reason(row)):
            reasons[i] = f"flagged:{flag}"
            continue
        problem = format_problem(
            row.get("completion") or "",
            row.get("finish_reason"),
            config.require_think,
            config.min_chars,
            config.max_chars,
            config.check_repetition,
            config.check_language,
        )
        if problem:
            reasons[i] = f"format:{problem}"

    alive = [i for i, r in enumerate(reasons) if r is None]
    dups = duplicate_reasons(
        [rows[i].get("completion") or "" for i in alive],
        [rows[i].get("prompt_id") for i in alive],
        threshold=config.near_dup_threshold or 1.0,
    )
    for i, dup in zip(alive, dups, strict=True):
        if dup == "exact_duplicate" or (dup and config.near_dup_threshold is not None):
            reasons[i] = f"dedup:{dup}"

    if config.decontaminate:
        if decontaminator is None:
            decontaminator = Decontaminator.from_benchmarks(config.benchmarks_dir, config.ngram)
            for path in config.extra_contamination_sets:
                decontaminator.add_jsonl(path)
        for i in [i for i, r in enumerate(reasons) if r is None]:
            source = decontaminator.match(prompt_text(rows[i]))
            if source:
                reasons[i] = f"contaminated:{source}"

    alive = [i for i, r in enumerate(reasons) if r is None]
    for i, keep in zip(alive, apply_policy([rows[i] for i in alive], config.policy, config.m), strict=True):
        if not keep:
            reasons[i] = f"policy:{config.policy}"

    kept = [row for row, r in zip(rows, reasons, strict=True) if r is None]
    rejected = [{**row, "filter_reason": r} for row, r in zip(rows, reasons, strict=True) if r is not None]
    report = {
        "rows": len(rows),
        "kept": len(kept),
        "rejected": len(rejected),
        "prompts": len({row.get("prompt_id") for row in rows}),
        "prompts_kept": len({row.get("prompt_id") for row in kept}),
        "verdicts": dict(Counter(str(row.get("verdict")) for row in rows)),
        "reasons": dict(Counter(r for r in reasons if r is not None)),
        "unisolated_code_verdicts": sum("UNISOLATED" in str(row.get("verdict_reason") or "") for row in rows),
        "flagged_rows": sum(flag_reason(row) is not None for row in rows),
        "config": asdict(config),
    }
    return kept, rejected, report


def filter_traces(in_dir: str | Path, out_dir: str | Path, config: FilterConfig | None = None) -> dict:
    """Filter a traces dir of Parquet parts into out_dir (kept, rejected/, filter_report.json)."""
    config = config or FilterConfig()
    import pyarrow as pa
    import pyarrow.parquet as pq

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    from trace_gen.dataset import trace_parts

    parts = trace_parts(in_dir)
    assert parts, f"no Parquet parts in {in_dir}"
    table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
    rows = table.to_pylist()
    kept, rejected, report = filter_rows(rows, config)
    (out_dir / "rejected").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept, schema=table.schema), out_dir / "part-00000.parquet")
    if rejected:
        schema = table.schema.append(pa.field("filter_reason", pa.string()))
        pq.write_table(
            pa.Table.from_pylist(rejected, schema=schema), out_dir / "rejected" / "part-00000.parquet"
        )
    report["input_parts"] = [p.name for p in parts]
    if config.audit:
        report["audit"] = audit_rows(rows, out_dir / "audit_report.json")
    (out_dir / "filter_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def audit_rows(rows: list[dict], path: Path) -> dict:
    """The disagreement audit of the math rows (a gold and a math verdict) written to `path`; its summary."""
    from trace_gen.verify.audit import audit_math

    math_rows = [r for r in rows if r.get("gold") not in (None, "") and r.get("verdict") in MATH_VERDICTS]
    primary = [Verdict(r["verdict"], str(r.get("verdict_reason") or "")) for r in math_rows]
    audit = audit_math(
        [r.get("completion") or "" for r in math_rows], [r["gold"] for r in math_rows], primary
    )
    for d in audit["disagreements"]:
        d["prompt_id"], d["sample_idx"] = (
            math_rows[d["index"]].get("prompt_id"),
            math_rows[d["index"]].get("sample_idx"),
        )
    path.write_text(json.dumps(audit, indent=2, sort_keys=True))
    return {k: audit[k] for k in ("rows", "pairs", "agreement_when_both_decided")} | {
        "disagreements": len(audit["disagreements"]),
        "file": path.name,
    }
