"""Read trace files written by trace_gen into a conversational dataset for TRL."""

import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, load_dataset
from datasets.exceptions import DatasetGenerationError
from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

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
        raise UsageError(
            f"no Parquet parts in {path} (data/*.parquet or *.parquet): pass a trace_gen output directory, or a "
            ".parquet / .jsonl file, with --traces"
        )
    return [str(f) for f in files]


def _non_empty(files: list[str], traces: str) -> list[str]:
    """Parquet parts that hold rows (datasets fails on a 0-row part); JSON files as given."""
    if files[0].endswith((".jsonl", ".json")):
        return files
    try:
        kept = [f for f in files if pq.read_metadata(f).num_rows > 0]
    except (pa.ArrowInvalid, OSError) as err:
        raise UsageError(
            f"{traces}: cannot read as Parquet ({err}): pass trace_gen's Parquet parts"
        ) from None
    if not kept:
        raise UsageError(f"{traces} has 0 rows ({len(files)} empty Parquet part(s)): generate traces first")
    return kept


def _check_rows(ds: Dataset, traces: str) -> str:
    """The text column (`messages`: a list of {role, content}; `text`: a string)."""
    expected = "a `messages` column of chat turns [{role, content}, ...] (or a `text` column of strings)"
    column = next((c for c in TEXT_COLUMNS if c in ds.column_names), None)
    feature = ds.features.get(column)
    if column == "messages":
        inner = getattr(feature, "feature", None)
        ok = isinstance(inner, dict) and {"role", "content"} <= set(inner)
    else:
        ok = column == "text" and getattr(feature, "dtype", None) in ("string", "large_string")
    if not ok:
        found = ", ".join(f"{c} ({ds.features[c]!r})" if c == column else str(c) for c in ds.column_names)
        raise UsageError(
            f"{traces} does not hold chat rows (columns: {found}); expected {expected}: write traces with "
            "`python -m trace_gen` or convert the file"
        )
    return column


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
    files = _non_empty(trace_files(traces, include_rejected), traces)
    kind = "json" if files[0].endswith((".jsonl", ".json")) else "parquet"
    bars = is_progress_bar_enabled()
    disable_progress_bar()  # small local reads: the bars would only bury an error line below them
    json_log = logging.getLogger("datasets.packaged_modules.json.json")  # logs what the UsageError below says
    json_level = json_log.level
    json_log.setLevel(logging.CRITICAL)
    try:
        try:
            ds = load_dataset(kind, data_files=files, split="train")
        except DatasetGenerationError as err:  # e.g. a JSON syntax error or non-UTF-8 bytes
            cause = err.__cause__ or err
            raise UsageError(
                f"{traces} cannot be read as {kind.upper()} ({type(cause).__name__}: {str(cause).splitlines()[0]}): "
                "fix the file, or pass trace_gen's output with --traces"
            ) from err
        column = _check_rows(ds, traces)
        if "all" not in keep_verdicts and "verdict" in ds.column_names:
            keep = set(keep_verdicts)
            found = Counter(ds["verdict"])
            ds = ds.filter(lambda v: v in keep, input_columns="verdict")
            if len(ds) == 0:
                counts = ", ".join(f"{v}: {n}" for v, n in found.most_common())
                raise UsageError(
                    f"no rows left in {traces} after keeping verdicts {keep_verdicts}: {sum(found.values())} "
                    f"rows, verdicts found: {counts}; pass --keep_verdicts with one of them, or all"
                )
    finally:
        json_log.setLevel(json_level)
        if bars:
            enable_progress_bar()
    if len(ds) == 0:
        raise UsageError(f"{traces} has 0 rows: generate traces first")
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    return ds.select_columns([column, *(c for c in extra_columns if c in ds.column_names)])
