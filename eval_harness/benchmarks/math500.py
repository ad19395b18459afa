"""math500: MATH-500, the 500-problem subset of Hendrycks MATH used by PRM800K and the R1 report.

Data: math500.jsonl (problem, solution with \\boxed{}, answer, subject, level, unique_id); MIT.
Prompt: the problem + the R1 instruction. Score: the last \\boxed{} after </think> against `answer`
with math-verify. Oracle: the reference `solution`.
"""

from eval_harness.benchmarks.base import R1_GENERATION, Item, math_answer, math_messages, read_rows

NAME = "math500"
KIND = "math"
DATA_FILE = "math500.jsonl"
GENERATION = R1_GENERATION
EXTRACTORS = ("boxed",)


def prompt(row: dict) -> Item:
    return Item(row["unique_id"], math_messages(row["problem"]), row["answer"], row["solution"])


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row) for row in read_rows(DATA_FILE)[:limit]]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return item.reference
