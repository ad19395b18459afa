"""Dedup (exact and MinHash near-duplicates), benchmark decontamination, keep policies, the pipeline."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trace_gen.cli import main as trace_gen_main
from trace_gen.errors import UsageError
from trace_gen.filters import (
    Decontaminator,
    FilterConfig,
    apply_policy,
    duplicate_reasons,
    filter_rows,
    filter_traces,
)
from trace_gen.verify.benchmarks import read_jsonl

LONG = " ".join(f"step {i} we add {i} and {i + 1} to get {2 * i + 1}" for i in range(60))


def test_exact_and_near_duplicates_within_a_group():
    near = LONG.replace("step 30 ", "step thirty ")
    texts = [LONG, LONG.upper(), near, "something else entirely", LONG]
    reasons = duplicate_reasons(texts, ["a", "a", "a", "a", "b"], threshold=0.8)
    assert reasons == [None, "exact_duplicate", "near_duplicate", None, None]


def test_decontamination_against_shipped_benchmarks_and_a_given_set(tmp_path):
    decon = Decontaminator.from_benchmarks()
    assert decon.sources == ["aime24", "amc23", "gsm8k_test", "humaneval", "math500"]
    gsm_test = read_jsonl("gsm8k_test.jsonl")[5]["question"]
    gsm_train = read_jsonl(Path(__file__).resolve().parents[1] / "data" / "gsm8k_train.jsonl.gz")[5][
        "question"
    ]
    math500 = read_jsonl("math500.jsonl")[7]["problem"]
    assert decon.match("Please solve: " + gsm_test) == "gsm8k_test"
    assert decon.match(math500.upper()) == "math500"
    assert decon.match(gsm_train) is None  # training sets are not contamination
    assert decon.match("What is two plus two? Give a short answer please.") is None

    extra = tmp_path / "private_eval.jsonl"
    extra.write_text(json.dumps({"question": "a brand new private question with many words in it"}) + "\n")
    decon.add_jsonl(extra)
    assert decon.match("so: a brand new private question with many words in it!") == "private_eval"


def test_decontamination_with_an_empty_index_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="decontamination index is empty"):
        Decontaminator.from_benchmarks(tmp_path)
    with pytest.raises(UsageError, match="decontamination index is empty"):
        Decontaminator().match("any prompt at all with enough words to make an n-gram of eight")
    with pytest.raises(UsageError, match="decontamination index is empty"):  # not a silent no-op
        filter_rows([_row("a", 0)], FilterConfig(benchmarks_dir=str(tmp_path)))


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
    gsm_question = read_jsonl("gsm8k_test.jsonl")[0]["question"]
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


def test_flagged_rows_are_dropped_unless_asked_to_keep_them():
    flagged = {**_row("a", 1, verdict="passed"), "verdict_flags": ["network:connect"]}
    rows = [{**_row("a", 0, verdict="passed"), "verdict_flags": []}, flagged]
    kept, rejected, report = filter_rows(rows, FilterConfig(decontaminate=False))
    assert [r["sample_idx"] for r in kept] == [0] and rejected[0][
        "filter_reason"
    ] == "flagged:network:connect"
    assert report["flagged_rows"] == 1
    kept, _, _ = filter_rows(rows, FilterConfig(decontaminate=False, drop_flagged=False))
    assert len(kept) == 2


def test_filter_cli_audit_writes_the_disagreements(tmp_path, capsys):
    """A primary verdict the sympy-free second opinion contradicts is listed in audit_report.json."""
    rows = [
        {**_row("a", 0, completion="<think>r</think> \\boxed{42}"), "gold": "42"},
        {**_row("b", 0, verdict="wrong", completion="<think>r</think> \\boxed{7}"), "gold": "7"},
        {**_row("c", 0, verdict="passed"), "gold": ""},  # a code row: not audited
    ]
    traces = tmp_path / "traces"
    traces.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), traces / "part-00000.parquet")
    out = tmp_path / "filtered"
    assert trace_gen_main(["filter", str(traces), str(out), "--no-decontaminate", "--audit"]) == 0
    audit = json.loads((out / "audit_report.json").read_text())
    assert audit["rows"] == 2 and audit["pairs"] == {"correct/correct": 1, "wrong/correct": 1}
    assert [(d["prompt_id"], d["primary"], d["second"]) for d in audit["disagreements"]] == [
        ("b", "wrong", "correct")
    ]
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["audit"]["disagreements"] == 1 and printed["audit"]["file"] == "audit_report.json"
