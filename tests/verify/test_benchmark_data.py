"""The benchmark sets ship with the package: files, provenance, sha256, and loading them (or failing loudly)."""

import hashlib
import re

import pytest

from trace_gen.errors import UsageError
from trace_gen.verify.benchmarks import DATA_DIR, load_benchmark


def test_every_shipped_file_matches_its_recorded_sha256():
    readme = (DATA_DIR / "README.md").read_text()
    recorded = dict((name, digest) for digest, name in re.findall(r"([0-9a-f]{64})  (\S+)", readme))
    files = sorted(p.name for p in DATA_DIR.iterdir() if p.name != "README.md")
    assert files == sorted(recorded), (files, recorded)
    for name, digest in recorded.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_sets_load_with_their_sizes():
    sizes = {"math500.jsonl": 500, "gsm8k_test.jsonl": 1319, "aime24.jsonl": 30, "amc23.jsonl": 40}
    sizes["humaneval.jsonl.gz"] = 164
    for name, n in sizes.items():
        assert len(load_benchmark(name)) == n, name


def test_hub_source_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DISTILL_BENCHMARKS_SOURCE", "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        UsageError, match=r"could not load benchmark HuggingFaceH4/MATH-500 .*DISTILL_BENCHMARKS_SOURCE"
    ):
        load_benchmark("math500.jsonl")
    with pytest.raises(UsageError, match="has no hub id"):
        monkeypatch.setenv("DISTILL_BENCHMARKS_DIR", "/nonexistent")
        load_benchmark("aime24.jsonl")


def test_a_row_without_gold_is_one_line_naming_the_row(tmp_path, monkeypatch):
    from eval_harness.benchmarks import gsm8k
    from eval_harness.benchmarks.custom import CustomBenchmark

    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": ""}\n')
    with pytest.raises(UsageError, match=r"mine.jsonl row 2 has no gold answer in field 'answer'"):
        CustomBenchmark(str(mine), "math", "mine").load()
    (tmp_path / "gsm8k_test.jsonl").write_text('{"question": "q", "answer": "no final line"}\n')
    monkeypatch.setenv("DISTILL_BENCHMARKS_DIR", str(tmp_path))
    with pytest.raises(UsageError, match=r"gsm8k_test.jsonl row 1 has no gold answer"):
        gsm8k.load()
