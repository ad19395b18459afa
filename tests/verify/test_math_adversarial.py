"""An adversarial gold/answer set for the classes math-verify mishandles on its own (sets, intervals,
matrices, prose, equation systems, units, percent, piecewise, tuples, trailing-dot decimals, \\hbar,
spaced bold digits): a collapse is "unverifiable", never "correct"; constants accept nothing wrong."""

import random

import pytest

from trace_gen.verify.answers import normalise_answer
from trace_gen.verify.math import verify_answer

PIECEWISE = "\\left\\{\\begin{array}{ll} x & x>0 \\\\ -x & x \\le 0\\end{array}\\right."
ODE = (
    "\\mathbf{x}(t) = c_1 e^{t} \\begin{pmatrix} 1 \\\\ 0 \\end{pmatrix} + c_2 e^{2t} "
    "\\begin{pmatrix} 0 \\\\ 1 \\end{pmatrix}"
)
# (gold, answer, the verdict wanted, or a set of acceptable ones where "not correct" is the point)
CASES = [
    ("\\{x \\mid x \\geq 1\\}", "1", "unverifiable"),
    ("\\{x : x > 2\\}", "\\{x \\mid x > 2\\}", "unverifiable"),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", "correct"),
    ("\\{1, 2, 3\\}", "1", {"wrong", "unverifiable"}),
    ("[1, \\infty)", "1", {"wrong", "unverifiable"}),
    ("(-\\infty, 3]", "(-\\infty, 3]", "correct"),
    ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "1", {"wrong", "unverifiable"}),
    (
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "\\begin{bmatrix} 1 & 0 \\\\ 0 & 1 \\end{bmatrix}",
        "correct",
    ),
    (ODE, "1", {"wrong", "unverifiable"}),
    ("No. This would lead to 0=1.", "1", "unverifiable"),
    ("The series converges for all x.", "0", "unverifiable"),
    ("\\text{Evelyn}", "Evelyn", "correct"),
    ("\\text{odd}", "1", "wrong"),
    ("x = 1, y = 2", "1", {"wrong", "unverifiable"}),
    ("x + y = 3, x - y = 1", "1", {"wrong", "unverifiable"}),
    ("x + y = 3, x - y = 1", "2", {"wrong", "unverifiable"}),
    ("x \\ge 1", "1", {"wrong", "unverifiable"}),
    ("10 \\text { years }", "10", "correct"),
    ("5 \\text{ cm}^2", "5", "correct"),
    ("62.5\\%", "62.5", "correct"),
    ("62.5\\%", "0.625", "wrong"),  # the MATH/GSM8K convention: "62.5%" is the number 62.5
    (PIECEWISE, "1", "unverifiable"),
    ("(6, 5)", "65", "wrong"),
    ("(6, 5)", "(6,5)", "correct"),
    ("-\\frac{1}{3}", "-1./3", "correct"),
    ("-1", "-1./3", "wrong"),
    ("\\frac{\\hbar^2}{2m}", "2", {"wrong", "unverifiable"}),
    ("E_n = n^2 \\hbar \\omega", "2", {"wrong", "unverifiable"}),
    ("98721", "\\mathbf{9 8 7 2 1}", "correct"),
    ("1,234", "1234", "correct"),
    ("y = 2x + 1", "2x+1", "correct"),
    ("3\\sqrt{13}", "\\sqrt{117}", "correct"),
]
# a gold that cannot be parsed is "unverifiable" with the reason, never "wrong"
BAD_GOLDS = [
    ("", "the gold answer is empty"),
    ("\\frac{", "gold '\\\\frac{'"),
    ("   ", "the gold answer is empty"),
]


@pytest.mark.parametrize("fast_path", [True, False])
def test_each_class(fast_path):
    for gold, answer, wanted in CASES:
        got = verify_answer(answer, gold, fast_path)
        ok = got.verdict in wanted if isinstance(wanted, set) else got.verdict == wanted
        assert ok, (gold, answer, wanted, got)


def test_identical_text_is_correct_only_on_the_fast_path():
    """Piecewise answers cannot be parsed: identical text is their only check (and says so)."""
    assert verify_answer(PIECEWISE, PIECEWISE).verdict == "correct"
    assert verify_answer(PIECEWISE, PIECEWISE, fast_path=False).verdict == "unverifiable"


def test_bad_golds_are_unverifiable_with_the_reason():
    for gold, reason in BAD_GOLDS:
        got = verify_answer("1", gold)
        assert got.verdict == "unverifiable" and reason in got.reason, (gold, got)


def test_constant_answers_and_a_shuffled_control_accept_nothing_wrong():
    golds = sorted({gold for gold, _, _ in CASES})
    for constant in ("0", "1", "2"):
        accepted = [g for g in golds if verify_answer(constant, g).kept]
        assert all(normalise_answer(g) == constant for g in accepted), (constant, accepted)
    answers = [answer for _, answer, wanted in CASES if wanted == "correct"]
    rng = random.Random(0)
    for _ in range(3):
        for answer in answers:
            gold = rng.choice(golds)
            same = verify_answer(answer, gold).kept
            assert not same or any(g == gold and a == answer for g, a, w in CASES if w == "correct"), (
                answer,
                gold,
            )
