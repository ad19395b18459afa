"""Read trace files written by trace_gen into a conversational dataset for TRL.

Several trace directories (e.g. one trace_gen run per teacher: trace_gen takes one --teacher per run and
`trace_gen merge` joins only the shards of one run) are read together as `--traces DIR_A,DIR_B`; each row
keeps its `teacher` column, and `--trace_teacher_weights "A=1,B=0.5"` sets each teacher's share of the rows.
"""

import logging
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from datasets.exceptions import DatasetGenerationError
from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

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


@contextmanager
def _quiet_reads():
    """Small local reads: no progress bars (they would bury an error line below them), and no JSON-builder log
    of what the UsageError says."""
    bars = is_progress_bar_enabled()
    disable_progress_bar()
    json_log = logging.getLogger("datasets.packaged_modules.json.json")
    json_level = json_log.level
    json_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        json_log.setLevel(json_level)
        if bars:
            enable_progress_bar()


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
    files = _non_empty(trace_files(traces, include_rejected), traces)
    kind = "json" if files[0].endswith((".jsonl", ".json")) else "parquet"
    with _quiet_reads():
        try:
            ds = load_dataset(kind, data_files=files, split="train")
        except DatasetGenerationError as err:  # e.g. a JSON syntax error or non-UTF-8 bytes
            cause = err.__cause__ or err
            raise UsageError(
                f"{traces} cannot be read as {kind.upper()} ({type(cause).__name__}: {str(cause).splitlines()[0]}): "
                "fix the file, or pass trace_gen's output with --traces"
            ) from err
        return select_rows(ds, traces, keep_verdicts, max_samples, extra_columns, teacher_weights, seed)


def select_rows(
    ds: Dataset,
    source: str,
    keep_verdicts: list[str],
    max_samples: int | None = None,
    extra_columns: tuple[str, ...] = (),
    teacher_weights: dict[str, float] | None = None,
    seed: int = 0,
) -> Dataset:
    """The rows to train on (any source): checked chat/text rows, kept verdicts, teacher shares, max_samples."""
    column = _check_rows(ds, source)
    if "all" not in keep_verdicts and "verdict" in ds.column_names:
        keep = set(keep_verdicts)
        found = Counter(ds["verdict"])
        ds = ds.filter(lambda v: v in keep, input_columns="verdict")
        if len(ds) == 0:
            counts = ", ".join(f"{v}: {n}" for v, n in found.most_common())
            raise UsageError(
                f"no rows left in {source} after keeping verdicts {keep_verdicts}: {sum(found.values())} "
                f"rows, verdicts found: {counts}; pass --keep_verdicts with one of them, or all"
            )
    if len(ds) == 0:
        raise UsageError(f"{source} has 0 rows: generate traces first")
    if teacher_weights is not None:
        ds, kept = select_by_teacher(ds, teacher_weights, seed)
        print(f"trace teachers: {', '.join(f'{t} {n} rows' for t, n in kept.items())}", flush=True)
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    return ds.select_columns([column, *(c for c in extra_columns if c in ds.column_names)])


def load_named_dataset(name: str, config: str | None) -> DatasetDict:
    """--dataset_name: a hub id (cached, when offline), a local directory or file `datasets.load_dataset` reads
    (Parquet/JSONL/CSV files, a saved hub snapshot), or a directory written by `Dataset.save_to_disk`."""
    local = Path(name).expanduser()
    with _quiet_reads():
        try:
            if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():  # save_to_disk
                loaded = load_from_disk(str(local))
            elif local.is_file():
                kind = {".jsonl": "json", ".json": "json"}.get(local.suffix, local.suffix.lstrip("."))
                loaded = load_dataset(kind, data_files=str(local))
            else:
                loaded = load_dataset(name, name=config)
        except ConnectionError as err:  # offline (HF_HUB_OFFLINE=1) and not in the cache, or no network
            raise UsageError(
                f"--dataset_name {name}: not a local path and not in the datasets cache ({str(err).splitlines()[0]}): "
                "download it first (huggingface-cli download --repo-type dataset NAME) or pass a local directory"
            ) from None
        except (FileNotFoundError, ValueError, DatasetGenerationError) as err:
            raise UsageError(
                f"--dataset_name {name}: datasets.load_dataset cannot read it ({type(err).__name__}: "
                f"{str(err).splitlines()[0]}): pass a hub id, a directory of Parquet/JSONL files, or a "
                "save_to_disk directory"
            ) from None
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def load_mixture(mixture) -> Dataset:
    """A `datasets:` mixture (TRL's DatasetMixtureConfig: path, name, split, columns, fraction = its weight),
    read by TRL's own get_dataset: each `fraction` is the dataset's share of the rows, none repeated."""
    from trl import get_dataset

    with _quiet_reads():
        try:
            return get_dataset(mixture)["train"]
        except ConnectionError as err:
            raise UsageError(
                f"datasets mixture: a dataset is not local and not in the cache ({str(err).splitlines()[0]}): "
                "download it first or give its local path"
            ) from None
        except (FileNotFoundError, ValueError, DatasetGenerationError) as err:
            raise UsageError(
                f"datasets mixture: {type(err).__name__}: {str(err).splitlines()[0]} (each entry needs `path`, "
                "optional `name`, `split`, `columns`, and `fraction` on all entries or none)"
            ) from None


def split_of(splits: DatasetDict, split: str, name: str, flag: str) -> Dataset:
    if split not in splits:
        raise UsageError(
            f"--dataset_name {name} has no split {split!r} (splits: {', '.join(splits)}): pass {flag} with one of them"
        )
    return splits[split]


def training_splits(
    args,
    script_args=None,
    mixture=None,
    evaluate: bool = False,
    extra_columns: tuple[str, ...] = (),
    teacher_weights: dict[str, float] | None = None,
    seed: int = 0,
) -> tuple[Dataset, Dataset | None, str]:
    """(train rows, eval rows or None, the source's name) for `sft run`.

    args: DistillArguments; script_args / mixture: TRL's ScriptArguments / DatasetMixtureConfig (None: traces).
    Train rows come from a `datasets:` mixture, --dataset_name, or --traces (the default). With `evaluate`,
    eval rows come from --eval_traces, --eval_split_ratio of the train rows (seeded), or the dataset's
    --dataset_test_split; --max_samples then caps the train rows.
    """

    def pick(ds: Dataset, source: str, weights=None) -> Dataset:
        return select_rows(ds, source, args.keep_verdicts, None, extra_columns, weights, seed)

    splits = None
    if mixture is not None and mixture.datasets:
        source = "datasets mixture (" + ", ".join(d.path for d in mixture.datasets) + ")"
        train = pick(load_mixture(mixture), source, teacher_weights)
    elif script_args is not None and script_args.dataset_name:
        source = script_args.dataset_name
        splits = load_named_dataset(source, script_args.dataset_config)
        train_split = split_of(splits, script_args.dataset_train_split, source, "--dataset_train_split")
        train = pick(train_split, source, teacher_weights)
    else:
        source = args.traces
        train = load_traces(
            args.traces, args.keep_verdicts, args.include_rejected, None, extra_columns, teacher_weights, seed
        )
    evaluation = None
    if evaluate and args.eval_traces:
        evaluation = load_traces(args.eval_traces, args.keep_verdicts, False, None, extra_columns, None, seed)
    elif evaluate and args.eval_split_ratio:
        if round(len(train) * args.eval_split_ratio) < 1:
            raise UsageError(
                f"--eval_split_ratio {args.eval_split_ratio} of {len(train)} rows holds out no row: raise it"
            )
        held = train.train_test_split(test_size=args.eval_split_ratio, seed=seed)
        train, evaluation = held["train"], held["test"]
    elif evaluate and splits is not None and script_args.dataset_test_split in splits:
        test = script_args.dataset_test_split
        evaluation = pick(splits[test], f"{source} [{test}]")
    elif evaluate:
        found = f" (splits: {', '.join(splits)})" if splits is not None else ""
        raise UsageError(
            f"--eval_strategy is set but {source} gives no eval rows{found}: pass --eval_traces DIR, "
            "--eval_split_ratio 0.05, or --dataset_test_split SPLIT (or --eval_strategy no)"
        )
    if args.max_samples is not None:
        train = train.select(range(min(args.max_samples, len(train))))
    return train, evaluation, source
