"""Bad input gets one clear `error:` line and exit 2 (nothing written) or a counted skip."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from trace_gen.cli import main, make_parser


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("sub", [[], ["merge"], ["filter"]])
def test_help(sub):
    proc = subprocess.run([sys.executable, "-m", "trace_gen", *sub, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage" in proc.stdout.lower()


def test_remote_code_is_off_unless_asked():
    assert make_parser().parse_args(["--out", "x"]).trust_remote_code is False


def test_unreachable_server_is_one_line_and_writes_no_parts(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    argv = [
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--teacher",
        "m",
        "--max-retries",
        "1",
    ]
    assert main([*argv, "--dataset", str(data), "--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert "cannot reach the teacher server at http://127.0.0.1:9/v1 (connection refused)" in line
    assert not list((tmp_path / "o").rglob("part-*")) and not (tmp_path / "o" / "manifest.jsonl").exists()


def test_bad_json_line_names_the_line(tiny_teacher, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "a", "answer": "1"}) + "\n{broken\n")
    assert main(["--teacher", str(tiny_teacher), "--dataset", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "d.jsonl:2 is not valid JSON" in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_missing_dataset_and_renamed_tests_column(tiny_teacher, tmp_path, capsys):
    teacher = ["--teacher", str(tiny_teacher)]
    assert main([*teacher, "--dataset", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "dataset file not found" in error_line(capsys)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "a", "answer": "1", "test_cases": []}) + "\n")
    assert (
        main([*teacher, "--dataset", str(data), "--tests-column", "tests", "--out", str(tmp_path / "o")]) == 2
    )
    line = error_line(capsys)
    assert "no column 'tests'" in line and "test_cases" in line and "--tests-column" in line


def test_logprobs_need_vllm(tmp_path, capsys):
    assert main(["--logprobs", "5", "--out", str(tmp_path / "o")]) == 2
    assert "--backend vllm" in error_line(capsys)


def test_filter_subcommand(tiny_teacher, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": f"Eve has {i} shells.", "answer": "1"}) + "\n" for i in range(3))
    )
    traces = tmp_path / "traces"
    argv = [
        "--teacher",
        str(tiny_teacher),
        "--dataset",
        str(data),
        "--out",
        str(traces),
        "--max-new-tokens",
        "8",
    ]
    assert main([*argv, "--samples-per-prompt", "1", "--keep-rejected"]) == 0
    # the toy-sized random teacher keeps nothing: filter the rejected rows, keeping every verdict
    capsys.readouterr()
    rejected = traces / "rejected"
    verdicts = ["wrong", "unverifiable", "correct"]
    assert (
        main(
            ["filter", str(rejected), str(tmp_path / "f"), "--keep-verdicts", *verdicts, "--no-require-think"]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rows"] == 3 and report["config"]["require_think"] is False
    kept = pq.read_table(tmp_path / "f" / "part-00000.parquet")
    assert kept.num_rows == report["kept"]
    assert main(["filter", str(tmp_path / "nothing"), str(tmp_path / "g")]) == 2
    assert "no Parquet parts" in error_line(capsys)
