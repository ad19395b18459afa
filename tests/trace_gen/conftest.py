"""Shared fixtures: a tiny random Qwen3 teacher built locally (no hub) and small datasets."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_tiny_teacher(out: Path) -> Path:
    from trace_gen.toy.models import init_model
    from trace_gen.toy.task import split
    from trace_gen.toy.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(split("train")[:300])
    init_model("teacher", tokenizer, str(out), seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return build_tiny_teacher(tmp_path_factory.mktemp("teacher"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def math_jsonl(tmp_path) -> Path:
    rows = [
        {"id": f"q{i}", "question": f"Ann has {i} apples and gets 2 more. How many?", "answer": str(i + 2)}
        for i in range(12)
    ]
    return write_jsonl(tmp_path / "math.jsonl", rows)


@pytest.fixture
def rows():
    """rows(out) -> {(prompt_id, sample_idx): completion} over kept and rejected parts; asserts no duplicates."""

    def read(out: Path) -> dict:
        found = {}
        for f in sorted([*out.glob("data/*.parquet"), *out.glob("rejected/part-*.parquet")]):
            for r in pq.read_table(f, columns=["prompt_id", "sample_idx", "completion"]).to_pylist():
                key = (r["prompt_id"], r["sample_idx"])
                assert key not in found, f"duplicate {key} in {f}"
                found[key] = r["completion"]
        return found

    return read
