"""On-policy distillation (sft/on_policy*.py) on toy models with transformers `generate`.

The loss equals a reverse KL summed by hand on a fixed sample (full vocabulary, top-k + tail, two routed
teachers); lmbda = 0 reproduces `sft run`'s online KD loss on the same trace rows; samples per prompt; the
`</think>` rule; a few CLI steps move the student and write the adapter, merged model and summary; a
killed run resumes; bad input is one line.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config
from trl import DistillationConfig, SFTConfig

from sft.cli import main
from sft.data import load_traces
from sft.kd_trainer import DistillSFTTrainer
from sft.on_policy_teacher import ModelTeacher
from sft.on_policy_trainer import OnPolicyDistillTrainer
from trace_gen.toy.models import init_model

from .conftest import conversation, write_traces

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ASSETS = str(REPO / "trace_gen" / "toy" / "assets")
TOY_RECIPE = str(REPO / "configs" / "sft" / "toy_on_policy.yaml")  # the CLI needs a recipe to name a model


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def op_args(tmp_path, **kw) -> DistillationConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-2,
        bf16=False, gradient_checkpointing=False, max_completion_length=24, logging_steps=1, save_strategy="no",
        report_to="none", seed=0, dataloader_num_workers=0, disable_tqdm=True, lr_scheduler_type="constant",
    )  # fmt: skip
    return DistillationConfig(**{**defaults, **kw})


def prompts(toy, n=8, teachers=1) -> Dataset:
    return Dataset.from_list(
        [
            {"prompt": conversation(p)[:1], "teacher_index": i % teachers}
            for i, p in enumerate(toy.problems[:n])
        ]
    )


def trainer_for(toy, tmp_path, teacher_paths, dataset=None, **kw) -> OnPolicyDistillTrainer:
    teachers = [ModelTeacher(f"t{i}", load(p).eval()) for i, p in enumerate(teacher_paths)]
    return _train_mode(OnPolicyDistillTrainer(
        model=load(toy.student), args=op_args(tmp_path, **kw.pop("args", {})), processing_class=toy.tokenizer,
        train_dataset=dataset if dataset is not None else prompts(toy, teachers=len(teachers)), teachers=teachers, **kw,
    ))  # fmt: skip


def _train_mode(trainer):
    trainer.model.train()  # as inside trainer.train(): evaluation always samples, training flips GKD's coin
    return trainer


def fixed_batch(trainer, toy, teacher_index):
    """A fixed 'sample': each row's prompt and the first 5..11 tokens of its gold completion."""
    tok = toy.tokenizer
    prompt_ids, completions = [], []
    for i, p in enumerate(toy.problems[:4]):
        messages = conversation(p)
        prompt = tok.apply_chat_template(
            messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True
        )
        full = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        prompt_ids.append(list(prompt["input_ids"]))
        completions.append(full[len(prompt["input_ids"]) :][: 5 + 2 * i])  # ragged: padding on both sides
    batch = trainer._pad_batch(prompt_ids, completions)
    batch["loss_mask"] = batch["completion_mask"].clone()
    batch["teacher_index"] = torch.tensor(teacher_index)
    return batch, prompt_ids, completions


def hand_loss(student, teachers, prompt_ids, completions, teacher_index, k=None, n_vocab=None) -> float:
    """mean over sampled tokens of sum_v p (log p - log q), one unpadded sequence at a time, in float64.
    With k: over the teacher's top-k tokens plus one bucket for the rest of the vocabulary; with n_vocab:
    over the first n_vocab tokens only (both renormalised)."""
    total, count = 0.0, 0
    for prompt, completion, t in zip(prompt_ids, completions, teacher_index, strict=True):
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            s = student(input_ids=ids).logits[0, :, :n_vocab].double().log_softmax(-1)
            q = teachers[t](input_ids=ids).logits[0, :, :n_vocab].double().log_softmax(-1)
        for j in range(len(completion)):
            pos = len(prompt) + j - 1  # the position whose next-token distribution drew completion[j]
            logp, logq = s[pos], q[pos]
            if k is not None:
                top = logq.topk(k).indices
                rest = torch.ones_like(logq, dtype=torch.bool)
                rest[top] = False
                logp = torch.cat([logp[top], logp[rest].logsumexp(0, keepdim=True)])
                logq = torch.cat([logq[top], logq[rest].logsumexp(0, keepdim=True)])
            total += sum(math.exp(a) * (a - b) for a, b in zip(logp.tolist(), logq.tolist(), strict=True))
            count += 1
    return total / count


@pytest.mark.parametrize("top_k", [0, 3])
def test_loss_is_a_hand_computed_reverse_kl_with_two_routed_teachers(toy, tmp_path, top_k):
    other, unsharpened = tmp_path / "teacher2", tmp_path / "teacher3"
    init_model("teacher", toy.tokenizer, str(other), seed=5)
    init_model("teacher", toy.tokenizer, str(unsharpened), seed=6)
    # top-k + tail takes the teacher's tail as 1 - sum(top-k probabilities) (sft.losses): the sharpened toy
    # teacher's top-3 hold all but ~1e-9 of its mass, below float32 resolution, so it is compared in full only
    first = toy.teacher if top_k == 0 else unsharpened
    routing = [0, 1, 1, 0]
    trainer = trainer_for(toy, tmp_path, [first, other], teacher_top_k=top_k, kd_chunk_size=7)
    batch, prompt_ids, completions = fixed_batch(trainer, toy, routing)
    got = trainer.compute_loss(trainer.model, batch).item()
    teachers = [load(first), load(other)]
    want = hand_loss(trainer.model, teachers, prompt_ids, completions, routing, k=top_k or None)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # and the routing matters: every row scored by the first teacher is a different number
    assert hand_loss(trainer.model, teachers, prompt_ids, completions, [0] * 4) != pytest.approx(
        want, rel=1e-3
    )


def test_lm_heads_of_different_sizes_compare_the_tokenizers_tokens(toy, tmp_path):
    """A teacher with 7 padding rows past the tokenizer (as Qwen2.5-7B has 152,064 rows for 151,665 tokens):
    the loss is the reverse KL over the tokenizer's tokens, both distributions renormalised there."""
    padded = load(toy.teacher)
    n = len(toy.tokenizer)
    padded.resize_token_embeddings(n + 7, mean_resizing=False)
    padded.save_pretrained(tmp_path / "padded")
    trainer = trainer_for(toy, tmp_path, [tmp_path / "padded"], scored_vocab=n)
    batch, prompt_ids, completions = fixed_batch(trainer, toy, [0] * 4)
    got = trainer.compute_loss(trainer.model, batch).item()
    want = hand_loss(trainer.model, [padded], prompt_ids, completions, [0] * 4, n_vocab=n)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_lambda_zero_is_the_off_policy_kd_loss_of_sft_run(toy, tmp_path):
    """lmbda = 0: the batch is the traces' own completions, and the loss is `sft run --kd_source online
    --kd_alpha 1 --kd_beta 1` (DistillSFTTrainer) on the same rows."""
    traces = load_traces(str(toy.traces), ["all"]).select(range(4))
    rows = [{"prompt": m[:1], "completion": m[1:], "teacher_index": 0} for m in traces["messages"]]
    trainer = trainer_for(toy, tmp_path, [toy.teacher], dataset=Dataset.from_list(rows), lmbda=0.0,
                          args={"max_completion_length": 256})  # fmt: skip
    assert not trainer.on_policy_now()
    batch = trainer._generate_and_score_completions(rows)  # in train mode (evaluation always samples)
    got = trainer.compute_loss(trainer.model, batch)

    sft_args = SFTConfig(output_dir=str(tmp_path / "sft"), bf16=False, assistant_only_loss=True, max_length=256,
                         report_to="none", per_device_train_batch_size=4)  # fmt: skip
    offline = DistillSFTTrainer(
        model=trainer.model, args=sft_args, train_dataset=traces, processing_class=toy.tokenizer, kd_alpha=1.0,
        kd_beta=1.0, teacher_model=load(toy.teacher),
    )  # fmt: skip
    sft_batch = offline.data_collator([offline.train_dataset[i] for i in range(4)])
    assert int((sft_batch["labels"] != -100).sum()) == int(batch["completion_mask"].sum())  # same tokens
    want = offline.compute_loss(trainer.model, dict(sft_batch))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_samples_per_prompt_repeats_each_prompt_in_its_generation_batch(toy, tmp_path):
    trainer = trainer_for(
        toy, tmp_path, [toy.teacher], samples_per_prompt=2, args={"gradient_accumulation_steps": 2}
    )
    batch = next(iter(trainer.get_train_dataloader()))  # one generation batch: 4 x 2 accumulation rows
    texts = [json.dumps(row["prompt"]) for row in batch]
    assert len(texts) == 8 and all(texts.count(t) == 2 for t in texts) and len(set(texts)) == 4


def test_unclosed_think_samples_are_counted_and_dropped(tmp_path):
    """The trained toy teacher as student: at 40 new tokens some samples close </think> and some do not."""
    tokenizer = AutoTokenizer.from_pretrained(f"{ASSETS}/teacher")
    problems = [{"prompt": [{"role": "user", "content": p.user_message()}], "teacher_index": 0}
                for p in __import__("trace_gen.toy.task", fromlist=["split"]).split("test")[:16]]  # fmt: skip
    trainer = _train_mode(OnPolicyDistillTrainer(
        model=load(f"{ASSETS}/teacher"), args=op_args(tmp_path, max_completion_length=40, temperature=1.0),
        processing_class=tokenizer, train_dataset=Dataset.from_list(problems),
        teachers=[ModelTeacher("t", load(f"{ASSETS}/teacher"))], unclosed_think="drop",
    ))  # fmt: skip
    batch = trainer._generate_and_score_completions(problems)
    closed = [
        "</think>" in tokenizer.decode(ids[m.bool()])
        for ids, m in zip(batch["completion_ids"], batch["completion_mask"], strict=True)
    ]
    assert any(closed) and not all(closed), closed
    kept = batch["loss_mask"].sum(1) > 0
    assert kept.tolist() == closed
    assert trainer._metrics["train"]["think/unclosed_ratio"] == [pytest.approx(1 - sum(closed) / len(closed))]
    assert int(batch["num_items_in_batch"]) == int(batch["loss_mask"].sum())


def run_cli(toy, out, *extra):
    argv = ["on-policy", "--config", TOY_RECIPE, "--model_name_or_path", str(toy.student), "--teacher_model_name_or_path", str(toy.teacher),
            "--teacher_dtype", "float32", "--prompts", str(toy.traces), "--output_dir", str(out), "--max_steps", "3",
            "--per_device_train_batch_size", "4", "--max_completion_length", "24", "--learning_rate", "1e-2",
            "--logging_steps", "1", "--lint_samples", "4", "--disable_tqdm", "true", "--save_strategy", "no", *extra]  # fmt: skip
    return main(argv)


def test_cli_steps_move_the_student_and_write_adapter_merged_and_summary(toy, tmp_path, capsys):
    out = tmp_path / "op"
    assert run_cli(toy, out, "--use_peft", "true", "--lora_target_modules", "all-linear") == 0
    printed = capsys.readouterr().out
    assert "vocab: student = teacher" in printed and "-> ok" in printed
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["mode"] == "lora" and summary["global_step"] == 3 and summary["prompts"] == 24
    assert summary["tokens_per_s_generation"] > 0 and summary["tokens_per_s_training"] > 0
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    base, merged = (
        load_file(str(toy.student / "model.safetensors")),
        load_file(str(out / "merged" / "model.safetensors")),
    )
    assert any(not torch.equal(base[k], merged[k]) for k in base), "the merged student equals its base"


def test_cli_full_fine_tune_with_a_4bit_teacher_from_an_adapter_directory(toy, tmp_path):
    """`sft run`'s adapter directory as the student, merged and trained in full, scored by an nf4 teacher."""
    pytest.importorskip("bitsandbytes", reason="the qlora extra")
    sft_out = tmp_path / "sft"
    assert main(["run", "--config", str(REPO / "configs" / "sft" / "toy_student.yaml"), "--model_name_or_path", str(toy.student), "--traces", str(toy.traces), "--output_dir",
                 str(sft_out), "--max_steps", "1", "--per_device_train_batch_size", "4", "--lint_samples", "2",
                 "--disable_tqdm", "true"]) == 0  # fmt: skip
    out = tmp_path / "op"
    assert run_cli(toy, out, "--use_peft", "false", "--teacher_load_in_4bit", "true",
                   "--model_name_or_path", str(sft_out)) == 0  # fmt: skip
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["mode"] == "full" and not (out / "merged").exists()
    sft_merged = load_file(str(sft_out / "merged" / "model.safetensors"))
    trained = load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(sft_merged[k], trained[k]) for k in sft_merged)


def test_cli_routes_problems_to_teachers_by_a_column(toy, tmp_path, capsys):
    """A problems file in trace_gen's input format with a `domain` column and two teachers."""
    other = tmp_path / "teacher2"
    init_model("teacher", toy.tokenizer, str(other), seed=5)
    problems = tmp_path / "problems.jsonl"
    lines = [
        {"problem": p.problem, "domain": "math" if i % 3 else "code"} for i, p in enumerate(toy.problems[:12])
    ]
    problems.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "routed"
    routing = ["--teachers", f"math={toy.teacher}", f"code={other}", "--teacher_column", "domain"]
    assert run_cli(toy, out, "--prompts", str(problems), "--teacher_model_name_or_path", "", *routing) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["teachers"] == {"math": str(toy.teacher), "code": str(other)} and summary["prompts"] == 12
    assert "vocab: student = teachers = " in capsys.readouterr().out
    lines[4]["domain"] = "poetry"
    problems.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert (
        run_cli(
            toy, tmp_path / "never", "--prompts", str(problems), "--teacher_model_name_or_path", "", *routing
        )
        == 2
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "domain='poetry' names no teacher; teachers are math, code" in errors[0], (
        errors
    )


def test_bad_input_is_one_line_before_training(toy, tmp_path, capsys):
    config = Qwen3Config.from_pretrained(toy.teacher)
    config.vocab_size -= 7  # fewer rows than the tokenizer has tokens
    smaller = tmp_path / "smaller"
    AutoModelForCausalLM.from_config(config).save_pretrained(smaller)
    toy.tokenizer.save_pretrained(smaller)
    no_problem = tmp_path / "questions.jsonl"
    no_problem.write_text('{"question": "1 + 1?"}\n')
    other_tok = tmp_path / "other_tok"
    init_model("teacher", AutoTokenizer.from_pretrained(f"{ASSETS}/teacher"), str(other_tok), seed=0)
    cases = [
        (["--teacher_model_name_or_path", str(smaller)], "vocabularies differ"),
        (["--teacher_model_name_or_path", str(other_tok)], "tokenizers differ at id"),
        (["--prompts", str(no_problem)], "has no problem column 'problem' (columns: question)"),
        (["--prompts", "toy", "--lmbda", "0.5"], "has no assistant turns: pass a traces directory"),
        (
            ["--teacher_model_name_or_path", "http://127.0.0.1:9/v1"],
            "a server teacher returns top-k log-probs",
        ),
        (["--teachers", "a=x", "--teacher_column", "domain"], "give one teacher"),
    ]
    for extra, message in cases:
        out = tmp_path / "never"
        assert run_cli(toy, out, *extra) == 2, extra
        err = capsys.readouterr().err  # besides progress bars of reading the prompts: one error line
        errors = [line for line in err.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
        assert not out.exists()


def test_a_killed_run_resumes_from_its_last_checkpoint(toy, tmp_path):
    out = tmp_path / "killed"
    argv = ["--config", TOY_RECIPE, "--model_name_or_path", str(toy.student), "--teacher_model_name_or_path", str(toy.teacher),
            "--teacher_dtype", "float32", "--prompts", str(toy.traces), "--output_dir", str(out),
            "--per_device_train_batch_size", "4", "--max_completion_length", "24", "--learning_rate", "1e-2",
            "--logging_steps", "1", "--lint_samples", "4", "--disable_tqdm", "true", "--max_steps", "12",
            "--save_strategy", "steps", "--save_steps", "2", "--use_peft", "true"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "sft", "on-policy", *argv]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "checkpoint-2" / "trainer_state.json"  # Trainer writes it last in a checkpoint
    deadline = time.monotonic() + 300
    while not first.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run_summary.json").exists(), "killed after finishing: nothing to resume"
    done = [p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    last = max(done, key=lambda p: int(p.name.split("-")[1]))
    assert int(last.name.split("-")[1]) < 12
    assert main(["on-policy", *argv, "--resume_from_checkpoint", str(last)]) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 12
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == list(range(1, 13))


def real_cli(student, teacher, out, *extra):
    argv = ["on-policy", "--config", TOY_RECIPE, "--model_name_or_path", str(student), "--teacher_model_name_or_path", str(teacher),
            "--teacher_dtype", "float32", "--prompts", "toy", "--max_prompts", "8", "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--max_completion_length", "8",
            "--lint_samples", "2", "--disable_tqdm", "true", "--save_strategy", "no", "--use_peft", "true",
            "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj", *extra]  # fmt: skip
    return main(argv)


def test_real_vocab_r1_distill_1_5b_from_7b_shapes_compares_the_151665_tokens(real_model, tmp_path, capsys):
    """R1-Distill-Qwen-1.5B (151,936 rows) from R1-Distill-Qwen-7B (152,064 rows): one tokenizer of 151,665
    tokens, whose template prefills <think>; the loss compares those tokens."""
    student = real_model("qwen2", "r1-distill")
    teacher = real_model("qwen2", "r1-distill", 152_064, seed=1)
    out = tmp_path / "op"
    assert real_cli(student, teacher, out) == 0
    printed = capsys.readouterr().out
    assert (
        "lm_head rows differ (student 151,936, default 152,064); the loss compares the tokenizer's 151,665"
        in printed
    )
    assert "the generation prompt prefills '<think>'" in printed
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["scored_vocab"] == 151_665 and summary["global_step"] == 1 and summary["train_loss"] > 0


def test_real_vocab_qwen_student_with_an_r1_distill_teacher_is_refused(real_model, tmp_path, capsys):
    """Same 151,643 BPE tokens, but R1-Distill puts other special tokens at Qwen's ids: one line."""
    student = real_model("qwen2", "qwen2.5")
    teacher = real_model("qwen2", "r1-distill", 152_064, seed=1)
    assert real_cli(student, teacher, tmp_path / "never") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert (
        len(errors) == 1
        and "tokenizers differ at id 151643 ('<|endoftext|>' vs '<｜end▁of▁sentence｜>')" in errors[0]
    )
    assert not (tmp_path / "never").exists()


RECIPE = REPO / "configs" / "sft" / "r1_distill_qwen_1.5b_from_7b_on_policy.yaml"


def test_the_real_recipe_is_sized_and_passes_its_lint_on_r1_shaped_models(real_model, tmp_path, capsys):
    header = "".join(line for line in RECIPE.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "Sized for:" in header and f"--config configs/sft/{RECIPE.name}" in header
    config = yaml.safe_load(RECIPE.read_text())
    assert config["model_name_or_path"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert config["teacher_model_name_or_path"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    assert config["max_completion_length"] >= 4096 and config["bf16"] and config["gradient_checkpointing"]
    student, teacher = real_model("qwen2", "r1-distill"), real_model("qwen2", "r1-distill", 152_064, seed=1)
    messages = [{"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "<think>\n2 + 3 = 5\n</think>\n\n\\boxed{5}"}]  # fmt: skip
    traces = write_traces(tmp_path / "traces", [{"messages": messages, "verdict": "correct"}] * 4)
    argv = ["on-policy", "--config", str(RECIPE), "--model_name_or_path", str(student), "--teacher_model_name_or_path",
            str(teacher), "--prompts", str(traces), "--output_dir", str(tmp_path / "out"), "--bf16", "false",
            "--lint_only", "true"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.rstrip().endswith("-> ok") and "compares the tokenizer's 151,665 real tokens" in out
    assert "prefills '<think>'" in out and not (tmp_path / "out").exists()


def test_naming_a_model_needs_a_recipe(capsys):
    assert main(["on-policy", "--model_name_or_path", "Qwen/Qwen2.5-1.5B-Instruct"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and f"--config configs/sft/{RECIPE.name}" in errors[0], errors
