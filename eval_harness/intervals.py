"""95% confidence intervals for benchmark scores, right at 0 and 1 and on 30-item sets.

What an interval covers: the mean score over the population of problems a benchmark's items are
drawn from, so it carries both sources of noise (which items were picked, which samples were drawn).
Every metric is first a value per item in [0, 1] (pass@1 = the item's fraction of correct samples).

- `score_interval(values, trials)`: the Wilson score interval on an effective sample size. With one
  sample per item (K = 1) it is exactly the Wilson interval over items (0/40 gives [0, 0.088], not a
  bootstrap's [0, 0]). With K samples per item the item values are clustered binomials: the effective
  size is n_eff = m(1 - m) / (s^2 / n) (Kish's design effect; s^2 the variance of the item values),
  shrunk by (z / t_df)^2 where df is the effective number of items that carry that variance
  ((sum d^2)^2 / sum d^4 - 1, d = value - mean: a few items carrying all the variance make a poor
  variance estimate), and clamped to [n, n * trials]: never fewer than one independent trial per
  item (the worst case, also used when every value is 0 or every value is 1, where s^2 says
  nothing), never more than `trials` independent trials per item. Korn & Graubard (1998) use the
  same effective-size and df correction for clustered proportions.
- `paired_difference(a, b, ...)`: the difference of two models' means over the same items, with the
  MOVER interval (Newcombe 1998 for paired proportions; Zou & Donner 2008): each model's Wilson
  limits combined with the correlation of the two models' item values. Paired over items, so
  a student that fails exactly where the teacher fails is not penalised twice.

Coverage is checked by simulation in tests/eval_harness/test_intervals.py (small n, p near 0 and 1,
K = 1..64, items of mixed difficulty); `bench/eval_intervals.py` prints the full table. A percentile
bootstrap over items, which this replaces, covered 8-70% in those cases near 0 and 1.
All of this is closed form: no resampling, no seed, the same numbers on every run.
"""

import math
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
METHOD = (
    "95% Wilson score intervals on the items' effective sample size; differences paired over items "
    "(MOVER); see eval_harness/intervals.py"
)
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)  # 1.959964


def wilson(mean: float, n: float) -> tuple[float, float]:
    """Wilson score interval for a proportion `mean` observed over `n` (possibly fractional) trials."""
    assert n > 0 and 0.0 <= mean <= 1.0, f"need n > 0 and 0 <= mean <= 1, got n={n} mean={mean}"
    z2 = Z * Z
    center = (mean + z2 / (2 * n)) / (1 + z2 / n)
    half = Z * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if mean == 0.0 else max(0.0, center - half)  # exact at the bounds (no 1e-17 rounding)
    high = 1.0 if mean == 1.0 else min(1.0, center + half)
    return (low, high)


def _t_quantile(df: float) -> float:
    from scipy.stats import t  # imported only when an interval is computed (keeps --help fast)

    return float(t.ppf(0.5 + LEVEL / 2, df))


def effective_size(values, trials: int) -> float:
    """The number of independent trials the item values are worth (see the module docstring).

    values: (n,) item values in [0, 1]; trials: the most independent trials one item can hold
    (K for pass@1 over K samples, K // k for pass@k, 1 for maj@K)."""
    v = np.asarray(values, dtype=np.float64)  # (n,)
    n, mean = len(v), float(v.mean())
    var = float(v.var(ddof=1)) if n > 1 else 0.0
    if mean <= 0.0 or mean >= 1.0 or n < 2:
        return float(n)
    if var == 0.0:  # every item has the same fraction in (0, 1): no item-to-item spread
        return float(n * trials)
    d2 = (v - mean) ** 2
    df = max(d2.sum() ** 2 / (d2**2).sum() - 1.0, 1.0)
    n_eff = mean * (1.0 - mean) * n / var * (Z / _t_quantile(df)) ** 2
    return float(min(max(n_eff, n), n * trials))


def score_interval(values, trials: int = 1) -> tuple[float, float]:
    """95% interval of the mean of item values in [0, 1] (see the module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    return wilson(float(np.clip(v.mean(), 0.0, 1.0)), effective_size(v, trials))


def paired_difference(a, b, trials: int = 1) -> tuple[float, tuple[float, float]]:
    """mean(a) - mean(b) and its 95% MOVER interval; a, b: (n,) values of the same items, same order."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape and len(a) > 0, f"need two equal-length item lists, got {a.shape} {b.shape}"
    ma, mb = float(a.mean()), float(b.mean())
    la, ua = score_interval(a, trials)
    lb, ub = score_interval(b, trials)
    r = 0.0 if a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1])
    d = ma - mb
    low = d - math.sqrt(max((ma - la) ** 2 + (ub - mb) ** 2 - 2 * r * (ma - la) * (ub - mb), 0.0))
    high = d + math.sqrt(max((ua - ma) ** 2 + (mb - lb) ** 2 - 2 * r * (ua - ma) * (mb - lb), 0.0))
    return d, (max(-1.0, low), min(1.0, high))
