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
