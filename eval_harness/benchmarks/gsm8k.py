"""gsm8k: GSM8K test split, 1,319 grade-school word problems (Cobbe et al. 2021).

Data: gsm8k_test.jsonl (question, answer = worked solution ending "#### N"); MIT.
Prompt: the question + the R1 instruction. Gold: N with commas removed. Score: the last \\boxed{}
after </think> (or a "#### N" line) against N. Ids are "gsm8k-<row index>". Oracle: the solution.
"""

from eval_harness.benchmarks.base import R1_GENERATION, Item, math_answer, math_messages, read_rows

NAME = "gsm8k"
KIND = "math"
DATA_FILE = "gsm8k_test.jsonl"
GENERATION = R1_GENERATION
EXTRACTORS = ("boxed", "gsm8k")


def prompt(row: dict, index: int) -> Item:
    gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    return Item(f"gsm8k-{index}", math_messages(row["question"]), gold, row["answer"])


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row, i) for i, row in enumerate(read_rows(DATA_FILE)[:limit])]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return item.reference
