"""Crash safety of `python -m sft run` (sft/saving.py): a subprocess SIGKILLs itself at a named point
(trace_gen/testpoints.py), then a rerun (in process) finishes the run. Checked: the rerun ends at the same
step with the same weights as an uninterrupted run and never trains past --max_steps, a half-written
directory is never marked COMPLETE nor accepted by eval_harness, the merged model loads, and a finished run
is not trained again."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from eval_harness.checks import check_model, model_dir_problem
from sft.cli import main
from sft.config import DEFAULT_CONFIG

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def argv(toy, out: Path, *extra: str) -> list[str]:
    return ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student), "--traces", str(toy.traces),
            "--output_dir", str(out), "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
            "--per_device_train_batch_size", "4", "--logging_steps", "1", "--lint_samples", "4", "--disable_tqdm", "true",
            *extra]  # fmt: skip


def crash(toy, out: Path, point: str) -> None:
    """`python -m sft run` that kills itself (-9) at `point`."""
    env = {**os.environ, "DISTILL_CRASH_AT": point, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sft", *argv(toy, out)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def assert_honest(out: Path) -> None:
    """COMPLETE only on whole directories; eval_harness accepts a model directory of the run iff it is marked."""
    for d in [out, *(p for p in out.iterdir() if p.is_dir())]:
        marked = (d / "COMPLETE").is_file()
        if marked:
            weights = [load_file(str(f)) for f in d.glob("*.safetensors")]
            assert weights and all(weights), f"{d} is marked but has no weights"
            assert (d / "tokenizer_config.json").stat().st_size > 0, f"{d} is marked but has no tokenizer"
        if (d / "config.json").is_file():
            problem = model_dir_problem(d)
            assert (problem is None) == marked, (d, problem)
            assert marked or "was not finished" in problem


def adapter(out: Path) -> dict:
    return load_file(str(out / "adapter_model.safetensors"))


def assert_same_weights(out: Path, reference: Path) -> None:
    got, want = adapter(out), adapter(reference)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], msg=k)


def summary(out: Path) -> dict:
    return json.loads((out / "run_summary.json").read_text())


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(argv(toy, out)) == 0
    assert summary(out)["global_step"] == 4
    return out


def test_kill_between_writing_and_marking_a_checkpoint(toy, reference, tmp_path, capsys):
    out = tmp_path / "out"
    crash(toy, out, "sft:checkpoint_unmarked:2")  # checkpoint-4 is written, not marked
    assert (out / "checkpoint-2" / "COMPLETE").is_file() and not (out / "checkpoint-4" / "COMPLETE").exists()
    assert_honest(out)
    capsys.readouterr()
    assert main(argv(toy, out, "--resume_from_checkpoint", str(out / "checkpoint-4"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is incomplete" in err[0], err
    assert main(argv(toy, out)) == 0  # a plain rerun resumes
    assert f"resuming from {out / 'checkpoint-2'} (step 2" in capsys.readouterr().out
    assert summary(out)["global_step"] == 4
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4]
    assert_same_weights(out, reference)
    assert_honest(out)


def test_kill_in_the_middle_of_the_final_save(toy, reference, tmp_path, capsys):
    out = tmp_path / "out"
    crash(toy, out, "sft:save_model")  # the adapter is in out/, its tokenizer and marker are not
    assert (out / "adapter_model.safetensors").is_file() and not (out / "COMPLETE").exists()
    assert (out / "checkpoint-4" / "COMPLETE").is_file() and not (out / "run_summary.json").exists()
    assert_honest(out)
    capsys.readouterr()
    assert main(argv(toy, out, "--resume_from_checkpoint", "true")) == 0
    assert f"resuming from {out / 'checkpoint-4'} (step 4" in capsys.readouterr().out
    assert summary(out)["global_step"] == 4, "a run resumed at --max_steps must not train on"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert_same_weights(out, reference)
    assert_honest(out)
    (out / "checkpoint-2" / "COMPLETE").write_text('{"what": "checkpoint", "step": 2, "stale": true}')
    assert main(argv(toy, out, "--resume_from_checkpoint", "false")) == 0  # start over: a new run
    assert f"--resume_from_checkpoint false: training {out} from step 0" in capsys.readouterr().out
    assert summary(out)["resumed_from"] is None
    assert "stale" not in (out / "checkpoint-2" / "COMPLETE").read_text(), "old checkpoints are removed"
    assert_same_weights(out, reference)


def test_kill_in_the_middle_of_the_merge_then_a_finished_run_is_not_trained_again(toy, tmp_path, capsys):
    out = tmp_path / "out"
    crash(toy, out, "sft:merge")  # merged weights in merged.partial, no tokenizer, no marker
    assert (out / "merged.partial" / "model.safetensors").is_file() and not (out / "merged").exists()
    assert "was not finished" in model_dir_problem(out / "merged.partial")
    assert_honest(out)
    assert main(argv(toy, out)) == 0
    assert not (out / "merged.partial").exists()
    check_model(str(out / "merged"), "hf")
    AutoModelForCausalLM.from_pretrained(out / "merged")
    assert_honest(out)

    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    for extra in ((), ("--resume_from_checkpoint", "true")):
        assert main(argv(toy, out, *extra)) == 0
        assert f"{out} holds a finished run (run_summary.json); the model is {out / 'merged'}" in (
            capsys.readouterr().out
        )
    assert main(argv(toy, out, "--learning_rate", "1e-2")) == 2  # another run, not this one's rerun
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run with other settings (learning_rate: 0.003 -> 0.01)" in err[0], err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files


def test_resume_true_without_a_complete_checkpoint_is_one_line(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv(toy, out, "--resume_from_checkpoint", "true")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no complete checkpoint" in err[0], err
    assert not out.exists()


def test_full_fine_tune_marks_the_model_and_checkpoints(toy, tmp_path):
    """Without LoRA `<output_dir>` is the model itself: eval_harness needs its marker there too."""
    out = tmp_path / "full"
    assert main(argv(toy, out, "--use_peft", "false", "--max_steps", "2")) == 0
    assert json.loads((out / "COMPLETE").read_text()) == {"what": "model", "step": 2}
    assert json.loads((out / "checkpoint-2" / "COMPLETE").read_text()) == {"what": "checkpoint", "step": 2}
    assert_honest(out)
    (out / "COMPLETE").unlink()
    assert "was not finished" in model_dir_problem(out)
