"""`python -m sft run` on tiny students with the real Qwen vocabulary and templates (151,936 embedding rows), through
the shipped real recipes with CPU overrides: the lint checks what SFTTrainer then trains (the run compares them
before the first step), its fixes make the run go, the student is saved with the template evaluation renders,
and the run leaves its resolved config, versions, commit and seed beside the model. Bad input (a named model
without a recipe, a KD pair with different vocabularies, a wrong --chat_template_path) is one line, nothing written.
"""

import json
import shutil

import pytest
import yaml
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from sft.cli import main, make_parser
from sft.config import REPO_ROOT
from tests.real_models import real_template

from .conftest import write_traces

pytestmark = pytest.mark.integration

RECIPES = REPO_ROOT / "configs" / "sft"
CPU = ["--attn_implementation", "sdpa", "--dtype", "float32", "--bf16", "false", "--use_liger_kernel", "false",
       "--max_steps", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
       "--max_length", "512", "--save_strategy", "no", "--dataset_num_proc", "1", "--lint_samples", "8",
       "--logging_steps", "1", "--disable_tqdm", "true"]  # fmt: skip


def rows(n=8) -> list[dict]:
    out = []
    for i in range(n):
        a, b = i + 2, 3 * i + 1
        content = (
            f"<think>\nI add {a} and {b}: {a} + {b} = {a + b}.\n</think>\n\nThe answer is \\boxed{{{a + b}}}."
        )
        messages = [
            {"role": "user", "content": f"What is {a} + {b}?"},
            {"role": "assistant", "content": content},
        ]
        out.append({"prompt_id": f"p{i}", "sample_idx": 0, "messages": messages, "verdict": "correct"})
    return out


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    return write_traces(tmp_path_factory.mktemp("real") / "traces", rows())


def sft(recipe: str, model, traces, out, *extra) -> int:
    argv = ["run", "--config", str(RECIPES / recipe), "--model_name_or_path", str(model), "--traces", str(traces),
            "--output_dir", str(out), *CPU, *extra]  # fmt: skip
    return main(argv)


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_r1_distill_student_recipe(real_model, traces, tmp_path, capsys, monkeypatch):
    """The stock R1-Distill template passes (TRL's training version renders the rows); the adapter records the
    base model by absolute path though it was given relative; the run writes what it was."""
    model = real_model("qwen2", "r1-distill")
    monkeypatch.chdir(model.parent)  # the student named by a relative path
    out = tmp_path / "r1"
    assert sft("r1_distill_qwen_1.5b_lora.yaml", model.name, traces, out) == 0
    printed = capsys.readouterr().out
    assert "-> ok" in printed and f"model: {out / 'merged'}" in printed.splitlines()[-1]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(model.resolve())
    saved = AutoTokenizer.from_pretrained(out / "merged")
    assert saved.chat_template == real_template("r1-distill")  # the stock template, as TRL leaves it
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 42 and info["versions"]["trl"] and info["git"]["commit"]
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["learning_rate"] == 1e-4 and config["max_length"] == 512 and config["lora_r"] == 64
    args, training_args, model_args, *_ = make_parser().parse_args_and_config(  # + TRL's dataset options
        ["--config", str(out / "run_config.yaml")]
    )
    assert (training_args.learning_rate, training_args.packing, model_args.lora_r) == (1e-4, True, 64)
    assert args.traces == str(traces) and training_args.seed == 42
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["final_model"] == str(out / "merged") and summary["global_step"] == 1


def test_qwen2_5_math_fails_then_the_offered_template_trains(real_model, traces, tmp_path, capsys):
    model = real_model("qwen2", "qwen2.5-math")
    out = tmp_path / "math"
    assert sft("r1_distill_qwen2.5_1.5b_lora.yaml", model, traces, out) == 2
    line = error_line(capsys)
    assert "no {% generation %} markers" in line
    assert "fix: --chat_template_path configs/templates/qwen2_5_math_training.jinja" in line
    assert not out.exists()
    fix = REPO_ROOT / "configs/templates/qwen2_5_math_training.jinja"
    assert sft("r1_distill_qwen2.5_1.5b_lora.yaml", model, traces, out, "--chat_template_path", str(fix)) == 0
    for saved in (out, out / "merged"):  # saved with the model's own template, not the training one
        assert AutoTokenizer.from_pretrained(saved).chat_template == real_template("qwen2.5-math")
    lint = (out / "lint_report.txt").read_text()
    assert "distill-kit's qwen2_5_math_training.jinja" in lint and "saved with the student" in lint


def test_base_model_eos_fails_then_eos_token_trains(real_model, traces, tmp_path, capsys):
    """A base model: the Qwen2.5 template ends turns with <|im_end|> but its eos is <|endoftext|>."""
    model = tmp_path / "qwen2.5-base"
    shutil.copytree(real_model("qwen2", "qwen2.5"), model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "<|endoftext|>"}))
    out = tmp_path / "base"
    assert sft("r1_distill_qwen2.5_1.5b_full.yaml", model, traces, out) == 2
    line = error_line(capsys)
    assert "ends with '<|im_end|>', but the tokenizer's eos is '<|endoftext|>'" in line
    assert "fix: --eos_token '<|im_end|>'" in line and not out.exists()
    assert sft("r1_distill_qwen2.5_1.5b_full.yaml", model, traces, out, "--eos_token", "<|im_end|>") == 0
    assert AutoTokenizer.from_pretrained(out).eos_token == "<|im_end|>"
    assert AutoConfig.from_pretrained(out).eos_token_id == 151645  # TRL mirrors it onto the model
    assert 151645 in GenerationConfig.from_pretrained(out).eos_token_id
    assert json.loads((out / "run_summary.json").read_text())["mode"] == "full"


def test_wrong_chat_template_path_fails(real_model, traces, tmp_path, capsys):
    r1 = tmp_path / "r1.jinja"
    r1.write_text(real_template("r1-distill"))
    out = tmp_path / "wrong"
    rc = sft(
        "r1_distill_qwen2.5_1.5b_lora.yaml",
        real_model("qwen2", "qwen2.5"),
        traces,
        out,
        "--chat_template_path",
        str(r1),
    )
    assert rc == 2
    line = error_line(capsys)
    assert "merge into one trained token" in line and "drop --chat_template_path" in line and not out.exists()


def test_kd_pair_with_another_embedding_size_is_one_line(real_model, traces, tmp_path, capsys):
    out = tmp_path / "kd"
    teacher = real_model("qwen2", "qwen2.5", vocab_size=152_064)
    rc = sft("r1_distill_qwen2.5_1.5b_lora.yaml", real_model("qwen2", "qwen2.5"), traces, out, "--kd_source", "online",
             "--kd_alpha", "0.5", "--teacher_model_name_or_path", str(teacher))  # fmt: skip
    assert rc == 2
    line = error_line(capsys)
    assert (
        "student 151,936 rows, teacher 152,064" in line and "--kd_source offline" in line and not out.exists()
    )


@pytest.mark.parametrize("flag", ["--model_name_or_path", "--traces"])
def test_no_toy_recipe_for_a_named_model_or_traces(tmp_path, capsys, flag):
    out = tmp_path / "o"
    assert main(["run", flag, str(tmp_path), "--output_dir", str(out)]) == 2
    line = error_line(capsys)
    assert f"{flag} without --config" in line and "configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml" in line
    assert not out.exists()
