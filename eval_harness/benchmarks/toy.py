"""toy: held-out problems of the embedded toy task (trace_gen.toy), disjoint from its train split.

300 multi-step counting problems; answers are integers in \\boxed{}, scored with math-verify.
Generation defaults: greedy, 128 new tokens (the toy models answer in a few dozen tokens).
"""

from eval_harness.benchmarks.base import Item, math_answer
from trace_gen.prompts import toy_prompts
from trace_gen.toy.task import format_completion, split

NAME = "toy"
KIND = "math"
GENERATION = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 128}
SAMPLES = 1  # default K: greedy decoding has one answer
EXTRACTORS = ("boxed",)


def load(limit: int | None = None) -> list[Item]:
    reasoning = {p.prompt_id: p.reasoning for p in split("test")}
    items = [
        Item(p.prompt_id, p.messages, p.gold, format_completion(reasoning[p.prompt_id], p.gold))
        for p in toy_prompts("test")
    ]
    return items[:limit] if limit else items


def extract(completion: str) -> str | None:
    return math_answer(completion, EXTRACTORS)


def oracle(item: Item) -> str:
    return item.reference
