"""Dedup (exact and MinHash near-duplicates), benchmark decontamination, keep policies, the pipeline."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trace_gen.filters import (
    Decontaminator,
    FilterConfig,
    apply_policy,
    duplicate_reasons,
    filter_rows,
    filter_traces,
)
from trace_gen.verify.benchmarks import benchmarks_dir, read_jsonl

LONG = " ".join(f"step {i} we add {i} and {i + 1} to get {2 * i + 1}" for i in range(60))


def test_exact_and_near_duplicates_within_a_group():
    near = LONG.replace("step 30 ", "step thirty ")
    texts = [LONG, LONG.upper(), near, "something else entirely", LONG]
    reasons = duplicate_reasons(texts, ["a", "a", "a", "a", "b"], threshold=0.8)
    assert reasons == [None, "exact_duplicate", "near_duplicate", None, None]


def test_decontamination_against_shared_benchmarks_and_a_given_set(tmp_path):
    if not (benchmarks_dir() / "gsm8k_test.jsonl").exists():
        pytest.skip("shared benchmarks not present")
    decon = Decontaminator.from_benchmarks()
    gsm_test = read_jsonl("gsm8k_test.jsonl")[5]["question"]
    gsm_train = read_jsonl("gsm8k_train.jsonl")[5]["question"]
    math500 = read_jsonl("math500.jsonl")[7]["problem"]
    assert decon.match("Please solve: " + gsm_test) == "gsm8k_test"
    assert decon.match(math500.upper()) == "math500"
    assert decon.match(gsm_train) is None  # training sets are not contamination
    assert decon.match("What is two plus two? Give a short answer please.") is None

    extra = tmp_path / "private_eval.jsonl"
    extra.write_text(json.dumps({"question": "a brand new private question with many words in it"}) + "\n")
    decon.add_jsonl(extra)
    assert decon.match("so: a brand new private question with many words in it!") == "private_eval"


def test_keep_policies():
    rows = [
        {"prompt_id": "p", "sample_idx": 2, "num_tokens": 50},
        {"prompt_id": "p", "sample_idx": 0, "num_tokens": 90},
        {"prompt_id": "p", "sample_idx": 1, "num_tokens": 30},
        {"prompt_id": "q", "sample_idx": 0, "num_tokens": 10},
    ]
    assert apply_policy(rows, "all") == [True] * 4
    assert apply_policy(rows, "max_per_prompt", m=2) == [False, True, True, True]
    assert apply_policy(rows, "shortest") == [False, False, True, True]


def _row(pid, idx, verdict="correct", completion=None, user="Compute the sum of 17 and 25.", finish="stop"):
    reasoning = " ".join(f"try {idx * 7 + i} then {i * idx} gives {i + idx}" for i in range(40))
    completion = completion or f"<think>{reasoning}</think> \\boxed{{42}}"
    return {
        "prompt_id": pid,
        "sample_idx": idx,
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": completion}],
        "completion": completion,
        "finish_reason": finish,
        "num_tokens": len(completion) // 4,
        "verdict": verdict,
        "verdict_reason": "",
    }


def test_pipeline_counts_each_reason_and_writes_parquet(tmp_path):
    gsm_question = read_jsonl("gsm8k_test.jsonl")[0]["question"] if benchmarks_dir().exists() else "x"
    rows = [
        _row("a", 0),
        _row("a", 1),
        _row("a", 2, completion=_row("a", 0)["completion"]),  # exact duplicate of a/0
        _row("a", 3, verdict="wrong"),
        _row("a", 4, verdict="unverifiable"),
        _row("a", 5, finish="length"),
        _row("b", 0, user=gsm_question),  # contaminated
        _row("c", 0, completion="<think>short</think> \\boxed{1}"),
        _row("c", 1, completion="<think>a bit longer reasoning here</think> \\boxed{1}"),
    ]
    kept, _, report = filter_rows(rows, FilterConfig(policy="shortest"))
    assert [(r["prompt_id"], r["sample_idx"]) for r in kept] == [("a", 0), ("c", 0)]
    assert report["reasons"] == {
        "verdict:wrong": 1,
        "verdict:unverifiable": 1,
        "format:truncated": 1,
        "dedup:exact_duplicate": 1,
        "contaminated:gsm8k_test": 1,
        "policy:shortest": 2,
    }
    assert report["kept"] + report["rejected"] == report["rows"] == len(rows)

    traces = tmp_path / "traces"
    traces.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:5]), traces / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[5:]), traces / "part-00001.parquet")
    out = tmp_path / "filtered"
    report = filter_traces(traces, out, FilterConfig(policy="shortest"))
    assert pq.read_table(out / "part-00000.parquet").num_rows == 2
    assert pq.read_table(out / "rejected" / "part-00000.parquet").column("filter_reason").to_pylist()
    assert json.loads((out / "filter_report.json").read_text())["kept"] == 2 == report["kept"]
