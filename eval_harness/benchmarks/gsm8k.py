"""gsm8k: GSM8K test split, 1,319 grade-school word problems (Cobbe et al. 2021).

Data: gsm8k_test.jsonl (question, answer = worked solution ending "#### N"); MIT.
Prompt: the question + the R1 instruction. Gold: N with commas removed. Score: the last \\boxed{}
after </think> (else a "#### N" line, else the answer stated in prose) against N. Ids are "gsm8k-<row index>". Oracle: the solution.
"""

from eval_harness.benchmarks.base import R1_GENERATION, Item, math_answer, math_messages, read_rows
from trace_gen.errors import UsageError
from trace_gen.verify import normalise_answer

NAME = "gsm8k"
KIND = "math"
DATA_FILE = "gsm8k_test.jsonl"
GENERATION = R1_GENERATION
SAMPLES = 1  # default K: 1,319 items already make a tight interval
EXTRACTORS = ("boxed", "gsm8k", "prose")


def prompt(row: dict, index: int) -> Item:
    if "####" not in str(row.get("answer") or ""):
        raise UsageError(
            f"{DATA_FILE} row {index + 1} has no gold answer (no '#### N' line); fix or drop that row"
        )
    gold = normalise_answer(row["answer"].rsplit("####", 1)[1])
    return Item(f"gsm8k-{index}", math_messages(row["question"]), gold, row["answer"])


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row, i) for i, row in enumerate(read_rows(DATA_FILE)[:limit])]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return item.reference
