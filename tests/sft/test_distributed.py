"""The distributed path: 2 CPU processes (torchrun, gloo DDP) train LoRA with the online KD term for 2 steps
and save once. `--use_cpu true` is what makes accelerate see a MULTI_CPU job: without it each process
trains alone. (`accelerate launch` spawns several CPU processes only through MPI, so the local CPU job
uses torchrun; GPU jobs use configs/accelerate/*.yaml.)"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp(toy, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "sft", "run", "--config", "configs/sft/toy_student.yaml", "--use_cpu", "true", "--model_name_or_path", str(toy.student),
        "--traces", str(toy.traces), "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--logging_steps", "1", "--lint_samples", "4", "--disable_tqdm", "true",
        "--kd_source", "online", "--kd_alpha", "0.5", "--teacher_model_name_or_path", str(toy.teacher),
        "--teacher_dtype", "float32",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["kd_source"] == "online" and summary["world_size"] == 2
    state_line = [line for line in proc.stdout.splitlines() if "train_samples_per_second" in line]
    assert state_line and (out / "merged" / "model.safetensors").exists()
    assert proc.stdout.count("template lint:") == 1, "only rank 0 prints the lint report"
