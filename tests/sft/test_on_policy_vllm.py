"""On-policy distillation with vLLM (vllm-cpu in the vLLM environment: `make test-vllm`).

- a real `vllm serve` teacher scores student samples with prompt log-probs: its top-k equals the in-process
  teacher's, so the loss does too; a CLI run trains through it;
- servers that cannot score are one line before training: `transformers serve` (a real OpenAI-compatible
  server without prompt log-probs) and a vLLM server asked for more log-probs than --max-logprobs;
- colocated vLLM generation (TRL's `use_vllm`, vllm_mode=colocate): after training steps the engine holds
  the student's weights (greedy vLLM = greedy transformers). Run in a subprocess: vLLM's external launcher
  sets process-wide distributed state that later tests in the same process must not inherit.

Not tested here: TRL's `vllm_mode: server` (`trl vllm-serve` + NCCL weight sync needs CUDA GPUs).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DistillationConfig

from sft.cli import main
from sft.on_policy_teacher import ModelTeacher, ServerTeacher
from sft.on_policy_trainer import OnPolicyDistillTrainer
from tests.vllm_server import vllm_server
from trace_gen.toy.task import split

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "trace_gen" / "toy" / "assets"
TEACHER = ASSETS / "teacher"  # head_dim 32: vllm-cpu's attention has no kernel for the toy student's 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with vllm_server(str(TEACHER), "teacher", tmp_path_factory.mktemp("vllm") / "server.log") as url:
        yield url


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def test_server_topk_is_the_in_process_teachers_and_so_is_the_loss(server, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(TEACHER)
    problems = split("test")[:4]
    rows = [{"prompt": [{"role": "user", "content": p.user_message()}], "teacher_index": 0} for p in problems]
    args = DistillationConfig(output_dir=str(tmp_path), bf16=False, gradient_checkpointing=False, report_to="none",
                              per_device_train_batch_size=4, max_completion_length=32, seed=0)  # fmt: skip
    common = dict(
        args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(rows), teacher_top_k=4
    )
    remote = OnPolicyDistillTrainer(model=load(ASSETS / "student_base"), teachers=[ServerTeacher("t", server, 4)],
                                    **common)  # fmt: skip
    local = OnPolicyDistillTrainer(model=remote.model, teachers=[ModelTeacher("t", load(TEACHER))], **common)
    remote.model.train()
    batch = remote._generate_and_score_completions(rows)  # student samples, the server scores them
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    mine = local._model_scores(0, ids, mask, batch["completion_ids"].size(1))
    valid = batch["completion_mask"].bool()
    assert torch.equal(batch["topk_ids"][valid], mine["topk_ids"][valid])
    torch.testing.assert_close(batch["topk_logprobs"][valid], mine["topk_logprobs"][valid], atol=1e-4, rtol=0)
    torch.testing.assert_close(
        remote.compute_loss(remote.model, batch),
        local.compute_loss(remote.model, batch),
        atol=1e-5,
        rtol=1e-4,
    )


def cli(out, teacher, *extra):
    argv = ["on-policy", "--config", str(REPO / "configs" / "sft" / "toy_on_policy.yaml"), "--model_name_or_path", str(ASSETS / "student_base"), "--teacher_model_name_or_path",
            teacher, "--prompts", "toy", "--max_prompts", "64", "--output_dir", str(out), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--max_completion_length", "32", "--learning_rate", "1e-2",
            "--logging_steps", "1", "--lint_samples", "4", "--disable_tqdm", "true", "--save_strategy", "no",
            "--teacher_top_k", "4", *extra]  # fmt: skip
    return main(argv)


def test_cli_trains_through_a_server_teacher(server, tmp_path, capsys):
    out = tmp_path / "op"
    assert cli(out, server) == 0
    assert "top-4 prompt logprobs" in capsys.readouterr().out
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["teachers"] == {"default": server}
    assert summary["train_loss"] > 0


def test_vllm_server_asked_for_too_many_logprobs_is_one_line(server, tmp_path, capsys):
    assert cli(tmp_path / "never", server, "--teacher_top_k", "50") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "returned no prompt logprobs" in errors[0] and "50" in errors[0], errors
    assert not (tmp_path / "never").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_without_prompt_logprobs_is_one_line(tmp_path, capsys):
    """`transformers serve` speaks the OpenAI API but has no prompt log-probs (it answers 422)."""
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
    pytest.importorskip("openai", reason="transformers serve needs transformers[serving]")
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "transformers"), "serve", str(TEACHER), "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "serve.log"
                ).read_text()
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1"
        assert cli(tmp_path / "never", url, "--teacher_server_model", str(TEACHER)) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "returned no prompt logprobs" in errors[0], errors
    assert not (tmp_path / "never").exists()


COLOCATED = """
import json, sys, torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DistillationConfig
from sft.on_policy_teacher import ModelTeacher
from sft.on_policy_trainer import OnPolicyDistillTrainer
from trace_gen.toy.models import init_model
from trace_gen.toy.task import split

if __name__ == "__main__":
    teacher_dir, student_dir, out = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    init_model("teacher", tokenizer, student_dir, seed=3)  # a random student vLLM can run (head_dim 32)
    load = lambda p: AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
    rows = [{"prompt": [{"role": "user", "content": p.user_message()}], "teacher_index": 0} for p in split("test")[:8]]
    args = DistillationConfig(output_dir=out, bf16=False, gradient_checkpointing=False, report_to="none",
        per_device_train_batch_size=4, max_completion_length=24, max_steps=3, learning_rate=1e-2, seed=0,
        use_vllm=True, vllm_mode="colocate", vllm_max_model_length=256, logging_steps=1, save_strategy="no")
    student = load(student_dir)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    lora = LoraConfig(r=8, target_modules="all-linear", modules_to_save=["embed_tokens"], ensure_weight_tying=True)
    trainer = OnPolicyDistillTrainer(model=student, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(rows), teachers=[ModelTeacher("t", load(teacher_dir))], peft_config=lora)
    trainer.train()
    trainer.vllm_generation.sync_weights()
    from vllm import SamplingParams
    prompts = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"] for r in rows[:4]]
    outs = trainer.vllm_generation.llm.generate([{"prompt_token_ids": p} for p in prompts],
                                                SamplingParams(temperature=0.0, max_tokens=16), use_tqdm=False)
    merged = trainer.model.merge_and_unload().eval()
    hf = [merged.generate(torch.tensor([p]), do_sample=False, max_new_tokens=16, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)[0, len(p):].tolist() for p in prompts]
    moved = any(not torch.equal(before[k], v) for k, v in merged.state_dict().items() if k in before)
    print(json.dumps({"vllm": [list(o.outputs[0].token_ids) for o in outs], "hf": hf, "moved": moved,
                      "steps": trainer.state.global_step}))
"""


def test_colocated_vllm_generates_with_the_trained_students_weights(tmp_path):
    script = tmp_path / "colocated.py"
    script.write_text(COLOCATED)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    proc = subprocess.run([sys.executable, str(script), str(TEACHER), str(tmp_path / "student"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == 3 and result["moved"]
    # the engine generates with the trained weights: greedy vLLM = greedy transformers on the merged student
    for v, h in zip(result["vllm"], result["hf"], strict=True):
        assert v == h[: len(v)] or h == v[: len(h)], (v, h)


def test_a_server_teacher_with_another_tokenizer_is_one_line(server, tmp_path, capsys):
    """The probe compares the server's reading of each probe token with the student's tokenizer."""
    from trace_gen.toy.models import init_model
    from trace_gen.toy.task import make_splits
    from trace_gen.toy.tokenizer import build_tokenizer

    other = build_tokenizer(make_splits(n_train=300, n_test=1, seed=11)[0])  # same specials, other merges
    init_model("student", other, str(tmp_path / "student"), seed=0)
    argv = ["--model_name_or_path", str(tmp_path / "student")]
    assert cli(tmp_path / "never", server, *argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "the student's tokenizer as" in errors[0], errors
