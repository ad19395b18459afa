"""A second opinion on math verdicts and a report of where the two verifiers disagree.

The primary verdict is math-verify's (`verify_math`). The second opinion is deliberately simple and
independent of sympy: the last number of the answer part (or the boxed text) compared with the
gold as a normalised string or a float. Disagreements between the two are where a human should
look first: a primary "wrong" that the second calls correct often means a parsing gap; a primary
"correct" that the second rejects is usually a form math-verify understands (fractions, sets).

Users run it on a traces directory with `python -m trace_gen filter IN OUT --audit` (the primary
verdicts are the rows' own; the report goes to OUT/audit_report.json).

Usage:
    report = audit_math(completions, golds)            # verdicts computed in a MathVerifierPool
    report["disagreements"][:10]                       # index, primary, second, answer, gold
"""

from collections import Counter
from collections.abc import Sequence

from trace_gen.verify.answers import extract_answer, normalise_answer
from trace_gen.verify.pool import MathVerifierPool
from trace_gen.verify.verdict import Verdict


def _as_float(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def second_opinion(completion: str, gold: str) -> Verdict:
    """A sympy-free check: boxed text or last number, equal to gold as text or as a float."""
    found = extract_answer(completion, ("boxed", "last_number"))
    if found is None:
        return Verdict("unverifiable", "second opinion: no answer")
    answer, gold = normalise_answer(found[0]), normalise_answer(str(gold))
    if answer == gold:
        return Verdict("correct", "second opinion: same text")
    a, g = _as_float(answer), _as_float(gold)
    if a is not None and g is not None:
        same = abs(a - g) <= 1e-6 * max(1.0, abs(g))
        return Verdict("correct" if same else "wrong", "second opinion: numeric comparison")
    return Verdict("unverifiable", "second opinion: not comparable as text or number")


def audit_math(
    completions: Sequence[str],
    golds: Sequence[str],
    primary: Sequence[Verdict] | None = None,
    workers: int = 2,
    timeout_s: float = 10.0,
) -> dict:
    """Counts of (primary, second) verdict pairs and the rows where both decided and disagree."""
    if primary is None:
        with MathVerifierPool(workers, timeout_s) as pool:
            primary = pool.map(completions, golds)
    second = [second_opinion(c, g) for c, g in zip(completions, golds, strict=True)]
    pairs = Counter(f"{p.verdict}/{s.verdict}" for p, s in zip(primary, second, strict=True))
    disagreements = [
        {
            "index": i,
            "primary": p.verdict,
            "primary_reason": p.reason,
            "second": s.verdict,
            "answer": (extract_answer(completions[i], ("boxed", "last_number")) or ("", ""))[0][:80],
            "gold": str(golds[i])[:80],
        }
        for i, (p, s) in enumerate(zip(primary, second, strict=True))
        if p.verdict != s.verdict and "unverifiable" not in (p.verdict, s.verdict)
    ]
    return {
        "rows": len(second),
        "pairs": dict(pairs),
        "agreement_when_both_decided": 1
        - len(disagreements) / max(1, sum(n for k, n in pairs.items() if "unverifiable" not in k)),
        "disagreements": disagreements,
    }
