"""--oracle scores each benchmark's reference solutions (the harness's self-test); shuffled references
(item i answered with another item's solution) score ≈0 apart from pairs whose gold answers coincide."""

import json
import random

import pytest

from eval_harness.benchmarks import gsm8k, humaneval, math500
from eval_harness.cli import main
from eval_harness.metrics import answer_key
from trace_gen.verify.benchmarks import benchmarks_dir

pytestmark = pytest.mark.skipif(
    not (benchmarks_dir() / "math500.jsonl").exists(), reason=f"shared benchmarks not in {benchmarks_dir()}"
)


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
    assert oracle["math500"]["n"] == 500 and oracle["math500"]["pass@1"] >= 0.99
    assert oracle["gsm8k"]["n"] == 1319 and oracle["gsm8k"]["pass@1"] >= 0.99
    assert oracle["humaneval"]["n"] == 164 and oracle["humaneval"]["verdicts"] == {"passed": 164}
    for name in ("aime24", "amc23", "toy"):
        assert oracle[name]["pass@1"] == 1.0, name


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
    same_gold = sum(
        answer_key(items[j].gold, False) == answer_key(items[i].gold, False) for i, j in enumerate(perm)
    )
    accepted = round(summary["pass@1"] * len(items))
    assert same_gold < 0.05 * len(items), f"{same_gold} shuffled pairs share a gold answer"
    assert accepted <= same_gold + 0.01 * len(items), (
        accepted,
        same_gold,
    )  # 1%: golds equal but spelled apart


def test_shuffled_humaneval_references_fail(tmp_path):
    summary, _, _ = _shuffled_run(tmp_path, humaneval)
    assert summary["pass@1"] == 0.0, summary["verdicts"]
    assert set(summary["verdicts"]) <= {"failed", "crashed", "timeout"}
