"""amc23: AMC 2023, 40 problems (as in Qwen2.5-Math's eval data; answers are numbers, 27.0 = 27).

Data: amc23.jsonl (id, problem, answer, url); problems (c) MAA. Score: the last \\boxed{} after
</think> against `answer`. Oracle: "\\boxed{answer}" (the data has no solutions).
"""

from eval_harness.benchmarks.base import (
    R1_GENERATION,
    Item,
    gold_of,
    math_answer,
    math_messages,
    read_rows,
)

NAME = "amc23"
KIND = "math"
DATA_FILE = "amc23.jsonl"
GENERATION = R1_GENERATION
SAMPLES = 16  # default K: 40 items are noisy; 16 samples per item average most sampling noise out
EXTRACTORS = ("boxed", "prose")


def prompt(row: dict, index: int) -> Item:
    gold = gold_of(row, "answer", f"{DATA_FILE} row {index + 1}")
    return Item(f"amc23-{row['id']}", math_messages(row["problem"]), gold)


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row, i) for i, row in enumerate(read_rows(DATA_FILE)[:limit])]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return f"\\boxed{{{item.gold}}}"
