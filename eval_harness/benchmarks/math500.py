"""math500: MATH-500, the 500-problem subset of Hendrycks MATH used by PRM800K and the R1 report.

Data: math500.jsonl (problem, solution with \\boxed{}, answer, subject, level, unique_id); MIT.
Prompt: the problem + the R1 instruction. Score: the last \\boxed{} after </think> (else the answer
stated in prose: trace_gen.verify.answers) against `answer`. Oracle: the reference `solution`.
"""

from eval_harness.benchmarks.base import R1_GENERATION, Item, gold_of, math_answer, math_messages, read_rows

NAME = "math500"
KIND = "math"
DATA_FILE = "math500.jsonl"
GENERATION = R1_GENERATION
SAMPLES = 4  # default K (R1: 4 to 64 samples per item depending on the set size)
EXTRACTORS = ("boxed", "prose")


def prompt(row: dict, index: int) -> Item:
    gold = gold_of(row, "answer", f"{DATA_FILE} row {index + 1}")
    return Item(row["unique_id"], math_messages(row["problem"]), gold, row["solution"])


def load(limit: int | None = None) -> list[Item]:
    return [prompt(row, i) for i, row in enumerate(read_rows(DATA_FILE)[:limit])]


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return item.reference
