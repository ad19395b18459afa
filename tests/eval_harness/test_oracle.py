"""--oracle scores each benchmark's reference solutions (the harness's self-test): 100% with the
verifier's identical-text fast path, >= 99% with it off (so equivalence itself is tested, not only
extraction); shuffled references (item i answered with another item's solution) are accepted only
where the two gold answers are equivalent. The benchmark data ships in the package: a missing file
is a failure here, never a skip."""

import json
import random

import pytest

from eval_harness.benchmarks import gsm8k, humaneval, math500
from eval_harness.cli import main
from eval_harness.evaluate import oracle_completions
from trace_gen.verify import MathVerifierPool, verify_answer

MATH_BENCHMARKS = ("math500", "gsm8k", "aime24", "amc23", "toy")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle")
    assert (
        main(
            ["--oracle", "--benchmarks", "math500,gsm8k,humaneval,aime24,amc23,toy", "--output-dir", str(out)]
        )
        == 0
    )
    return json.loads((out / "summary.json").read_text())["benchmarks"]


def test_oracle_scores_the_reference_solutions(oracle):
    assert oracle["math500"]["n"] == 500 and oracle["gsm8k"]["n"] == 1319
    assert oracle["humaneval"]["n"] == 164 and oracle["humaneval"]["verdicts"] == {"passed": 164}
    for name in MATH_BENCHMARKS:
        assert oracle[name]["pass@1"] == 1.0, (name, oracle[name]["verdicts"])


def test_oracle_with_the_fast_path_off_tests_equivalence():
    from eval_harness.benchmarks import BENCHMARKS

    for name in MATH_BENCHMARKS:
        bench = BENCHMARKS[name]
        items = bench.load()
        completions = [rows[0]["completion"] for rows in oracle_completions(bench, items).values()]
        with MathVerifierPool(workers=2, timeout_s=20, fast_path=False) as pool:
            verdicts = pool.map(completions, [it.gold for it in items], bench.EXTRACTORS)
        correct = sum(v.verdict == "correct" for v in verdicts)
        assert correct >= 0.99 * len(items), (
            name,
            correct,
            len(items),
            [v for v in verdicts if not v.kept][:3],
        )


def _shuffled_run(tmp_path, bench, seed=0) -> tuple[dict, list, list]:
    items = bench.load()
    perm = list(range(len(items)))
    random.Random(seed).shuffle(perm)
    responses = tmp_path / f"{bench.NAME}_shuffled.jsonl"
    with responses.open("w") as f:
        for i, j in enumerate(perm):
            f.write(json.dumps({"id": items[i].id, "completion": bench.oracle(items[j])}) + "\n")
    out = tmp_path / "out"
    assert main(["--responses", str(responses), "--benchmarks", bench.NAME, "--output-dir", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())["benchmarks"][bench.NAME], items, perm


@pytest.mark.parametrize("bench", [math500, gsm8k], ids=lambda b: b.NAME)
def test_shuffled_math_references_score_only_where_golds_coincide(tmp_path, bench):
    summary, items, perm = _shuffled_run(tmp_path, bench)
    same_gold = sum(verify_answer(items[j].gold, items[i].gold).kept for i, j in enumerate(perm))
    accepted = round(summary["pass@1"] * len(items))
    assert same_gold < 0.05 * len(items), f"{same_gold} shuffled pairs share a gold answer"
    assert accepted <= same_gold, (accepted, same_gold)


def test_shuffled_humaneval_references_fail(tmp_path):
    summary, _, _ = _shuffled_run(tmp_path, humaneval)
    assert summary["pass@1"] == 0.0, summary["verdicts"]
    assert set(summary["verdicts"]) <= {"failed", "crashed", "timeout"}
