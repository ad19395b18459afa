"""Problems to prompt the teacher with: the built-in toy task, or a local JSONL/Parquet/saved dataset, or
a hub dataset by name. Every source becomes the same `PromptRecord`.

Empty problems are kept as records (the pipeline skips and counts them), so a dataset's row count
always equals prompts done + prompts skipped. A column that is empty in every row (or an id column
empty in any) is refused before the teacher loads, in one line naming the column flag.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from trace_gen.errors import UsageError
from trace_gen.toy import task as toy

R1_INSTRUCTION = toy.INSTRUCTION


@dataclass(frozen=True)
class PromptRecord:
    prompt_id: str
    problem: str
    gold: str
    messages: tuple[dict, ...]  # the chat sent to the teacher (system?, user)
    tests: str | None = None  # JSON code tests (see trace_gen.code_tests); None for math problems


def _messages(problem: str, system_prompt: str | None, instruction: str | None) -> tuple[dict, ...]:
    user = f"{problem}\n{instruction}" if instruction else problem
    system = ({"role": "system", "content": system_prompt},) if system_prompt else ()
    return (*system, {"role": "user", "content": user})


def toy_prompts(split: str, system_prompt: str | None = None) -> list[PromptRecord]:
    return [
        PromptRecord(p.prompt_id, p.problem, p.answer, _messages(p.problem, system_prompt, toy.INSTRUCTION))
        for p in toy.split(split)
    ]


def _read_jsonl(path: Path) -> list:
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise UsageError(
                    f"{path}:{lineno} is not UTF-8 ({err.reason}); re-encode the file as UTF-8"
                ) from err
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UsageError(f"{path}:{lineno} is not valid JSON ({err.msg}); fix or remove it") from err
    return rows


def _read_json(path: Path) -> list:
    """A .json file: one JSON array of rows (or one object), else JSON Lines."""
    try:
        value = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _read_jsonl(path)  # also reports the line of a real syntax error
    return value if isinstance(value, list) else [value]


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise UsageError(f"cannot read {path} as Parquet ({err}); give a valid .parquet file") from None


def load_rows(dataset: str, split: str) -> list[dict]:
    """The rows of a problem set: a .jsonl/.json/.parquet file, a saved dataset directory, or a hub
    dataset by name; every failure is one UsageError line. (eval_harness reads custom sets with it.)"""
    path = Path(dataset).expanduser()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    if path.suffix in readers:
        if not path.is_file():
            raise UsageError(f"dataset file not found: {path}")
        rows = readers[path.suffix](path)
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise UsageError(
                    f"{path}: row {i} is {type(row).__name__}, not an object with named columns; "
                    'give one JSON object per row, e.g. {"problem": ..., "answer": ...}'
                )
        return rows
    if path.is_dir() and (path / "dataset_dict.json").exists():
        raise UsageError(f"{path} is a DatasetDict; pass one split's directory, e.g. {path}/{split}")
    if path.is_dir() and (path / "dataset_info.json").exists():
        from datasets import load_from_disk

        return load_from_disk(str(path)).to_list()
    if path.exists() or dataset.startswith((".", "/", "~")):
        raise UsageError(
            f"cannot read dataset {path}: give a .jsonl, .json or .parquet file or a saved dataset directory"
        )
    from datasets import load_dataset

    try:
        return load_dataset(dataset, split=split).to_list()  # hub name
    except Exception as err:  # offline, unknown name, gated: one line, not a traceback
        raise UsageError(
            f"cannot load dataset {dataset!r} (split {split!r}) from the hub: {type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}; give a local .jsonl/.parquet instead"
        ) from err


_load_rows = load_rows  # the old private name, still imported by eval_harness.benchmarks.custom


def _tests_json(value) -> str | None:
    """Normalise a dataset's tests cell (dict, list or JSON text) to JSON text; None when empty."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return json.dumps({"test": value})  # a bare HumanEval-style test program
    return json.dumps(value)


def _blank(value) -> bool:
    """None, a blank string, an empty list or dict."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or value == [] or value == {}


def dataset_prompts(
    dataset: str,
    split: str,
    problem_column: str,
    answer_column: str | None,
    id_column: str | None,
    system_prompt: str | None,
    instruction: str | None,
    tests_column: str | None = None,
) -> list[PromptRecord]:
    rows = load_rows(dataset, split)
    if not rows:
        raise UsageError(f"dataset {dataset} has no rows")
    columns = list(dict.fromkeys(k for row in rows[:1000] for k in row))
    for flag, col in (
        ("--problem-column", problem_column),
        ("--answer-column", answer_column),
        ("--id-column", id_column),
        ("--tests-column", tests_column),
    ):
        if col is None:
            continue
        if col not in columns:
            raise UsageError(
                f"dataset {dataset} has no column {col!r} (columns: {', '.join(map(str, columns))}); "
                f"map yours with {flag} (also --problem-column, --answer-column, --id-column)"
            )
        empty = sum(_blank(row.get(col)) for row in rows)
        if empty == len(rows) or (flag == "--id-column" and empty):
            which = "every row" if empty == len(rows) else f"{empty} of {len(rows)} rows"
            fix = "ids must be set in every row (or leave --id-column out: the problem's hash)"
            if flag != "--id-column":
                fix = f"map the column that holds them with {flag}"
            raise UsageError(f"dataset {dataset}: column {col!r} ({flag}) is empty in {which}; {fix}")
    records = []
    for row in rows:
        problem = str(row.get(problem_column) or "")
        pid = str(row[id_column]) if id_column else "p-" + hashlib.sha1(problem.encode()).hexdigest()[:16]
        gold = row.get(answer_column) if answer_column else None
        records.append(
            PromptRecord(
                pid,
                problem,
                "" if gold is None else str(gold),
                _messages(problem, system_prompt, instruction),
                _tests_json(row.get(tests_column)) if tests_column else None,
            )
        )
    return records
