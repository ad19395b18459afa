"""A small version of the whole pipeline, for real: toy teacher → traces → LoRA student → report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import load_dataset
from safetensors.torch import load_file

from trace_gen.toy.build import ASSETS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
# One trace_gen command for the fixture and the resume test: resuming must see the same run.
TRACE_ARGS = (
    "--n",
    "24",
    "--samples-per-prompt",
    "2",
    "--batch-size",
    "16",
    "--temperature",
    "1.0",
    "--keep-rejected",
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline")
    _run("trace_gen", "--output-dir", str(out / "traces"), *TRACE_ARGS)
    _run(
        "sft",
        "run",
        "--config",
        "configs/sft/toy_student.yaml",
        "--traces",
        str(out / "traces"),
        "--output_dir",
        str(out / "student"),
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "1",
    )
    _run(
        "eval_harness",
        "compare",
        "--models",
        f"teacher={ASSETS / 'teacher'}",
        f"student={out / 'student' / 'merged'}",
        f"student_untrained={ASSETS / 'student_base'}",
        "--benchmarks",
        "toy",
        "--limit",
        "8",
        "--output-dir",
        str(out / "report"),
    )
    return out


def test_traces_are_verified_parquet(run_dir):
    traces = run_dir / "traces"
    ds = load_dataset(str(traces), split="train")  # the directory is a Hugging Face dataset (README configs)
    assert len(ds) == 24
    assert set(ds["verdict"]) == {"correct"}
    assert len({(r["prompt_id"], r["sample_idx"]) for r in ds}) == 24
    row = ds[0]
    # the toy template prefills nothing: the assistant message is the sampled text
    assert row["messages"][-1]["role"] == "assistant" and row["prefill"] == ""
    assert row["messages"][-1]["content"] == row["completion"]
    assert row["reasoning"].startswith("<think>") and row["reasoning"].endswith("</think>")
    assert json.loads(row["sampling"])["temperature"] == 1.0
    stats = json.loads((traces / "stats.json").read_text())
    assert stats["kept"] == 24 and stats["reasons"]["kept"] == 24
    rejected = load_dataset(str(traces), data_dir="rejected", split="train")
    assert len(rejected) == stats["rejected"] and set(rejected["verdict"]) - {"correct"}  # wrong ones too
    # a row the verifier called correct is rejected only as a duplicate or as surplus over --n
    assert all(
        reason.startswith(("exact_duplicate", "near_duplicate", "over target --n"))
        for verdict, reason in zip(rejected["verdict"], rejected["verdict_reason"], strict=True)
        if verdict == "correct"
    )


def test_student_weights_changed_and_base_frozen(run_dir):
    adapter = load_file(str(run_dir / "student" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero; training must move it"
    base = load_file(str(ASSETS / "student_base" / "model.safetensors"))
    merged = load_file(str(run_dir / "student" / "merged" / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert any("q_proj" in k for k in changed) and "model.embed_tokens.weight" in changed
    assert not any("norm" in k for k in changed), "norms are neither LoRA targets nor modules_to_save"
    summary = json.loads((run_dir / "student" / "run_summary.json").read_text())
    assert summary["mode"] == "lora" and summary["train_rows"] == 24


def test_report(run_dir):
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "student_untrained"}
    for entry in report["models"].values():
        assert 0 <= entry["accuracy"] <= 1 and entry["params"] > 0 and entry["size_mb"] > 0
        assert entry["tokens_per_s"] > 0
    assert report["models"]["student"]["params"] < 0.25 * report["models"]["teacher"]["params"]
    assert (run_dir / "report" / "report.png").stat().st_size > 1000
    assert list((run_dir / "report" / "samples" / "student").glob("toy-*.jsonl"))


def test_rerun_resumes_without_duplicates(run_dir):
    before = (run_dir / "traces" / "manifest.jsonl").read_text()
    _run("trace_gen", "--output-dir", str(run_dir / "traces"), *TRACE_ARGS)  # the fixture's exact command
    assert (run_dir / "traces" / "manifest.jsonl").read_text() == before


def test_refuses_to_mix_runs(run_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trace_gen",
            "--output-dir",
            str(run_dir / "traces"),
            "--n",
            "24",
            "--temperature",
            "0.5",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 2 and "holds a different run" in proc.stderr and "sampling" in proc.stderr
