"""Format checks: think tags, answer, truncation, length, repetition, mixed language."""

import random

from trace_gen.filters.format import compression_ratio, format_problem, is_mixed_language, is_repetitive

GOOD = "<think>Let x = 2, so 2x = 4.</think> The answer is \\boxed{4}."


def _prose(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = [
        "the",
        "we",
        "so",
        "let",
        "then",
        "thus",
        "number",
        "sum",
        "equals",
        "two",
        "three",
        "four",
        "five",
        "because",
        "hence",
        "value",
    ]
    return " ".join(rng.choice(vocab) + str(rng.randrange(100)) for _ in range(n_words))


def test_well_formed_completion_passes():
    assert format_problem(GOOD, "stop") is None
    assert format_problem(f"<think>{_prose(2000)}</think> \\boxed{{4}}", "stop") is None


def test_each_problem_is_named():
    assert format_problem(GOOD, "length") == "truncated"
    assert format_problem("<think>no end \\boxed{4}", "stop") == "think_not_closed_once"
    assert format_problem("<think>a</think>b</think> \\boxed{4}") == "think_not_closed_once"
    assert format_problem("</think> x <think> y", require_think=True) == "think_malformed"
    assert format_problem("<think>reasoning</think>   \n") == "no_answer"
    assert format_problem(GOOD, min_chars=1000) == "too_short"
    assert format_problem(GOOD, max_chars=10) == "too_long"
    assert format_problem("plain answer 4", require_think=False) is None


def test_repetition_catches_loops_not_prose():
    loop = "<think>" + _prose(300) + " wait, let me recompute." * 400 + "</think> \\boxed{4}"
    assert is_repetitive(loop) and format_problem(loop) == "repetition"
    assert compression_ratio(_prose(3000)) > 0.2 and not is_repetitive(_prose(3000))


def test_mixed_language():
    english = _prose(500)
    assert not is_mixed_language(english)
    assert not is_mixed_language("设 x = 2，那么 2x = 4。所以答案是四。" * 10)  # one script only
    assert is_mixed_language(english + " 所以答案是四，我们再检查一下这个结果是否正确。" * 3)
    assert not is_mixed_language(english + " α β γ π θ")  # Greek is maths notation
