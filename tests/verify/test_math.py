"""Math extraction and verification, checked on the real MATH-500 and GSM8K reference solutions."""

import random

from trace_gen.verify import Verdict, extract_boxed, verify_math
from trace_gen.verify.answers import extract_answer, extract_gsm8k, extract_last_number, normalise_answer
from trace_gen.verify.benchmarks import read_jsonl
from trace_gen.verify.math import verify_answer
from trace_gen.verify.pool import MathVerifierPool


def test_boxed_only_after_think():
    text = "<think>maybe \\boxed{3}</think> so the answer is \\boxed{\\frac{1}{2}}."
    assert extract_boxed(text) == "\\frac{1}{2}"
    assert extract_boxed("<think>\\boxed{3}</think> no box here") is None
    assert extract_boxed("<think>truncated \\boxed{3}") is None  # never closed: no answer part
    assert extract_boxed("plain \\boxed{a{b}c} then \\fbox{7}") == "7"


def test_boxed_with_escaped_braces_piecewise():
    piecewise = "\\left\\{\\begin{array}{ll} x & x>0 \\\\ -x & x \\le 0\\end{array}\\right."
    assert extract_boxed(f"so \\boxed{{{piecewise}}} is f.") == piecewise
    assert extract_boxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"


def test_gsm8k_and_last_number_extractors():
    assert extract_gsm8k("so <<2*3=6>>6\n#### 1,234") == "1234"
    assert extract_gsm8k("#### $18.") == "18"
    assert extract_last_number("<think>42</think> The total is 3,500 dollars.") == "3500"
    assert extract_last_number("the pair is (6,5)") == "(6,5)"  # a tuple, not 65
    assert extract_last_number("so it is \\mathbf{9 8 7 2 1}") == "98721"
    assert extract_answer("The answer is 7.", ("boxed", "last_number")) == ("7", "last_number")
    assert extract_answer("The answer is 7.") is None  # fallbacks are opt-in


def test_verdicts_carry_reasons():
    assert verify_math("</think> \\boxed{0.5}", "\\frac{1}{2}") == Verdict("correct", "matches gold")
    wrong = verify_math("</think> \\boxed{3}", "4")
    assert wrong.verdict == "wrong" and not wrong.kept
    assert verify_math("<think> \\boxed{4}", "4").verdict == "unverifiable"
    assert verify_math("no answer", "4").verdict == "unverifiable"
    prose = verify_math("Thus there are 41 such integers.", "41", ("boxed", "prose"))
    assert prose == Verdict("correct", "matches gold (same text) (extracted by prose:final_sentence)")


def test_normal_form():
    assert normalise_answer("\\$1{,}234.") == "1234"
    assert normalise_answer("10 \\text { years }") == "10"
    assert normalise_answer("864 \\mbox{ inches}^2") == "864"
    assert normalise_answer("62.5\\%") == "62.5"
    assert normalise_answer("-1./3") == "-1/3"
    assert normalise_answer("x = \\dfrac{1}{2}") == "\\frac{1}{2}"
    assert normalise_answer("\\text{(C)}") == "C"
    assert normalise_answer("90^\\circ") == "90"
    assert normalise_answer("\\pi r^2") == "\\pi r^2"
    assert (
        normalise_answer("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == "\\begin{pmatrix}1\\\\2\\end{pmatrix}"
    )


def _references(name: str) -> tuple[list[str], list[str], tuple[str, ...]]:
    if name == "math500":
        rows = read_jsonl("math500.jsonl")
        return [r["solution"] for r in rows], [r["answer"] for r in rows], ("boxed",)
    rows = read_jsonl("gsm8k_test.jsonl")
    return (
        [r["answer"] for r in rows],
        [normalise_answer(r["answer"].split("####")[-1]) for r in rows],
        ("gsm8k",),
    )


def test_reference_solutions_verify_with_and_without_the_fast_path():
    """Equivalence itself (fast path off: every pair goes through math-verify) on both sets."""
    for name in ("math500", "gsm8k"):
        solutions, golds, extractors = _references(name)
        for fast_path, minimum in ((True, 1.0), (False, 0.99)):
            with MathVerifierPool(workers=2, timeout_s=20, fast_path=fast_path) as pool:
                verdicts = pool.map(solutions, golds, extractors)
            correct = sum(v.verdict == "correct" for v in verdicts)
            assert correct >= minimum * len(golds), (name, fast_path, correct, len(golds))


def test_shuffled_control_and_constant_answers_accept_nothing_wrong():
    """Each reference scored against another item's gold, and \\boxed{0}/{1}/{2} on every item: an accept
    counts as false when the two golds (or the gold and the constant) are not the same number/text."""
    for name in ("math500", "gsm8k"):
        solutions, golds, extractors = _references(name)
        perm = list(range(len(golds)))
        random.Random(0).shuffle(perm)
        with MathVerifierPool(workers=2, timeout_s=20) as pool:
            same = pool._pool.map_args([(golds[i], golds[j], "boxed", True) for i, j in enumerate(perm)])
            pairs = [(i, j) for (i, j), v in zip(enumerate(perm), same, strict=True) if not v.kept]
            control = pool.map([solutions[i] for i, _ in pairs], [golds[j] for _, j in pairs], extractors)
            false_accepts = [pairs[k] for k, v in enumerate(control) if v.kept]
            assert not false_accepts, (name, false_accepts[:5])
            for constant in "012":
                verdicts = pool.map([f"\\boxed{{{constant}}}"] * len(golds), golds)
                accepted = [g for g, v in zip(golds, verdicts, strict=True) if v.kept]
                assert all(normalise_answer(g) == constant for g in accepted), (name, constant, accepted[:5])


def test_verify_answer_is_symmetric_on_simple_forms():
    assert verify_answer("\\frac{14}{3}", "14/3").kept
    assert not verify_answer("\\frac{14}{3}", "4").kept


def test_fast_path_agrees_with_math_verify():
    for answer, gold in [
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("042", "42"),
        ("-7", "-7"),
        ("\\sqrt{2}", "\\sqrt{2}"),
        ("12", "13"),
    ]:
        assert verify_answer(answer, gold).verdict == verify_answer(answer, gold, fast_path=False).verdict
