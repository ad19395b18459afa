"""toy: held-out problems of the embedded toy task (trace_gen.toy), disjoint from its train split.

300 multi-step counting problems; answers are integers in \\boxed{}, scored with math-verify.
"""

from eval_harness.benchmarks.base import Item
from trace_gen.prompts import toy_prompts

NAME = "toy"
KIND = "math"


def load(limit: int | None = None) -> list[Item]:
    items = [Item(p.prompt_id, p.messages, p.gold) for p in toy_prompts("test")]
    return items[:limit] if limit else items
