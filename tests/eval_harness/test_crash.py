"""Crash safety of generation: `kill -9` in the middle of a run leaves only whole chunks (no torn row,
no duplicate), a rerun resumes from them and ends with the rows of an uninterrupted run, and the
per-sample file is then a clean `--responses` file."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval_harness.benchmarks import toy
from eval_harness.cli import main
from eval_harness.evaluate import parts_dir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TEACHER = REPO / "trace_gen" / "toy" / "assets" / "teacher"
ARGS = ["--model", str(TEACHER), "--benchmarks", "toy", "--limit", "40", "--batch-size", "2"]
ARGS += ["--backend", "hf", "--device", "cpu", "--max-new-tokens", "96", "--verify-workers", "1"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # fails on any torn line


def test_kill_9_mid_run_then_rerun_resumes_cleanly(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eval_harness", *ARGS, "--output-dir", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("samples/*.parts/*.jsonl"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the run ended before it could be killed"
            )
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    (parts,) = out.glob("samples/*.parts")
    chunks = sorted(parts.glob("*.jsonl"))
    assert 3 <= len(chunks) < 20, "the kill must land mid-run (20 chunks of 2 items)"
    for chunk in chunks:  # every chunk on disk is whole: 2 items x 1 sample, each line valid JSON
        assert len(_lines(chunk)) == 2
    assert not list(out.glob("samples/*.jsonl"))  # the per-sample file only appears when complete

    assert main([*ARGS, "--output-dir", str(out)]) == 0
    (samples,) = out.glob("samples/*.jsonl")
    rows = _lines(samples)
    assert len(rows) == 40 and len({(r["id"], r["sample"]) for r in rows}) == 40
    assert not parts.exists()

    reference = tmp_path / "uninterrupted"
    assert main([*ARGS, "--output-dir", str(reference)]) == 0
    (ref_samples,) = reference.glob("samples/*.jsonl")
    assert rows == _lines(ref_samples)
    assert (
        json.loads((out / "summary.json").read_text())["benchmarks"]["toy"]["pass@1"]
        == json.loads((reference / "summary.json").read_text())["benchmarks"]["toy"]["pass@1"]
    )

    rescored = tmp_path / "rescored"  # the per-sample file is a valid --responses file
    assert (
        main(
            [
                "--responses",
                str(samples),
                "--benchmarks",
                "toy",
                "--limit",
                "40",
                "--output-dir",
                str(rescored),
            ]
        )
        == 0
    )


def test_rows_carry_problem_gold_answer_and_reason(tmp_path):
    out = tmp_path / "o"
    assert main(["--oracle", "--benchmarks", "toy", "--limit", "3", "--output-dir", str(out)]) == 0
    (samples,) = out.glob("samples/*.jsonl")
    for row, item in zip(_lines(samples), toy.load(3), strict=True):
        assert {"id", "sample", "problem", "gold", "completion", "answer", "verdict", "reason"} <= row.keys()
        assert row["problem"] == item.messages[-1]["content"] and row["gold"] == item.gold
        assert row["answer"] == row["gold"] and row["verdict"] == "correct" and row["reason"]


def test_a_leftover_temp_chunk_is_ignored(tmp_path):
    """A kill inside the chunk write leaves `<chunk>.jsonl.tmp`: not a chunk, removed at the end."""
    out = tmp_path / "o"
    args = [*ARGS[:4], "--limit", "4", *ARGS[6:]]
    assert main([*args, "--output-dir", str(out)]) == 0
    (samples,) = out.glob("samples/*.jsonl")
    complete = samples.read_text()
    samples.unlink()
    parts = parts_dir(samples)
    parts.mkdir()
    (parts / "0000000.jsonl").write_text("".join(complete.splitlines(keepends=True)[:2]))
    (parts / "0000002.jsonl.tmp").write_text('{"id": "torn", "sam')
    assert main([*args, "--output-dir", str(out)]) == 0
    assert samples.read_text() == complete and not parts.exists()
