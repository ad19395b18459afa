"""Crash safety and scale-out, for real: `kill -9` of a running `python -m trace_gen` at chosen points
(trace_gen.testpoints: the process SIGKILLs itself exactly there), then a rerun, gives exactly the rows
of an uninterrupted run; the same for a rerun with another --n, for `merge` and for `filter`; shards
are disjoint, cover everything, and merge."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trace_gen.cli import main
from trace_gen.pipeline import shard
from trace_gen.prompts import PromptRecord

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def args(teacher, data, out, *extra):
    return [
        "--teacher", str(teacher), "--dataset", str(data), "--problem-column", "question",
        "--id-column", "id", "--output-dir", str(out), "--n", "1000", "--samples-per-prompt", "2",
        "--batch-size", "2", "--max-new-tokens", "12", "--temperature", "1.0", "--keep-rejected",
        "--backend", "hf", "--device", "cpu", "--allow-short", *extra,
    ]  # fmt: skip


@pytest.fixture
def pens(tmp_path) -> Path:
    rows = [{"id": f"q{i}", "question": f"Ann has {i} pens.", "answer": str(i)} for i in range(24)]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def killed(argv: list[str], point: str) -> subprocess.CompletedProcess:
    """`python -m trace_gen ARGV` killed with SIGKILL at the k-th pass of `point` ("name:k")."""
    cmd = [sys.executable, "-m", "trace_gen", *argv]
    proc = subprocess.run(cmd, cwd=REPO, env={**ENV, "DISTILL_CRASH_AT": point}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return proc


def manifest_batches(out: Path) -> list[int]:
    path = out / "manifest.jsonl"
    return [json.loads(line)["batch"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def reference(rows, tiny_teacher, pens, tmp_path) -> dict:
    out = tmp_path / "reference"
    assert main(args(tiny_teacher, pens, out)) == 0
    expected = rows(out)
    assert len(expected) == 48  # 24 prompts x 2 samples, kept or rejected
    return expected


@pytest.mark.parametrize(
    ("point", "committed"),
    [("commit:parts:3", [0, 1]), ("commit:manifest:3", [0, 1, 2])],
    ids=["parts-written-manifest-not", "manifest-written"],
)
def test_kill_9_while_generating_then_rerun_equals_uninterrupted(
    rows, reference, tiny_teacher, pens, tmp_path, point, committed
):
    out = tmp_path / "killed"
    killed(args(tiny_teacher, pens, out), point)
    assert manifest_batches(out) == committed  # the kill landed exactly where it was sent
    if point.startswith("commit:parts"):  # batch 2's parts are on disk, its manifest line is not
        assert (out / "data" / "train-000002.parquet").exists() or (
            out / "rejected" / "part-000002.parquet"
        ).exists()
    assert set(rows(out)) < set(reference)

    assert main(args(tiny_teacher, pens, out)) == 0
    assert rows(out) == reference  # same keys, same completions (seeds are per batch), no duplicates
    assert sorted(manifest_batches(out)) == list(range(12))
    assert not list(out.rglob("*.tmp"))


def test_a_torn_manifest_line_is_not_committed(rows, reference, tiny_teacher, pens, tmp_path):
    """A crash in the middle of appending the manifest line (half a line on disk) is redone."""
    out = tmp_path / "torn"
    killed(args(tiny_teacher, pens, out), "commit:manifest:3")
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert main(args(tiny_teacher, pens, out)) == 0
    assert rows(out) == reference and sorted(manifest_batches(out)) == list(range(12))


@pytest.mark.parametrize("point", ["retarget:parts:1", "retarget:manifest:1"])
def test_kill_9_while_changing_n_then_rerun_equals_a_fresh_run(rows, tiny_teacher, tmp_path, point):
    """A rerun with a smaller --n moves rows first (before the teacher loads); killed in the middle,
    the next rerun finishes the move: the directory then holds what a fresh run with that --n holds."""
    flags = ["--samples-per-prompt", "2", "--batch-size", "2", "--temperature", "1.0", "--keep-rejected"]
    flags += ["--backend", "hf", "--device", "cpu", "--dedup", "off"]
    fresh = tmp_path / "fresh"
    assert main([*flags, "--n", "3", "--output-dir", str(fresh)]) == 0  # the toy teacher on the toy task
    out = tmp_path / "out"
    assert main([*flags, "--n", "12", "--output-dir", str(out)]) == 0
    before = rows(out)
    killed([*flags, "--n", "3", "--output-dir", str(out)], point)
    assert main([*flags, "--n", "3", "--output-dir", str(out)]) == 0
    assert rows(out) == rows(fresh)
    assert json.loads((out / "stats.json").read_text()) == json.loads((fresh / "stats.json").read_text())
    assert main([*flags, "--n", "12", "--output-dir", str(out)]) == 0  # and back: nothing was lost
    assert rows(out) == before


@given(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=60), st.integers(1, 7))
def test_shards_are_disjoint_and_cover(ids, k):
    prompts = [PromptRecord(i, i, "", ()) for i in ids]
    parts = [shard(prompts, k, i) for i in range(k)]
    seen = [p.prompt_id for part in parts for p in part]
    assert sorted(seen) == sorted(ids)  # every prompt exactly once
    assert [p.prompt_id for p in shard(list(reversed(prompts)), k, 0)] == [
        p.prompt_id for p in reversed(parts[0])
    ]


def test_shards_merge_into_the_whole_run(rows, tiny_teacher, tmp_path, capsys):
    data = tmp_path / "q.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"Ben has {i} cards.", "answer": str(i)}) + "\n"
            for i in range(10)
        )
    )
    shards = []
    for i in range(3):
        shards.append(tmp_path / f"shard-{i}")
        assert main(args(tiny_teacher, data, shards[-1], "--num-shards", "3", "--shard-index", str(i))) == 0
    keys = [set(rows(s)) for s in shards]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert {k[0] for ks in keys for k in ks} == {f"q{i}" for i in range(10)}

    capsys.readouterr()
    assert main(["merge", str(tmp_path / "merged"), *map(str, shards)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    merged = rows(tmp_path / "merged")
    assert set(merged) == keys[0] | keys[1] | keys[2] and len(merged) == 20
    assert stats["rejected"] == 20 and stats["prompts"] == 10 and set(stats["shards"]) == {"0", "1", "2"}
    from datasets import load_dataset

    assert (
        len(load_dataset(str(tmp_path / "merged"), data_dir="rejected", split="train")) == 20
    )  # a HF dataset

    assert main(["merge", str(tmp_path / "m2"), str(shards[0]), str(shards[1])]) == 2
    assert "missing shard(s) [2]" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()
    assert main(["merge", str(tmp_path / "m3"), str(shards[0]), str(shards[0]), str(shards[1])]) == 2
    assert "given twice" in capsys.readouterr().err

    # kill -9 of a merge just before its finished directory is renamed into place: no OUT, and the
    # next merge removes the killed one's hidden temporary directory
    killed(["merge", str(tmp_path / "m4"), *map(str, shards)], "outdir:before_rename:1")
    assert not (tmp_path / "m4").exists() and len(list(tmp_path.glob(".m4.partial-*"))) == 1
    assert main(["merge", str(tmp_path / "m4"), *map(str, shards)]) == 0
    assert rows(tmp_path / "m4") == merged and not list(tmp_path.glob(".m4.partial-*"))

    # the same for filter
    filt = ["filter", str(tmp_path / "merged" / "rejected"), str(tmp_path / "f"), "--keep-verdicts", "wrong"]
    killed([*filt, "--no-require-think"], "outdir:before_rename:1")
    assert not (tmp_path / "f").exists() and len(list(tmp_path.glob(".f.partial-*"))) == 1
    assert main([*filt, "--no-require-think"]) == 0
    assert not list(tmp_path.glob(".f.partial-*")) and (tmp_path / "f" / "filter_report.json").exists()
