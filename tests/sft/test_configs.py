"""Every shipped config parses through the CLI's parser (unknown keys fail), and accelerate configs load."""

from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig

from sft.cli import make_on_policy_parser, make_parser

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "sft").glob("*.yaml")), ids=lambda p: p.name)
def test_sft_config_parses(path):
    text = path.read_text()
    assert text.startswith("#"), "each config opens with its hardware and exact command"
    # the GPU recipes say bf16: true, which TrainingArguments refuses on a CPU-only machine
    argv = ["--config", str(path), "--bf16", "false"]
    parser = make_on_policy_parser() if path.stem.endswith("_on_policy") else make_parser()  # sft on-policy
    args, _, _ = parser.parse_args_and_config(argv)
    keys = set(yaml.safe_load(text))
    assert keys, path
    if "kd_source" in keys:
        assert args.kd_source != "none" and args.kd_alpha > 0


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
