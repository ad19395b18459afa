"""Read trace files written by trace_gen into a conversational dataset for TRL."""

from pathlib import Path

from datasets import Dataset, load_dataset

from sft.errors import UsageError

TEXT_COLUMNS = ("messages", "text")  # chat rows (traces) or plain language-modelling text


def trace_files(traces: str, include_rejected: bool) -> list[str]:
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
) -> Dataset:
    """The `messages` column of the kept rows (TRL's conversational format), or `text` for plain LM data.

    `extra_columns` present in the files are kept too (e.g. the teacher's top-k for offline KD).
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
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    return ds.select_columns([column, *(c for c in extra_columns if c in ds.column_names)])
