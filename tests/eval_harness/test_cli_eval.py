"""The CLI without a model: --help, the flag vocabulary, bad input as one clear error line, --responses,
custom JSONL benchmarks."""

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval_harness.benchmarks import toy
from eval_harness.cli import main, make_parser, normalise_argv, parse_models
from trace_gen.errors import UsageError
from trace_gen.verify.benchmarks import benchmarks_dir


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())["benchmarks"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_unknown_benchmark_lists_the_known_ones(tmp_path, capsys):
    assert main(["--oracle", "--benchmarks", "toy,mmlu", "--output-dir", str(tmp_path / "o")]) == 2
    line = _error_line(capsys)
    assert "unknown benchmark 'mmlu'" in line and all(n in line for n in ("math500", "gsm8k", "humaneval"))
    assert not (tmp_path / "o").exists()


def test_missing_data_file_says_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISTILL_BENCHMARKS_DIR", str(tmp_path / "nowhere"))
    assert main(["--oracle", "--benchmarks", "gsm8k", "--output-dir", str(tmp_path / "o")]) == 2
    line = _error_line(capsys)
    assert "benchmark data not found" in line and str(tmp_path / "nowhere" / "gsm8k_test.jsonl") in line
    assert "DISTILL_BENCHMARKS_DIR" in line


def test_k_greedy_samples_are_refused(tmp_path, capsys):
    args = [
        "--model",
        str(tmp_path),
        "--benchmarks",
        "toy",
        "--samples-per-prompt",
        "4",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "greedy decoding on toy" in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_responses_that_do_not_match_name_the_missing_ids(tmp_path, capsys):
    items = toy.load(6)
    responses = _write_jsonl(
        tmp_path / "r.jsonl", [{"id": it.id, "completion": "\\boxed{1}"} for it in items[:4]]
    )
    args = [
        "--responses",
        str(responses),
        "--benchmarks",
        "toy",
        "--limit",
        "6",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    line = _error_line(capsys)
    assert "does not match benchmark toy: 2 of 6 ids missing" in line
    assert (
        items[4].id in line
        and items[5].id in line
        and items[0].id not in line.split("missing")[1].split(";")[0]
    )

    other = _write_jsonl(tmp_path / "g.jsonl", [{"id": f"gsm8k-{i}", "completion": "1"} for i in range(6)])
    assert main(["--responses", str(other), *args[2:]]) == 2
    assert "6 of 6 ids missing" in (line := _error_line(capsys)) and "gsm8k-0" in line

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "completion": "1"}\n{"id": \n')
    assert main(["--responses", str(bad), *args[2:]]) == 2
    assert "bad.jsonl:2 is not valid JSON" in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_responses_are_scored_with_k_samples_and_maj(tmp_path):
    items = toy.load(4)
    rows = []
    for i, it in enumerate(items):  # item i: i of 3 samples correct, the rest answer 0
        for k in range(3):
            answer = it.gold if k < i else "0"
            rows.append({"id": it.id, "completion": f"<think>x</think> \\boxed{{{answer}}}", "num_tokens": 5})
    responses = _write_jsonl(tmp_path / "r.jsonl", rows[::-1])  # order in the file does not matter
    out = tmp_path / "o"
    assert (
        main(["--responses", str(responses), "--benchmarks", "toy", "--limit", "4", "--output-dir", str(out)])
        == 0
    )
    s = _summary(out)["toy"]
    assert s["samples"] == 3 and s["n"] == 4
    assert s["pass@1"] == pytest.approx((0 + 1 / 3 + 2 / 3 + 1) / 4)
    assert s["pass@3"] == pytest.approx(3 / 4)
    assert s["maj@3"] == pytest.approx(2 / 4)
    assert s["mean_response_tokens"] == 5 and s["truncation_rate"] is None  # finish_reason not given
    assert (out / "summary.md").read_text().startswith("| benchmark |")


def test_per_sample_file_rescored_as_responses_gives_the_same_scores(tmp_path):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert main(["--oracle", "--benchmarks", "toy", "--limit", "20", "--output-dir", str(out1)]) == 0
    (samples,) = (out1 / "samples").glob("toy-*.jsonl")
    assert (
        main(["--responses", str(samples), "--benchmarks", "toy", "--limit", "20", "--output-dir", str(out2)])
        == 0
    )
    s1, s2 = _summary(out1)["toy"], _summary(out2)["toy"]
    assert {k: v for k, v in s1.items() if k != "samples_file"} == {
        k: v for k, v in s2.items() if k != "samples_file"
    }


def test_custom_math_jsonl_with_field_mapping(tmp_path, capsys):
    data = _write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"uid": "a", "question": "1/2 + 1/2?", "final": 1.0},
            {"uid": "b", "question": "half of 1?", "final": "\\frac12"},
        ],
    )
    out = tmp_path / "o"
    common = [
        "--custom",
        str(data),
        "--problem-column",
        "question",
        "--id-column",
        "uid",
        "--output-dir",
        str(out),
    ]
    assert main(["--oracle", *common]) == 2
    line = _error_line(capsys)
    assert "no column 'answer'" in line and "question, final" in line and "--answer-column" in line

    responses = _write_jsonl(
        tmp_path / "r.jsonl",
        [{"id": "a", "completion": "\\boxed{1}"}, {"id": "b", "completion": "\\boxed{0.5}"}],
    )
    assert main(["--responses", str(responses), *common, "--answer-column", "final"]) == 0
    s = _summary(out)["mine"]
    assert s["pass@1"] == 1.0 and s["n"] == 2 and s["kind"] == "math"


def test_custom_code_jsonl_oracle_and_missing_file(tmp_path, capsys):
    src = benchmarks_dir() / "humaneval.jsonl.gz"  # shipped in the package: missing is a failure
    with gzip.open(src, "rt") as f:
        rows = [json.loads(line) for line in f][:3]
    data = _write_jsonl(
        tmp_path / "funcs.jsonl",
        [
            {
                "name": r["task_id"],
                "stub": r["prompt"],
                "tests": r["test"],
                "fn": r["entry_point"],
                "body": r["canonical_solution"],
            }
            for r in rows
        ],
    )
    fields = [  # the old --*-field spellings still work
        "--problem-field",
        "stub",
        "--test-field",
        "tests",
        "--entry-point-field",
        "fn",
        "--id-field",
        "name",
    ]
    out = tmp_path / "o"
    args = ["--oracle", "--custom", str(data), "--custom-type", "code", *fields, "--output-dir", str(out)]
    assert main([*args, "--solution_column", "body"]) == 0  # underscores work too
    assert _summary(out)["funcs"]["verdicts"] == {"passed": 3}

    assert main([*args[:2], str(tmp_path / "none.jsonl"), *args[3:]]) == 2
    assert "custom benchmark file not found" in _error_line(capsys)


def test_backend_flags_are_checked_before_any_model_loads(tmp_path, capsys):
    import torch

    teacher = str(Path(__file__).resolve().parents[2] / "trace_gen" / "toy" / "assets" / "teacher")
    base = ["--model", teacher, "--benchmarks", "toy", "--limit", "2", "--output-dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--engine-args", "{not json"])
    assert exit_.value.code == 2 and "not valid JSON" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--backend", "hf", "--device", "cuda"]) == 2
        assert "no GPU is visible" in _error_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("sub", [[], ["compare"]])
def test_help_is_grouped_states_each_default_once_and_loads_nothing_heavy(sub):
    code = (
        "import json, sys\nfrom eval_harness.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
        "    pass\nheavy = ('torch', 'transformers', 'trl', 'vllm', 'datasets', 'matplotlib')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *sub, "--help"], capture_output=True, text=True, check=True
    )
    *help_lines, loaded = proc.stdout.strip().splitlines()
    assert json.loads(loaded) == []  # --help stays fast: nothing heavy imported
    text = "\n".join(help_lines)
    for group in ("benchmarks", "sampling", "generation backend", "scoring", "output"):
        assert f"\n{group}" in text
    parser = make_parser(bool(sub))
    formatter = parser.formatter_class(parser.prog)
    for action in parser._actions:
        if action.default not in (None, False, argparse.SUPPRESS):
            assert formatter._expand_help(action).count("default") == 1, action.option_strings


def test_one_vocabulary_old_names_and_underscores(capsys):
    argv = normalise_argv(
        ["--samples", "2", "--output_dir=x", "--problem-field", "q", "--custom-split", "dev"]
    )
    assert argv == ["--samples-per-prompt", "2", "--output-dir=x", "--problem-column", "q", "--split", "dev"]
    assert capsys.readouterr().err.count("note: ") == 3
    args = make_parser(False).parse_args(
        normalise_argv(["--oracle", "--output_dir", "o", "--batch_size", "8"])
    )
    assert args.output_dir == Path("o") and args.batch_size == 8
    assert parse_models(["a=/m/x,y", "b=/m/z,c=hub/id"]) == {"a": "/m/x,y", "b": "/m/z", "c": "hub/id"}
    with pytest.raises(UsageError, match="names must be different"):
        parse_models(["a=/x,a=/y"])
