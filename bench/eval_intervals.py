"""Coverage of eval_harness's 95% intervals by simulation, beside the percentile bootstrap they replace.

A simulated benchmark draws n items from a population (each item's solve rate from a Beta with the
given mean and concentration; concentration 0.5 = items mostly all-or-nothing, 20 = all alike), then K
samples per item. Coverage = share of runs whose interval holds the population mean. Paired: two
models share each item's difficulty (probit offsets; see tests/eval_harness/test_intervals.py).

Usage:
    python bench/eval_intervals.py [--reps 400] [--seed 0]
Prints one table per statistic: coverage and mean width for each case; then the worst case per method.
"""

import argparse
from statistics import NormalDist

import numpy as np

from eval_harness.intervals import paired_difference, score_interval

CDF = np.vectorize(NormalDist().cdf)


def bootstrap(values, rng, resamples=1000) -> tuple[float, float]:
    """The percentile bootstrap over items the harness used before (for comparison only)."""
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def single(reps: int, rng) -> list[tuple]:
    worst = {"wilson-eff": 1.0, "bootstrap": 1.0}
    print("| n | K | mean | concentration | coverage: ours | bootstrap | width: ours | bootstrap |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (10, 30, 100):
        for k in (1, 4, 16, 64):
            for mean in (0.01, 0.05, 0.2, 0.5, 0.95, 0.99):
                for conc in (0.5, 2.0, 20.0):
                    hits, widths = np.zeros(2), np.zeros(2)
                    for _ in range(reps):
                        v = rng.binomial(k, rng.beta(mean * conc, (1 - mean) * conc, size=n)) / k
                        for j, (lo, hi) in enumerate((score_interval(v, trials=k), bootstrap(v, rng))):
                            hits[j] += lo <= mean <= hi
                            widths[j] += hi - lo
                    cov, w = hits / reps, widths / reps
                    worst["wilson-eff"] = min(worst["wilson-eff"], cov[0])
                    worst["bootstrap"] = min(worst["bootstrap"], cov[1])
                    print(
                        f"| {n} | {k} | {mean} | {conc} | {cov[0]:.3f} | {cov[1]:.3f} | {w[0]:.3f} | {w[1]:.3f} |"
                    )
    return worst


def paired(reps: int, rng) -> dict:
    worst = {"mover": 1.0, "bootstrap": 1.0}
    cases = [
        (-0.5, -3, 1.5, 0.5),
        (-3, -3, 1.5, 0.5),
        (2.5, 2.5, 1, 0.5),
        (0, -0.3, 1.5, 0.3),
        (3, 1, 1.5, 0.7),
    ]
    print(
        "\n| n | K | ref offset | model offset | truth | coverage: MOVER | bootstrap | width: MOVER | bootstrap |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (10, 30, 100):
        for k in (1, 4, 16, 64):
            for ref, model, spread, noise in cases:
                big = rng.standard_normal((200_000, 2))
                truth = float(
                    (
                        CDF(model + spread * big[:, 0] + noise * big[:, 1]) - CDF(ref + spread * big[:, 0])
                    ).mean()
                )
                hits, widths = np.zeros(2), np.zeros(2)
                for _ in range(reps):
                    z, e = rng.standard_normal(n), rng.standard_normal(n)
                    a = rng.binomial(k, CDF(model + spread * z + noise * e)) / k
                    b = rng.binomial(k, CDF(ref + spread * z)) / k
                    for j, (lo, hi) in enumerate(
                        (paired_difference(a, b, trials=k)[1], bootstrap(a - b, rng))
                    ):
                        hits[j] += lo <= truth <= hi
                        widths[j] += hi - lo
                cov, w = hits / reps, widths / reps
                worst["mover"] = min(worst["mover"], cov[0])
                worst["bootstrap"] = min(worst["bootstrap"], cov[1])
                print(
                    f"| {n} | {k} | {ref} | {model} | {truth:+.4f} | {cov[0]:.3f} | {cov[1]:.3f} | {w[0]:.3f} | {w[1]:.3f} |"
                )
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=400, help="simulated benchmarks per case")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    worst = single(args.reps, rng)
    print(f"\nworst coverage, one model: {worst}")
    worst = paired(args.reps, rng)
    print(f"worst coverage, paired difference: {worst}")


if __name__ == "__main__":
    main()
