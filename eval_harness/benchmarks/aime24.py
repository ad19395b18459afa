"""aime24: AIME 2024 I and II, 30 problems with integer answers 0-999 (as in Qwen2.5-Math's eval data).

Data: aime24.jsonl (id, problem, solution, answer, url); problems (c) MAA. Usually run with many
samples (R1 reports pass@1 over 64). Score: the last \\boxed{} after </think> against `answer`.
Oracle: "\\boxed{answer}" (the collected solutions do not all end in a parseable \\boxed{}).
"""

from eval_harness.benchmarks.base import (
    R1_GENERATION,
    Item,
    math_answer,
    math_messages,
    number_text,
    read_rows,
)

NAME = "aime24"
KIND = "math"
DATA_FILE = "aime24.jsonl"
GENERATION = R1_GENERATION
EXTRACTORS = ("boxed",)


def prompt(row: dict) -> Item:
    return Item(f"aime24-{row['id']}", math_messages(row["problem"]), number_text(row["answer"]))


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row) for row in read_rows(DATA_FILE)[:limit]]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return f"\\boxed{{{item.gold}}}"
