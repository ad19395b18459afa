"""Math extraction and verification, checked on the real MATH-500 and GSM8K reference solutions."""

import random

import pytest

from trace_gen.verify import Verdict, extract_boxed, verify_math
from trace_gen.verify.benchmarks import benchmarks_dir, read_jsonl
from trace_gen.verify.math import extract_answer, extract_gsm8k, extract_last_number, verify_answer
from trace_gen.verify.pool import MathVerifierPool

needs_benchmarks = pytest.mark.skipif(
    not (benchmarks_dir() / "math500.jsonl").exists(), reason="shared benchmarks not present"
)


def test_boxed_only_after_think():
    text = "<think>maybe \\boxed{3}</think> so the answer is \\boxed{\\frac{1}{2}}."
    assert extract_boxed(text) == "\\frac{1}{2}"
    assert extract_boxed("<think>\\boxed{3}</think> no box here") is None
    assert extract_boxed("<think>truncated \\boxed{3}") is None  # never closed: no answer part
    assert extract_boxed("plain \\boxed{a{b}c} then \\fbox{7}") == "7"


def test_gsm8k_and_last_number_extractors():
    assert extract_gsm8k("so <<2*3=6>>6\n#### 1,234") == "1234"
    assert extract_gsm8k("#### $18.") == "18"
    assert extract_last_number("<think>42</think> The total is 3,500 dollars.") == "3500"
    assert extract_answer("The answer is 7.", ("boxed", "last_number")) == ("7", "last_number")
    assert extract_answer("The answer is 7.") is None  # fallbacks are opt-in


def test_verdicts_carry_reasons():
    assert verify_math("</think> \\boxed{0.5}", "\\frac{1}{2}") == Verdict("correct", "matches gold")
    wrong = verify_math("</think> \\boxed{3}", "4")
    assert wrong.verdict == "wrong" and not wrong.kept
    assert verify_math("<think> \\boxed{4}", "4").verdict == "unverifiable"
    assert verify_math("no answer", "4").verdict == "unverifiable"


@needs_benchmarks
def test_math500_reference_solutions_verify_and_shuffled_control_is_rejected():
    rows = read_jsonl("math500.jsonl")
    with MathVerifierPool(workers=2, timeout_s=20) as pool:
        verdicts = pool.map([r["solution"] for r in rows], [r["answer"] for r in rows])
        correct = sum(v.verdict == "correct" for v in verdicts)
        assert correct >= 0.99 * len(rows), f"only {correct}/{len(rows)} reference solutions verified"

        perm = list(range(len(rows)))
        random.Random(0).shuffle(perm)
        same_gold = pool._pool.map_args([(rows[i]["answer"], rows[j]["answer"]) for i, j in enumerate(perm)])
        pairs = [(i, j) for (i, j), v in zip(enumerate(perm), same_gold, strict=True) if not v.kept]
        assert len(rows) - len(pairs) <= 15, "too many shuffled pairs with equivalent gold answers"
        control = pool.map([rows[i]["solution"] for i, _ in pairs], [rows[j]["answer"] for _, j in pairs])
    accepted = sum(v.kept for v in control)
    assert accepted <= 0.01 * len(pairs), f"shuffled control accepted {accepted}/{len(pairs)}"


@needs_benchmarks
def test_gsm8k_reference_solutions_verify_and_shuffled_control_is_rejected():
    rows = read_jsonl("gsm8k_test.jsonl")
    golds = [r["answer"].split("####")[-1].strip().replace(",", "") for r in rows]
    with MathVerifierPool(workers=2, timeout_s=20) as pool:
        verdicts = pool.map([r["answer"] for r in rows], golds, extractors=("gsm8k",))
        correct = sum(v.verdict == "correct" for v in verdicts)
        assert correct >= 0.995 * len(rows), f"only {correct}/{len(rows)} GSM8K solutions verified"
        perm = list(range(len(rows)))
        random.Random(0).shuffle(perm)
        pairs = [(i, j) for i, j in enumerate(perm) if golds[i] != golds[j]]
        control = pool.map([rows[i]["answer"] for i, _ in pairs], [golds[j] for _, j in pairs], ("gsm8k",))
    accepted = sum(v.kept for v in control)
    assert accepted <= 0.01 * len(pairs), f"shuffled control accepted {accepted}/{len(pairs)}"


def test_verify_answer_is_symmetric_on_simple_forms():
    assert verify_answer("\\frac{14}{3}", "14/3").kept
    assert not verify_answer("\\frac{14}{3}", "4").kept


def test_fast_path_agrees_with_math_verify():
    from math_verify import parse, verify

    from trace_gen.verify.math import _fast_verdict

    assert _fast_verdict("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})").kept
    assert _fast_verdict("042", "42").kept and not _fast_verdict("41", "42").kept
    assert _fast_verdict("\\frac{1}{2}", "0.5") is None  # needs math-verify
    for answer, gold in [("-7", "-7"), ("12", "13"), ("\\sqrt{2}", "\\sqrt{2}")]:
        same = verify(
            parse(f"${gold}$", parsing_timeout=None),
            parse(f"${answer}$", parsing_timeout=None),
            timeout_seconds=None,
        )
        assert _fast_verdict(answer, gold).kept == same
