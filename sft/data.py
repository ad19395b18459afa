"""Read trace files written by trace_gen into a conversational dataset for TRL.

Several trace directories (e.g. one trace_gen run per teacher: trace_gen takes one --teacher per run and
`trace_gen merge` joins only the shards of one run) are read together as `--traces DIR_A,DIR_B`; each row
keeps its `teacher` column, and `--trace_teacher_weights "A=1,B=0.5"` sets each teacher's share of the rows.
"""

from pathlib import Path

import numpy as np
from datasets import Dataset, load_dataset

from sft.errors import UsageError

TEXT_COLUMNS = ("messages", "text")  # chat rows (traces) or plain language-modelling text


def teacher_counts(present: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """Rows to keep per teacher: the largest subset (no row repeated) whose shares follow `weights`.

    present: {teacher: rows available}; every teacher present must be in `weights` (0 drops it).
    """
    total = sum(weights[t] for t in present)
    if total == 0:
        raise UsageError(
            f"trace_teacher_weights give 0 to every teacher present ({', '.join(sorted(present))})"
        )
    share = {t: weights[t] / total for t in present}
    n = min(present[t] / share[t] for t in present if share[t] > 0)  # rows of the whole selection
    return {t: min(present[t], int(share[t] * n + 0.5)) for t in present}


def select_by_teacher(ds: Dataset, weights: dict[str, float], seed: int) -> tuple[Dataset, dict[str, int]]:
    """Rows of `ds` sampled by its `teacher` column in the proportions `weights` (deterministic in `seed`)."""
    if "teacher" not in ds.column_names:
        raise UsageError(
            "--trace_teacher_weights needs a `teacher` column in the traces (trace_gen writes one)"
        )
    teachers = np.asarray([str(t) for t in ds["teacher"]])  # a null teacher reads as "None"
    names, counts = np.unique(teachers, return_counts=True)
    present = dict(zip(names.tolist(), counts.tolist(), strict=True))
    unknown, unnamed = sorted(set(weights) - set(present)), sorted(set(present) - set(weights))
    if unknown or unnamed:
        problem = f"unknown teacher(s) {unknown}" if unknown else f"no weight for teacher(s) {unnamed}"
        raise UsageError(
            f"--trace_teacher_weights: {problem}; teachers in the traces: {', '.join(sorted(present))} "
            "(name each, 0 drops one)"
        )
    keep = teacher_counts(present, weights)
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.flatnonzero(teachers == t))[: keep[t]] for t in sorted(present)]
    return ds.select(np.sort(np.concatenate(rows)).tolist()), keep


def trace_files(traces: str, include_rejected: bool) -> list[str]:
    if "," in traces:
        return [
            f
            for part in traces.split(",")
            if part.strip()
            for f in trace_files(part.strip(), include_rejected)
        ]
    path = Path(traces)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise UsageError(
            f"traces not found at {path}: run `python -m trace_gen --out {path}` first or pass --traces"
        )
    # kept parts: OUT/data/ (trace_gen's dataset layout) or the top level (older dirs, filter output)
    files = sorted((path / "data").glob("*.parquet")) + sorted(path.glob("*.parquet"))
    if include_rejected:
        files += sorted((path / "rejected").glob("*.parquet"))
    if not files:
        raise UsageError(f"no Parquet parts in {path}: is it a trace_gen output directory?")
    return [str(f) for f in files]


def load_traces(
    traces: str,
    keep_verdicts: list[str],
    include_rejected: bool = False,
    max_samples: int | None = None,
    extra_columns: tuple[str, ...] = (),
    teacher_weights: dict[str, float] | None = None,
    seed: int = 0,
) -> Dataset:
    """The `messages` column of the kept rows (TRL's conversational format), or `text` for plain LM data.

    `extra_columns` present in the files are kept too (e.g. the teacher's top-k for offline KD).
    `teacher_weights` ({teacher: weight}) samples the kept rows by teacher (`select_by_teacher`) before
    `max_samples`.
    """
    files = trace_files(traces, include_rejected)
    kind = "json" if files[0].endswith((".jsonl", ".json")) else "parquet"
    ds = load_dataset(kind, data_files=files, split="train")
    column = next((c for c in TEXT_COLUMNS if c in ds.column_names), None)
    if column is None:
        raise UsageError(
            f"{traces} has no 'messages' column (columns: {', '.join(ds.column_names)}); "
            "write traces with `python -m trace_gen` or add a chat-format `messages` column"
        )
    if "all" not in keep_verdicts and "verdict" in ds.column_names:
        keep = set(keep_verdicts)
        ds = ds.filter(lambda v: v in keep, input_columns="verdict")
    if len(ds) == 0:
        raise UsageError(f"no rows left in {traces} after keeping verdicts {keep_verdicts}")
    if teacher_weights is not None:
        ds, keep = select_by_teacher(ds, teacher_weights, seed)
        print(f"trace teachers: {', '.join(f'{t} {n} rows' for t, n in keep.items())}", flush=True)
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    return ds.select_columns([column, *(c for c in extra_columns if c in ds.column_names)])
