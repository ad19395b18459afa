"""humaneval: OpenAI HumanEval, 164 Python functions to complete (Chen et al. 2021).

Data: humaneval.jsonl.gz (task_id, prompt = signature + docstring, canonical_solution, test,
entry_point); MIT. Prompt: the completion-style `prompt` in a chat instruction asking for the whole
function in a ```python block. Extract: the last fenced block after </think> that defines a function
(else the last block). Score: `prompt + code`, then `test` and `check(entry_point)`, in the sandbox
(`trace_gen.verify.check_humaneval`); a full function in the code simply redefines the prompt's stub.
Oracle: the prompt + canonical solution in a ```python block.
"""

from eval_harness.benchmarks.base import R1_GENERATION, Item, read_rows
from trace_gen.verify.completion import extract_code
from trace_gen.verify.sandbox import require_sandbox

NAME = "humaneval"
KIND = "code"
DATA_FILE = "humaneval.jsonl.gz"
GENERATION = R1_GENERATION
SAMPLES = 4  # default K (R1: 4 to 64 samples per item depending on the set size)
INSTRUCTION = (
    "Complete the following Python function. Reason step by step, then give the complete function, "
    "with any imports it needs, in a single ```python code block."
)


def code_messages(code_prompt: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{code_prompt}```"},)


def prompt(row: dict) -> Item:
    gold = {"prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
    reference = f"```python\n{row['prompt']}{row['canonical_solution']}```"
    return Item(row["task_id"], code_messages(row["prompt"]), gold, reference)


def load(limit: int | None = None) -> list[Item]:
    require_sandbox()  # scoring runs model code: refuse (one line) before generating, not after
    return [prompt(row) for row in read_rows(DATA_FILE)[:limit]]


def extract(completion: str) -> str | None:
    """The code of the answer part: the last fenced block with a `def`, else the last block, else None."""
    return extract_code(completion, prefer_def=True)


def oracle(item: Item) -> str:
    return item.reference
