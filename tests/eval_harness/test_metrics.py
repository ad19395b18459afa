"""Metrics: unbiased pass@k against hand-computed cases, maj@k votes and ties, avg@K and its spread,
intervals that narrow with more samples per item."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eval_harness.metrics import answer_key, item_scores, ks_for, maj_at_k, pass_at_k, summarise


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
        (5, 1, 1, 0.2),  # pass@1 is the fraction correct
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 1, 4, 1.0),  # k = n: any correct sample counts
        (6, 4, 3, 1.0),  # n - c < k: every k-subset holds a correct one
        (64, 0, 8, 0.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_the_binomial_formula(case):
    n, c, k = case
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-9)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(AssertionError):
        pass_at_k(3, 4, 1)
    with pytest.raises(AssertionError):
        pass_at_k(3, 1, 4)


def test_maj_at_k_votes_and_ties():
    ok = "<correct>"
    assert maj_at_k([ok, "5", ok], 3) == 1.0
    assert maj_at_k(["5", ok, "5"], 3) == 0.0
    assert maj_at_k([ok, "5"], 2) == 0.5  # two-way tie: expected score of a random tie-break
    assert maj_at_k(["5", "7", ok], 3) == pytest.approx(1 / 3)  # three-way tie
    assert maj_at_k(["5", "7", ok, ok], 2) == 0.0  # only the first k samples vote
    assert maj_at_k([None, None, "5"], 3) == 0.0  # no answer casts no vote
    assert maj_at_k([None, ok, None], 3) == 1.0
    assert maj_at_k([None, None], 2) == 0.0


def test_answer_keys_group_equal_answers_cheaply():
    assert (
        answer_key("\\frac{1}{2}", False)
        == answer_key("\\dfrac{1}{2}", False)
        == answer_key("\\frac{1} {2}", False)
    )
    assert answer_key("1,000", False) == answer_key("1000", False) == answer_key("1000.0", False)
    assert answer_key("\\text{(B)}", False) == answer_key("(B)", False)
    assert answer_key("\\frac{1}{2}", False) != answer_key("\\frac{1}{3}", False)
    assert answer_key("anything", True) == "<correct>"
    assert answer_key(None, False) is None


def _rows(correct: list[bool]) -> list[dict]:
    return [
        {
            "verdict": "correct" if ok else "wrong",
            "answer": "1" if ok else "2",
            "finish_reason": "stop",
            "num_tokens": 10,
        }
        for ok in correct
    ]


def test_ci_width_shrinks_with_more_samples_per_item():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 0.7, size=150)  # each item's true solve rate

    def width(k: int) -> float:
        samples = [_rows(list(rng.random(k) < pi)) for pi in p]
        lo, hi = summarise(samples, "math")["pass@1_ci"]
        return hi - lo

    w1, w8, w64 = width(1), width(8), width(64)
    assert w1 > w8 > w64, (w1, w8, w64)
    assert w64 < 0.6 * w1


def test_checker_failures_are_reported_apart_from_wrong_answers():
    rows = [
        {"verdict": "unverifiable", "reason": "timed out after 10s"},
        {"verdict": "unverifiable", "reason": "no answer: <think> never closed"},  # the model's fault
        {"verdict": "sandbox_error", "reason": "sandbox failed: unshare"},
        {"verdict": "passed", "reason": "all tests passed"},
    ]
    s = summarise([rows], "code")
    assert s["pass@1"] == 0.25 and s["infra_error_rate"] == 0.5


def test_summarise_reports_every_k_maj_truncation_and_tokens():
    samples = [_rows([True, False, False, False, True]), _rows([False] * 5)]
    samples[1][0].update(finish_reason="length", num_tokens=30)
    s = summarise(samples, "math")
    assert ks_for(5) == [1, 2, 4, 5]
    assert s["n"] == 2 and s["samples"] == 5
    assert s["pass@1"] == pytest.approx((2 / 5 + 0) / 2)
    assert s["pass@5"] == pytest.approx(0.5)
    assert s["maj@5"] == 0.0  # item 0: wrong "2" wins 3-2
    assert s["truncation_rate"] == pytest.approx(1 / 10)
    assert s["mean_response_tokens"] == pytest.approx((9 * 10 + 30) / 10)
    assert s["verdicts"] == {"correct": 2, "wrong": 8} and s["infra_error_rate"] == 0
    assert "maj@5" not in summarise(samples, "code")
    assert "maj@1" not in summarise([_rows([True])], "math")


def test_avg_at_k_is_the_mean_of_the_runs_with_their_spread():
    # 3 items x 4 samples; run j = sample j of every item: runs score 3/3, 1/3, 2/3, 0/3
    samples = [
        _rows([True, False, True, False]),
        _rows([True, False, False, False]),
        _rows([True, True, True, False]),
    ]
    s = summarise(samples, "math")
    runs = np.array([3, 1, 2, 0]) / 3
    assert s["avg@4"] == pytest.approx(runs.mean()) == pytest.approx(s["pass@1"])
    assert s["avg@4_std"] == pytest.approx(runs.std(ddof=1))
    assert "avg@1" not in summarise([_rows([True])], "math")
    assert item_scores(samples) == pytest.approx([0.5, 0.25, 0.75])


def test_all_wrong_and_all_right_have_honest_intervals():
    """The old percentile bootstrap said [0, 0] at 0/40; Wilson says [0, 8.8%]."""
    zero = summarise([_rows([False]) for _ in range(40)], "math")
    assert zero["pass@1"] == 0 and zero["pass@1_ci"][0] == 0
    assert zero["pass@1_ci"][1] == pytest.approx(0.0876, abs=5e-4)
    full = summarise([_rows([True] * 8) for _ in range(30)], "math")
    assert full["pass@1"] == 1 and full["pass@1_ci"][1] == 1 and full["pass@1_ci"][0] < 0.9
