"""The embedded toy task: multi-step counting word problems that need a chain of thought.

A problem is a start amount followed by 2-4 "gets N more" / "gives away N" events; the answer is
the final amount. Doing it in one forward pass means adding up to five numbers with carries at
once, which a model of a few hundred thousand parameters cannot do; writing one `a + b = c` line
per event makes every step a small lookup. Answers end in \\boxed{}, checked with math-verify.

Splits are disjoint by construction: a problem is identified by its full text, and test problems
are drawn first and excluded from train.
"""

import hashlib
import random
from dataclasses import dataclass

NAMES = ("Ann", "Ben", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lou")
ITEMS = ("apples", "coins", "books", "cards", "shells", "stamps", "pens", "marbles")
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MIN_EVENTS, MAX_EVENTS = 2, 4
MAX_TOTAL = 99


@dataclass(frozen=True)
class Problem:
    prompt_id: str
    problem: str
    answer: str
    reasoning: str  # the gold chain of thought (one "a + b = c" line per event)

    def user_message(self) -> str:
        return f"{self.problem}\n{INSTRUCTION}"

    def gold_completion(self) -> str:
        return format_completion(self.reasoning, self.answer)


def format_completion(reasoning: str, answer: str) -> str:
    """The assistant turn as the teacher should write it: <think>reasoning</think> then the answer."""
    return f"<think>\n{reasoning}\n</think>\n\n\\boxed{{{answer}}}"


def make_problem(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(2, 30)
    sentences = [f"{name} has {total} {item}."]
    steps = []
    for _ in range(rng.randint(MIN_EVENTS, MAX_EVENTS)):
        n = rng.randint(1, 9)
        if (rng.random() < 0.5 and total - n >= 0) or total + n > MAX_TOTAL:
            sentences.append(f"{name} gives away {n}.")
            steps.append(f"{total} - {n} = {total - n}")
            total -= n
        else:
            sentences.append(f"{name} gets {n} more.")
            steps.append(f"{total} + {n} = {total + n}")
            total += n
    sentences.append(f"How many {item} does {name} have now?")
    text = " ".join(sentences)
    prompt_id = "toy-" + hashlib.sha1(text.encode()).hexdigest()[:12]
    return Problem(prompt_id, text, str(total), "\n".join(steps))


def make_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[list[Problem], list[Problem]]:
    """Disjoint train/test problem lists, deterministic for a seed."""
    rng = random.Random(seed)
    test: dict[str, Problem] = {}
    while len(test) < n_test:
        p = make_problem(rng)
        test.setdefault(p.problem, p)
    train: dict[str, Problem] = {}
    while len(train) < n_train:
        p = make_problem(rng)
        if p.problem not in test:
            train.setdefault(p.problem, p)
    return list(train.values()), list(test.values())


def split(name: str) -> list[Problem]:
    """The standard toy splits used by the demo and tests: 'train' (20,000) and 'test' (300)."""
    train, test = make_splits(n_train=20_000, n_test=300, seed=1234)
    return {"train": train, "test": test}[name]
