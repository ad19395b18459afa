"""Problems to prompt the teacher with: the built-in toy task, or a local JSONL/Parquet/saved dataset, or
a hub dataset by name. Every source becomes the same `PromptRecord`."""

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


def _messages(problem: str, system_prompt: str | None, instruction: str | None) -> tuple[dict, ...]:
    user = f"{problem}\n{instruction}" if instruction else problem
    system = ({"role": "system", "content": system_prompt},) if system_prompt else ()
    return (*system, {"role": "user", "content": user})


def toy_prompts(split: str, system_prompt: str | None = None) -> list[PromptRecord]:
    return [
        PromptRecord(p.prompt_id, p.problem, p.answer, _messages(p.problem, system_prompt, toy.INSTRUCTION))
        for p in toy.split(split)
    ]


def _load_rows(dataset: str, split: str) -> list[dict]:
    path = Path(dataset)
    if path.suffix in (".jsonl", ".json"):
        rows = []
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as err:
                    raise UsageError(
                        f"{path}:{lineno} is not UTF-8 ({err.reason}); re-encode the file as UTF-8"
                    ) from err
                if line:
                    rows.append(json.loads(line))
        return rows
    from datasets import load_dataset, load_from_disk

    if path.suffix == ".parquet":
        return load_dataset("parquet", data_files=str(path), split="train").to_list()
    if path.is_dir() and (path / "dataset_info.json").exists():
        return load_from_disk(str(path)).to_list()
    if path.exists():
        raise UsageError(f"cannot read dataset {path}: give a .jsonl, .parquet or a saved dataset directory")
    return load_dataset(dataset, split=split).to_list()  # hub name


def dataset_prompts(
    dataset: str,
    split: str,
    problem_column: str,
    answer_column: str,
    id_column: str | None,
    system_prompt: str | None,
    instruction: str | None,
) -> list[PromptRecord]:
    rows = _load_rows(dataset, split)
    if not rows:
        raise UsageError(f"dataset {dataset} has no rows")
    for col in (problem_column, answer_column, id_column):
        if col is not None and col not in rows[0]:
            raise UsageError(
                f"dataset {dataset} has no column {col!r} (columns: {', '.join(rows[0])}); "
                f"map yours with --problem-column/--answer-column/--id-column"
            )
    records = []
    for row in rows:
        problem = str(row[problem_column] or "")
        pid = str(row[id_column]) if id_column else "p-" + hashlib.sha1(problem.encode()).hexdigest()[:16]
        records.append(
            PromptRecord(
                pid, problem, str(row[answer_column]), _messages(problem, system_prompt, instruction)
            )
        )
    return records
