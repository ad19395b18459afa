"""Intervals: Wilson against scipy's own, exact reduction at K = 1, bounds of the effective size, and
coverage by simulation at small n with pass rates near 0 and 1 (the cases a percentile bootstrap
got wrong), for one model's pass@1 and for the paired difference of two models.

The simulated benchmark draws items from a population (each item's solve rate from a Beta
distribution: a few easy items among many hard ones, or the reverse), then K samples per item; the
interval must contain the population's mean solve rate in about 95% of the runs. Each case runs 400
benchmarks with a fixed seed; 0.92 is 3 standard errors below 0.95. A Wald interval (mean +- z s/sqrt n)
run through the same cases falls well short, so the check can fail."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from eval_harness.intervals import Z, effective_size, paired_difference, score_interval, wilson

REPS = 400


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_scipy(case):
    k, n = case
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(k / n, n) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_one_sample_per_item_is_exactly_wilson_over_items():
    assert score_interval([0.0] * 40) == (0.0, pytest.approx(0.0876, abs=5e-4))  # not [0, 0]
    values = [1.0] * 12 + [0.0] * 18
    assert score_interval(values, trials=1) == pytest.approx(wilson(12 / 30, 30))
    assert score_interval([1.0] * 30)[1] == 1.0


@given(st.lists(st.integers(0, 8), min_size=2, max_size=60))
def test_effective_size_lies_between_one_and_k_trials_per_item(correct):
    values = np.array(correct) / 8
    n_eff = effective_size(values, trials=8)
    assert len(values) <= n_eff <= 8 * len(values)
    low, high = score_interval(values, trials=8)
    assert 0 <= low <= values.mean() <= high <= 1


def test_more_samples_per_item_narrow_the_interval_in_the_middle():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 0.7, size=100)

    def width(k):
        lo, hi = score_interval(rng.binomial(k, p) / k, trials=k)
        return hi - lo

    assert width(1) > width(8) > width(64)


def _wald(values) -> tuple[float, float]:
    m, s = values.mean(), values.std(ddof=1)
    return m - Z * s / math.sqrt(len(values)), m + Z * s / math.sqrt(len(values))


def _benchmark(rng, n: int, k: int, mean: float, concentration: float) -> np.ndarray:
    """Item values (fraction of k samples correct) of n items whose solve rates are Beta-distributed."""
    rates = rng.beta(mean * concentration, (1 - mean) * concentration, size=n)
    return rng.binomial(k, rates) / k


# (items, samples per item, population mean, Beta concentration: low = items mostly all-or-nothing)
CASES = [
    (40, 1, 0.02, 2.0),
    (30, 1, 0.97, 2.0),
    (30, 8, 0.03, 2.0),
    (30, 64, 0.05, 0.5),  # AIME-like: 30 items, 64 samples, a few solvable items
    (30, 16, 0.95, 2.0),
    (40, 4, 0.99, 0.5),
    (40, 4, 0.5, 1.0),
]


@pytest.mark.parametrize(("n", "k", "mean", "concentration"), CASES)
def test_score_interval_covers_at_small_n_near_0_and_1(n, k, mean, concentration):
    rng = np.random.default_rng(7)
    hits = wald_hits = 0
    for _ in range(REPS):
        values = _benchmark(rng, n, k, mean, concentration)
        low, high = score_interval(values, trials=k)
        hits += low <= mean <= high
        w_low, w_high = _wald(values)
        wald_hits += w_low <= mean <= w_high
    assert hits / REPS >= 0.92, (hits / REPS, wald_hits / REPS)
    if mean < 0.1 or mean > 0.9:
        assert wald_hits / REPS < 0.9  # the naive interval fails here: the check can tell them apart


def _paired_rates(rng, n, base_ref, base_model, spread, noise):
    """Solve rates of the same n items for a reference and a model (a shared item difficulty)."""
    from statistics import NormalDist

    cdf = np.vectorize(NormalDist().cdf)
    difficulty, own = rng.standard_normal(n), rng.standard_normal(n)
    return cdf(base_ref + spread * difficulty), cdf(base_model + spread * difficulty + noise * own)


# (items, samples per item, reference and model probit offsets, difficulty spread, model's own noise)
PAIRED = [
    (30, 1, -0.5, -3.0, 1.5, 0.5),  # untrained student near 0 against a teacher near 30%
    (30, 8, -3.0, -3.0, 1.5, 0.5),  # both near 0
    (30, 8, 2.5, 2.5, 1.0, 0.5),  # both near 1
    (40, 4, 0.0, -0.3, 1.5, 0.3),  # a small real loss in the middle
]


@pytest.mark.parametrize(("n", "k", "ref", "model", "spread", "noise"), PAIRED)
def test_paired_difference_covers(n, k, ref, model, spread, noise):
    rng = np.random.default_rng(11)
    big_ref, big_model = _paired_rates(rng, 200_000, ref, model, spread, noise)
    truth = float((big_model - big_ref).mean())
    hits = 0
    for _ in range(REPS):
        rates_ref, rates_model = _paired_rates(rng, n, ref, model, spread, noise)
        a, b = rng.binomial(k, rates_model) / k, rng.binomial(k, rates_ref) / k
        delta, (low, high) = paired_difference(a, b, trials=k)
        assert low <= delta <= high
        hits += low <= truth <= high
    assert hits / REPS >= 0.92, hits / REPS


def test_paired_difference_at_the_boundary_is_not_a_point():
    delta, (low, high) = paired_difference([0.0] * 30, [0.0] * 30)
    assert delta == 0 and low < 0 < high  # both models solve nothing: the difference is still uncertain
    assert high == pytest.approx(wilson(0, 30)[1])
    delta, (low, high) = paired_difference([1.0] * 20 + [0.0] * 10, [0.0] * 30)
    assert delta == pytest.approx(2 / 3) and 0 < low < 2 / 3 < high <= 1
