"""aime24: AIME 2024 I and II, 30 problems with integer answers 0-999 (as in Qwen2.5-Math's eval data).

Data: aime24.jsonl (id, problem, solution, answer, url); problems (c) MAA. Usually run with many
samples (R1 reports pass@1 over 64). Score: the last \\boxed{} after </think> (else
the answer stated in prose) against `answer`.
Oracle: "\\boxed{answer}" (the collected solutions do not all end in a parseable \\boxed{}).
"""

from eval_harness.benchmarks.base import (
    R1_GENERATION,
    Item,
    gold_of,
    math_answer,
    math_messages,
    read_rows,
)

NAME = "aime24"
KIND = "math"
DATA_FILE = "aime24.jsonl"
GENERATION = R1_GENERATION
SAMPLES = 64  # default K: 30 items are noisy (R1 reports AIME pass@1 over 64 samples)
EXTRACTORS = ("boxed", "prose")


def prompt(row: dict, index: int) -> Item:
    gold = gold_of(row, "answer", f"{DATA_FILE} row {index + 1}")
    return Item(f"aime24-{row['id']}", math_messages(row["problem"]), gold)


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row, i) for i, row in enumerate(read_rows(DATA_FILE)[:limit])]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return f"\\boxed{{{item.gold}}}"
