"""What every benchmark shares: the item it yields, R1 prompt and generation defaults, its data files.

A benchmark is a module (see `eval_harness.benchmarks.__init__`) with NAME, KIND ("math" or "code"),
GENERATION (default sampling settings; CLI flags override them), SAMPLES (the default number K of
samples per item: higher on small noisy sets such as AIME; --samples-per-prompt overrides it),
`load(limit) -> list[Item]`,
`extract(completion) -> str | None` (the answer or code the scorer checks) and `oracle(item) -> str`
(the reference solution written as a model output, for `--oracle`). Math modules also set EXTRACTORS.
"""

from dataclasses import dataclass

from trace_gen.errors import UsageError
from trace_gen.verify import extract_answer
from trace_gen.verify.benchmarks import load_benchmark

# DeepSeek-R1's evaluation recipe: the instruction goes in the user turn, no system prompt.
R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
R1_GENERATION = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768}


@dataclass(frozen=True)
class Item:
    id: str
    messages: tuple[dict, ...]
    gold: str | dict  # math: the final answer; code: {"prompt", "test", "entry_point"}
    reference: str | None = None  # a reference solution (the oracle's answer), when the data has one


def math_messages(problem: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": f"{problem}\n{R1_INSTRUCTION}"},)


def math_answer(completion: str, extractors: tuple[str, ...]) -> str | None:
    """What a math benchmark's `extract` returns: the first extractor's answer, or None."""
    found = extract_answer(completion, extractors)
    return found[0] if found else None


def read_rows(file_name: str) -> list[dict]:
    """Rows of a benchmark file shipped with the package (see trace_gen.verify.benchmarks); a missing
    file is one clear UsageError saying where we looked."""
    return load_benchmark(file_name)


def gold_of(row: dict, field: str, where: str) -> str:
    """The row's gold answer as text; a row without one is one UsageError line naming the row."""
    value = row.get(field)
    if value is None or not str(value).strip():
        raise UsageError(f"{where} has no gold answer in field {field!r}; fix or drop that row")
    return number_text(value)


def number_text(value) -> str:
    """A gold number as text: 27.0 -> "27", 0.5 -> "0.5", "204" -> "204"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
