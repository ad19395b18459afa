"""Every CLI answers --help, and bad input gets one clear error line (exit 2) with nothing written."""

import json
import subprocess
import sys

import pytest

from eval_harness.cli import main as eval_main
from sft.cli import main as sft_main
from trace_gen.cli import main as trace_main

HELP_COMMANDS = [
    ["trace_gen", "--help"],
    ["sft", "--help"],
    ["sft", "run", "--help"],
    ["sft", "on-policy", "--help"],
    ["sft", "init-student", "--help"],
    ["sft", "card", "--help"],
    ["eval_harness", "--help"],
    ["eval_harness", "compare", "--help"],
    ["trace_gen.toy.build", "--help"],
]


@pytest.mark.parametrize("cmd", HELP_COMMANDS, ids=" ".join)
def test_help(cmd):
    proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def test_missing_teacher(tmp_path, capsys):
    assert trace_main(["--teacher", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "teacher not found" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_dataset_without_column(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    rc = trace_main(["--dataset", str(data), "--output-dir", str(tmp_path / "o")])
    line = _one_error_line(capsys)
    assert rc == 2 and "no column 'problem'" in line and "question" in line and "--problem-column" in line
    assert not (tmp_path / "o").exists()


def test_non_utf8_dataset(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"problem": "caf\xe9", "answer": "1"}\n')
    assert trace_main(["--dataset", str(data), "--output-dir", str(tmp_path / "o")]) == 2
    assert "not UTF-8" in _one_error_line(capsys)


def test_sft_unknown_config_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rte: 0.1\n")
    assert sft_main(["run", "--config", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert "learning_rte" in line and "learning_rate" in line and "valid keys" in line


def test_sft_missing_traces(tmp_path, capsys):
    rc = sft_main(["run", "--config", "configs/sft/toy_student.yaml", "--traces", str(tmp_path / "none"),
                   "--output_dir", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and "traces not found" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_eval_unknown_benchmark(tmp_path, capsys):
    assert eval_main(["--model", str(tmp_path), "--benchmarks", "mmlu", "--output-dir", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "unknown benchmark 'mmlu'" in line and "toy" in line


def test_sft_flag_vocabulary_rewrites_to_field_names():
    from sft.cli import canonical_flags

    argv = [
        "--model",
        "M",
        "--teacher=T",
        "--output-dir",
        "o",
        "--dataset",
        "d",
        "--max-steps=3",
        "--lora-r",
        "8",
    ]
    assert canonical_flags(argv) == ["--model_name_or_path", "M", "--teacher_model_name_or_path=T",
                                     "--output_dir", "o", "--dataset_name", "d", "--max_steps=3", "--lora_r", "8"]  # fmt: skip


def test_sft_shared_vocabulary_reaches_the_parser(tmp_path, capsys):
    rc = sft_main(["run", "--config", "configs/sft/toy_student.yaml", "--model", str(tmp_path / "nope"),
                   "--output-dir", str(tmp_path / "o"), "--max-steps", "1"])  # fmt: skip
    line = _one_error_line(capsys)
    assert rc == 2 and "--model_name_or_path" in line and "nope" in line
    assert not (tmp_path / "o").exists()


def test_sft_card_bad_input(tmp_path, capsys):
    assert sft_main(["card", str(tmp_path)]) == 2
    assert "no run_summary.json" in _one_error_line(capsys)
    (tmp_path / "run_summary.json").write_text("{}")
    assert sft_main(["card", str(tmp_path), "--eval", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in _one_error_line(capsys)
    (tmp_path / "other.json").write_text('{"accuracy": 1}')
    assert sft_main(["card", str(tmp_path), "--eval", str(tmp_path / "other.json")]) == 2
    assert "not an eval_harness summary.json" in _one_error_line(capsys)


def test_sft_help_tables_match_trl():
    """The fast grouped help copies TRL's defaults and help: every entry must match the installed TRL."""
    import dataclasses

    from trl import DatasetMixtureConfig, DistillationConfig, ModelConfig, ScriptArguments, SFTConfig

    from sft.run_help import GROUPS, ON_POLICY_TRL_FIELDS, TRL_FIELDS

    owners = (SFTConfig, ModelConfig, ScriptArguments, DatasetMixtureConfig, DistillationConfig)
    classes = {c.__name__: c for c in owners}
    for name, (group, owner, default, text) in [*TRL_FIELDS.items(), *ON_POLICY_TRL_FIELDS.items()]:
        field = {f.name: f for f in dataclasses.fields(classes[owner])}[name]
        real = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        assert getattr(real, "value", real) == default, f"{name}: TRL default {real!r}, table {default!r}"
        assert " ".join(field.metadata["help"].split()).startswith(text), f"{name}: TRL's help changed"
        assert group in GROUPS


@pytest.mark.parametrize("command", ["run", "on-policy"])
def test_sft_help_is_grouped_and_lists_every_field_of_ours(command):
    import dataclasses

    from sft.config import DistillArguments
    from sft.on_policy_config import OnPolicyArguments

    proc = subprocess.run(
        [sys.executable, "-m", "sft", command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    code = f"import sys; from sft.cli import main; main([{command!r}, '--help']); print(sorted({{'torch', 'trl'}} & set(sys.modules)))"
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert heavy.stdout.splitlines()[-1] == "[]", (
        "the grouped help must not import torch or trl (it stays fast)"
    )
    for heading in ("data", "model", "fine-tuning mode", "distillation", "training", "output and checks"):
        assert f"\n{heading}" in out, heading
    for f in dataclasses.fields(DistillArguments if command == "run" else OnPolicyArguments):
        assert f"--{f.name}" in out, f.name
    lr = "2e-05" if command == "run" else "1e-06"  # SFTConfig's / DistillationConfig's own default
    assert (
        "--model, --model_name_or_path  (default: None)" in out and f"--learning_rate  (default: {lr})" in out
    )
