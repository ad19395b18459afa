"""The second opinion and the disagreement report."""

import pytest

from trace_gen.verify import Verdict
from trace_gen.verify.audit import audit_math, second_opinion


def test_second_opinion_is_simple_and_independent():
    assert second_opinion("</think> so \\boxed{42}", "42").verdict == "correct"
    assert second_opinion("</think> the answer is 3.50", "3.5").verdict == "correct"
    assert second_opinion("</think> \\boxed{41}", "42").verdict == "wrong"
    assert second_opinion("</think> \\boxed{\\frac{1}{2}}", "0.5").verdict == "unverifiable"


def test_audit_reports_where_verifiers_disagree():
    completions = [
        "</think> \\boxed{42}",
        "</think> \\boxed{\\frac{1}{2}}",
        "</think> \\boxed{7}",
        "</think> \\boxed{5}",
    ]
    golds = ["42", "0.5", "7", "5"]
    primary = [
        Verdict("correct", ""),
        Verdict("correct", ""),
        Verdict("wrong", "parse gap"),
        Verdict("correct", ""),
    ]
    report = audit_math(completions, golds, primary=primary)
    assert report["pairs"] == {"correct/correct": 2, "correct/unverifiable": 1, "wrong/correct": 1}
    assert [d["index"] for d in report["disagreements"]] == [2]
    assert report["agreement_when_both_decided"] == pytest.approx(2 / 3)


def test_audit_runs_the_pool_when_no_primary_is_given():
    report = audit_math(["</think> \\boxed{2}", "</think> \\boxed{3}"], ["2", "2"], workers=1)
    assert report["pairs"] == {"correct/correct": 1, "wrong/wrong": 1} and not report["disagreements"]
