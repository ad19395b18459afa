"""Problems to prompt the teacher with: the built-in toy task, or a local JSONL/Parquet/saved dataset, or
a hub dataset by name. Every source becomes the same `PromptRecord`.

Empty problems are kept as records (the pipeline skips and counts them), so a dataset's row count
always equals prompts done + prompts skipped.
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


def _read_jsonl(path: Path) -> list[dict]:
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


def _load_rows(dataset: str, split: str) -> list[dict]:
    path = Path(dataset)
    if path.suffix in (".jsonl", ".json"):
        if not path.is_file():
            raise UsageError(f"dataset file not found: {path}")
        return _read_jsonl(path)
    from datasets import load_dataset, load_from_disk

    if path.suffix == ".parquet":
        if not path.is_file():
            raise UsageError(f"dataset file not found: {path}")
        return load_dataset("parquet", data_files=str(path), split="train").to_list()
    if path.is_dir() and (path / "dataset_info.json").exists():
        return load_from_disk(str(path)).to_list()
    if path.is_dir() and (path / "dataset_dict.json").exists():
        raise UsageError(f"{path} is a DatasetDict; pass one split's directory, e.g. {path}/{split}")
    if path.exists():
        raise UsageError(f"cannot read dataset {path}: give a .jsonl, .parquet or a saved dataset directory")
    try:
        return load_dataset(dataset, split=split).to_list()  # hub name
    except Exception as err:  # offline, unknown name, gated: one line, not a traceback
        raise UsageError(
            f"cannot load dataset {dataset!r} (split {split!r}) from the hub: {type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}; give a local .jsonl/.parquet instead"
        ) from err


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
    rows = _load_rows(dataset, split)
    if not rows:
        raise UsageError(f"dataset {dataset} has no rows")
    columns = list(rows[0])
    for flag, col in (
        ("--problem-column", problem_column),
        ("--answer-column", answer_column),
        ("--id-column", id_column),
        ("--tests-column", tests_column),
    ):
        if col is not None and col not in rows[0]:
            raise UsageError(
                f"dataset {dataset} has no column {col!r} (columns: {', '.join(columns)}); "
                f"map yours with {flag} (also --problem-column, --answer-column, --id-column)"
            )
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
