"""Every shipped config parses through the CLI's parser (unknown keys fail) and opens with its hardware and exact
command; the real recipes are sized for real traces and pass the template lint with their model family's real
tokenizer and template; accelerate configs load."""

from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig

from sft.cli import main, make_on_policy_parser, make_parser
from sft.config import REPO_ROOT

from .conftest import write_traces

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# `sft run` recipes; *_on_policy.yaml are `sft on-policy` recipes (tests/sft/test_on_policy.py checks the real one)
REAL = sorted(
    p
    for p in (CONFIGS / "sft").glob("*.yaml")
    if not p.name.startswith("toy_") and not p.stem.endswith("_on_policy")
)
# hub id in a recipe -> (architecture, family) of the tiny real-shape stand-in (tests/real_models.py)
FAMILIES = {
    "Qwen/Qwen2.5-1.5B-Instruct": ("qwen2", "qwen2.5"),
    "Qwen/Qwen3-1.7B": ("qwen3", "qwen3"),  # the launch revision of its template
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": ("qwen2", "r1-distill"),
}


@pytest.mark.parametrize("path", sorted((CONFIGS / "sft").glob("*.yaml")), ids=lambda p: p.name)
def test_sft_config_parses(path):
    text = path.read_text()
    assert text.startswith("#"), "each config opens with its hardware and exact command"
    # the GPU recipes say bf16: true, which TrainingArguments refuses on a CPU-only machine
    argv = ["--config", str(path), "--bf16", "false"]
    parser = make_on_policy_parser() if path.stem.endswith("_on_policy") else make_parser()
    args, *_ = parser.parse_args_and_config(argv)  # sft run: also TRL's dataset options
    keys = set(yaml.safe_load(text))
    assert keys, path
    if "kd_source" in keys:
        assert args.kd_source != "none" and args.kd_alpha > 0


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_recipe_is_sized_for_real_traces(path):
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "Sized for:" in header and f"--config configs/sft/{path.name}" in header
    config = yaml.safe_load(path.read_text())
    assert config["max_length"] >= 16384 and config["bf16"] and config["gradient_checkpointing"]
    assert config["assistant_only_loss"] and (config.get("packing") or config.get("padding_free"))
    assert config["model_name_or_path"] in FAMILIES, "add the recipe's model to FAMILIES"
    if config.get("use_peft"):
        assert 5e-5 < config["learning_rate"] <= 3e-4, "a LoRA learning rate"
    else:
        assert config["learning_rate"] <= 1e-4, "a full fine-tuning learning rate"


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_recipe_passes_the_lint_on_its_model_family(path, real_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # recipes name configs/templates/... relative to the repository
    config = yaml.safe_load(path.read_text())
    model = real_model(*FAMILIES[config["model_name_or_path"]])
    content = "<think>\nI add 2 and 3 to get 5.\n</think>\n\nThe answer is \\boxed{5}."
    messages = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": content}]
    traces = write_traces(tmp_path / "traces", [{"messages": messages, "verdict": "correct"}] * 4)
    argv = ["run", "--config", str(path), "--model_name_or_path", str(model), "--traces", str(traces),
            "--output_dir", str(tmp_path / "out"), "--bf16", "false", "--lint_only", "true"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.rstrip().endswith("-> ok") and not (tmp_path / "out").exists()


def test_unknown_key_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bf16: false\nkd_alfa: 0.5\n")
    with pytest.raises(ValueError, match="kd_alfa"):
        make_parser().parse_args_and_config(["--config", str(bad)])


@pytest.mark.parametrize("path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_config_loads(path):
    assert path.read_text().startswith("#")
    config = ClusterConfig.from_yaml_file(str(path))  # raises on keys accelerate does not know
    assert config.num_processes >= 2


def test_shipped_templates_have_provenance():
    for path in sorted((CONFIGS / "templates").glob("*.jinja")):
        text = path.read_text()
        assert text.startswith("{#-") and "--chat_template_path configs/templates/" + path.name in text, path
        assert "{%- generation %}" in text, path
