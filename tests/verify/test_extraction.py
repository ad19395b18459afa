"""Answers stated without a box: the prose extractor chain against math-verify on the whole text.

Box-free worked solutions: GSM8K train solutions with the "#### N" line removed (tests/data) and
MATH-500 reference solutions with every \\boxed{} unwrapped. The chain must find at least as many
correct answers as math-verify's own extraction, and accept nothing in a shuffled control (each
solution scored against another item's gold, pairs whose golds are equal left out). bench/verify.py
runs the same measurement on all 7,473 GSM8K train rows.
"""

import random
from pathlib import Path

from trace_gen.verify.answers import extract_prose, normalise_answer, unwrap_boxes
from trace_gen.verify.benchmarks import read_jsonl
from trace_gen.verify.math import verify_answer, verify_whole_text
from trace_gen.verify.pool import MathVerifierPool, WorkerPool

GSM8K_TRAIN = Path(__file__).resolve().parents[1] / "data" / "gsm8k_train.jsonl.gz"


def box_free_sets(gsm8k_rows: int | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (solutions without a box or "####" line, golds)."""
    gsm = read_jsonl(GSM8K_TRAIN)[:gsm8k_rows]
    math500 = read_jsonl("math500.jsonl")
    return {
        "gsm8k_train": (
            [r["answer"].rsplit("####", 1)[0] for r in gsm],
            [normalise_answer(r["answer"].rsplit("####", 1)[1]) for r in gsm],
        ),
        "math500": ([unwrap_boxes(r["solution"]) for r in math500], [r["answer"] for r in math500]),
    }


def test_prose_steps_on_the_classes_of_the_issue():
    assert extract_prose("Thus there are 41 such integers less than 100.") == ("41", "prose:final_sentence")
    assert extract_prose("So the final answer is $\\frac{3}{4}$.") == ("\\frac{3}{4}", "prose:answer_is")
    assert extract_prose("Therefore\n$$p(8) = \\frac{3}{56}.$$") == ("\\frac{3}{56}.", "prose:final_math")
    assert extract_prose("Natalia sold 48+24 = <<48+24=72>>72 clips altogether.")[0] == "72"
    assert extract_prose("the equation is $5x - 7y + 4 = 0.$")[0] == "5x - 7y + 4 = 0."
    assert extract_prose("a total of $6$ possible values of $x.$")[0] == "6"
    assert extract_prose("has a box \\boxed{3} so prose is not tried") is None
    assert extract_prose("It costs $5 a day and $3 a week, so 8 dollars in total.")[0] == "8"


def test_chain_finds_at_least_as_many_as_math_verify_with_no_false_accepts():
    for name, (solutions, golds) in box_free_sets(gsm8k_rows=600).items():
        with MathVerifierPool(workers=2, timeout_s=20) as pool:
            chain = pool.map(solutions, golds, ("prose",))
            perm = list(range(len(golds)))
            random.Random(0).shuffle(perm)
            pairs = [(i, j) for i, j in enumerate(perm) if not verify_answer(golds[i], golds[j]).kept]
            control = pool.map([solutions[i] for i, _ in pairs], [golds[j] for _, j in pairs], ("prose",))
        with WorkerPool(verify_whole_text, 2, 20, lambda t: False, lambda e: False) as pool:
            baseline = pool.map_args(list(zip(solutions, golds, strict=True)))
        found, found_by_math_verify = sum(v.kept for v in chain), sum(baseline)
        assert found >= found_by_math_verify, (name, found, found_by_math_verify)
        assert found >= 0.9 * len(golds), (name, found, len(golds))
        assert not [p for p, v in zip(pairs, control, strict=True) if v.kept], name
