"""Benchmark metrics from per-sample verdicts: pass@1, unbiased pass@k, maj@k, avg@K with its spread.

Every metric is first computed per item and then averaged over items; its 95% interval comes from
`eval_harness.intervals` (Wilson on an effective sample size; exact Wilson at K = 1).
avg@K is DeepSeek-R1's way to report AIME: run j is the j-th sample of every item (each sample has its
own seed), avg@K is the mean of the K runs' accuracies (pass@1, when every item has K samples) and `avg@K_std` their
standard deviation, the run-to-run spread a single-seed number hides.
"""

import re
from collections import Counter

import numpy as np

from eval_harness.intervals import score_interval
from trace_gen.verify import KEPT_VERDICTS, normalise_answer

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with n samples of which c are correct (Chen et al. 2021, eq. 1):
    1 - C(n-c, k) / C(n, k), computed as a stable product."""
    assert 0 <= c <= n and 1 <= k <= n, f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}"
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def answer_key(answer: str | None, correct: bool) -> str | None:
    """The group an answer votes for in maj@k: all correct answers are one group (they all equal the
    gold); others by the verifier's normal form (trace_gen.verify.normalise_answer), numbers by value."""
    if answer is None:
        return None
    if correct:
        return "<correct>"
    text = normalise_answer(answer)
    if text.startswith("\\text{") and text.endswith("}"):
        text = text[len("\\text{") : -1]
    if _NUMBER.fullmatch(text):
        return repr(float(text))
    return text


def maj_at_k(keys: list[str | None], k: int) -> float:
    """Majority vote over the first k samples' answer keys (None = no answer, casts no vote).

    1.0 if the correct group wins, 0.0 if another wins; a tie for the most votes scores the share of
    tied groups that are correct (the expected score of breaking the tie at random), so ties never
    depend on sample order."""
    votes = Counter(key for key in keys[:k] if key is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [key for key, count in votes.items() if count == top]
    return tied.count("<correct>") / len(tied)


def ks_for(n: int) -> list[int]:
    """The k reported for n samples: powers of two below n, and n itself."""
    ks = [1]
    while ks[-1] * 2 < n:
        ks.append(ks[-1] * 2)
    return [*ks, n] if n > 1 else ks


def is_correct(row: dict) -> bool:
    return row["verdict"] in KEPT_VERDICTS  # "correct" (math) or "passed" (code)


def is_infra_error(row: dict) -> bool:
    """A sample the checker could not judge (sandbox failure, verifier timeout or crash, unparseable
    gold): it counts as not solved, and is reported apart so it is never read as a wrong answer."""
    reason = row.get("reason") or ""
    return row["verdict"] == "sandbox_error" or (
        row["verdict"] == "unverifiable"
        and reason.startswith(("timed out", "could not check", "could not parse gold"))
    )


def summarise(samples: list[list[dict]], kind: str) -> dict:
    """Metrics of one benchmark from per-item lists of sample rows (each with `verdict`, and
    optionally `answer`, `finish_reason`, `num_tokens`). Fractions in 0-1; intervals as [low, high].

    K (`samples`) is the smallest number of samples any item has; pass@1 uses every sample."""
    assert samples and all(samples), "every item needs at least one sample"
    n_min = min(len(s) for s in samples)
    correct = [[is_correct(r) for r in s] for s in samples]
    out: dict = {"n": len(samples), "samples": n_min}
    for k in ks_for(n_min):
        per_item = [pass_at_k(len(c), sum(c), k) for c in correct]
        out[f"pass@{k}"] = float(np.mean(per_item))
        out[f"pass@{k}_ci"] = list(score_interval(per_item, trials=n_min // k))
    if n_min > 1:
        runs = np.array([c[:n_min] for c in correct], dtype=np.float64).mean(axis=0)  # (K,) run accuracies
        out[f"avg@{n_min}"] = float(runs.mean())
        out[f"avg@{n_min}_std"] = float(runs.std(ddof=1))
    if kind == "math" and n_min > 1:
        per_item = [
            maj_at_k([answer_key(r.get("answer"), ok) for r, ok in zip(s, c, strict=True)], n_min)
            for s, c in zip(samples, correct, strict=True)
        ]
        out[f"maj@{n_min}"] = float(np.mean(per_item))
        out[f"maj@{n_min}_ci"] = list(score_interval(per_item, trials=1))
    rows = [r for s in samples for r in s]
    finish = [r.get("finish_reason") for r in rows]
    tokens = [r.get("num_tokens") for r in rows]
    out["truncation_rate"] = None if None in finish else sum(f == "length" for f in finish) / len(rows)
    out["mean_response_tokens"] = None if None in tokens else sum(tokens) / len(rows)
    out["verdicts"] = dict(sorted(Counter(r["verdict"] for r in rows).items()))
    out["infra_error_rate"] = sum(is_infra_error(r) for r in rows) / len(rows)
    return out


def item_scores(samples: list[list[dict]]) -> list[float]:
    """pass@1 of each item (its fraction of correct samples), in the order given: what paired
    comparisons of two models over the same items use."""
    return [sum(is_correct(r) for r in s) / len(s) for s in samples]
