"""Bad input to `python -m sft run`: one stderr line naming the problem (and the fix), exit code 2, before any
model weights load, and nothing written (the output directory is not created).

Each case builds its bad input in a temporary directory and returns the extra flags (later flags override
earlier ones) and a fragment the error line must contain. Most run in process through `sft.cli.main`; a few
run as `python -m sft run` subprocesses to prove the exit code and that stderr is exactly one line.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import PreTrainedModel

from sft.cli import main
from sft.config import DEFAULT_CONFIG, REPO_ROOT

from .conftest import write_traces


def base_argv(toy, out: Path, flags: list[str]) -> list[str]:
    """The toy recipe on the toy student (`flags`' own --config replaces it)."""
    config = [] if "--config" in flags else ["--config", str(DEFAULT_CONFIG)]
    return ["run", *config, "--model_name_or_path", str(toy.student),
            "--traces", str(toy.traces), "--output_dir", str(out), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--lint_samples", "4"]  # fmt: skip


def _model_without(toy, tmp, keep) -> Path:
    """A copy of the toy student holding only the files `keep` selects."""
    d = tmp / "model"
    d.mkdir()
    for f in toy.student.iterdir():
        if keep(f.name):
            shutil.copy(f, d / f.name)
    return d


def config_only(toy, tmp):
    d = _model_without(toy, tmp, lambda name: name == "config.json")
    return ["--model_name_or_path", str(d)], "no tokenizer"


def no_chat_template(toy, tmp):
    d = _model_without(toy, tmp, lambda name: not name.endswith(".jinja"))
    config = json.loads((d / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    return ["--model_name_or_path", str(d)], "--chat_template_path configs/templates/"


def no_chat_template_lint_off(toy, tmp):
    flags, expected = no_chat_template(toy, tmp)
    return [*flags, "--lint", "false"], expected


def broken_tokenizer(toy, tmp):
    d = _model_without(toy, tmp, lambda name: True)
    (d / "tokenizer.json").write_text('{"version": "1.0", "truncated')
    return ["--model_name_or_path", str(d)], "tokenizer does not load"


def hub_id_offline(toy, tmp):
    return ["--model_name_or_path", "Qwen/Qwen2.5-1.5B-Instruct-not-cached"], "HF_HUB_OFFLINE=1"


def missing_student(toy, tmp):
    return ["--model_name_or_path", "./nope"], "--model_name_or_path"


def missing_teacher(toy, tmp):
    flags = ["--kd_source", "online", "--kd_alpha", "0.5", "--teacher_model_name_or_path", "./nope"]
    return flags, "--teacher_model_name_or_path"


def output_dir_is_file(toy, tmp):
    (tmp / "out").write_text("not a directory")
    return [], "is a file"


def output_dir_under_a_file(toy, tmp):
    (tmp / "file").write_text("")
    return ["--output_dir", str(tmp / "file" / "run")], "cannot be created"


def output_dir_other_run(toy, tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "run_summary.json").write_text("{}")
    (tmp / "out" / "run_config.yaml").write_text("learning_rate: 0.5\n")
    return [], "holds a run with other settings"


def flag(name, value, expected):
    def case(toy, tmp):
        return [f"{name}={value}"], expected

    case.__name__ = f"{name.lstrip('-')}={value}"
    return case


def epochs_zero(toy, tmp):
    return ["--max_steps", "-1", "--num_train_epochs", "0"], "num_train_epochs"


def quantized_full_fine_tuning(toy, tmp):
    return ["--load_in_4bit=true", "--use_peft=false"], "--use_peft true"


def yaml_syntax(toy, tmp):
    (tmp / "bad.yaml").write_text("use_peft: true\nlora_r: [16\n")
    return ["--config", str(tmp / "bad.yaml")], "bad.yaml"


def yaml_missing(toy, tmp):
    return ["--config", str(tmp / "missing.yaml")], "missing.yaml"


def yaml_not_mapping(toy, tmp):
    (tmp / "list.yaml").write_text("- use_peft\n- lora_r\n")
    return ["--config", str(tmp / "list.yaml")], "mapping"


def traces_missing(toy, tmp):
    return ["--traces", str(tmp / "none")], "traces not found"


def traces_empty_dir(toy, tmp):
    (tmp / "empty").mkdir()
    return ["--traces", str(tmp / "empty")], "no Parquet"


def traces_no_kept_rows(toy, tmp):
    return ["--keep_verdicts", "passed"], "verdicts found: correct"


def traces_zero_rows(toy, tmp):
    (tmp / "zero").mkdir()
    pq.write_table(pa.Table.from_pylist([], schema=pq.read_schema(next(toy.traces.glob("*.parquet")))),
                   tmp / "zero" / "part-00000.parquet")  # fmt: skip
    return ["--traces", str(tmp / "zero")], "0 rows"


def json_array(toy, tmp):
    (tmp / "rows.json").write_text(json.dumps([[1, 2], [3, 4]]))
    return ["--traces", str(tmp / "rows.json")], "messages"


def jsonl_not_chat(toy, tmp):
    (tmp / "rows.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    return ["--traces", str(tmp / "rows.jsonl")], "columns: question, answer"


def jsonl_syntax(toy, tmp):
    (tmp / "rows.jsonl").write_bytes(b'{"messages": [}\n\xff\xfe\n')
    return ["--traces", str(tmp / "rows.jsonl")], "cannot be read as JSON"


def offline_without_topk(toy, tmp):
    return ["--kd_source", "offline", "--kd_alpha", "0.5"], "topk_ids"


def offline_empty_topk(toy, tmp):
    rows = [{**r, "token_ids": [], "topk_ids": [], "topk_logprobs": []} for r in toy.topk_rows]
    return [
        "--kd_source",
        "offline",
        "--kd_alpha",
        "0.5",
        "--traces",
        str(write_traces(tmp / "t", rows)),
    ], "empty"


def offline_topk_beyond_vocab(toy, tmp):
    rows = [{**r, "topk_ids": [10**6] * len(r["topk_ids"])} for r in toy.topk_rows]
    traces = write_traces(tmp / "t", rows)
    return ["--kd_source", "offline", "--kd_alpha", "0.5", "--traces", str(traces)], "embedding rows"


def template_path_missing(toy, tmp):
    return ["--chat_template_path", str(tmp / "nope.jinja")], "nope.jinja not found"


CASES = [
    config_only,
    no_chat_template,
    no_chat_template_lint_off,
    broken_tokenizer,
    hub_id_offline,
    missing_student,
    missing_teacher,
    output_dir_is_file,
    output_dir_under_a_file,
    output_dir_other_run,
    flag("--lora_r", "0", "lora_r"),
    flag("--per_device_train_batch_size", "0", "per_device_train_batch_size"),
    flag("--learning_rate", "0", "learning_rate"),
    flag("--learning_rate", "-1e-4", "learning_rate"),
    flag("--gradient_accumulation_steps", "0", "gradient_accumulation_steps"),
    flag("--max_steps", "0", "max_steps"),
    flag("--max_samples", "0", "max_samples"),
    flag("--max_length", "0", "max_length"),
    epochs_zero,
    quantized_full_fine_tuning,
    yaml_syntax,
    yaml_missing,
    yaml_not_mapping,
    traces_missing,
    traces_empty_dir,
    traces_no_kept_rows,
    traces_zero_rows,
    json_array,
    jsonl_not_chat,
    jsonl_syntax,
    offline_without_topk,
    offline_empty_topk,
    offline_topk_beyond_vocab,
    template_path_missing,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_input_is_one_line_and_writes_nothing(toy, tmp_path, capsys, monkeypatch, case):
    def load_weights(*args, **kwargs):
        raise AssertionError("model weights loaded before the bad input was refused")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(load_weights))
    out = tmp_path / "out"
    flags, expected = case(toy, tmp_path)
    existed = out.exists()
    before = sorted(out.rglob("*")) if out.is_dir() else None
    assert main([*base_argv(toy, out, flags), *flags]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert out.exists() == existed and (not out.is_dir() or sorted(out.rglob("*")) == before)


SUBPROCESS_CASES = [hub_id_offline, offline_empty_topk]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.__name__)
def test_bad_input_from_the_command_line(toy, tmp_path, case):
    out = tmp_path / "out"
    flags, expected = case(toy, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "sft", *base_argv(toy, out, flags), *flags], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_unexpected_library_error_is_one_line_and_debug_shows_the_traceback(
    toy, tmp_path, capsys, monkeypatch
):
    """An error no check foresaw (here: the student's weights fail to load) is one line naming --debug; with
    --debug the exception propagates with its traceback."""
    import transformers

    def broken(*args, **kwargs):
        raise OSError("weights are corrupt\nsecond line")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", broken)
    argv = ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student), "--traces",
            str(toy.traces), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--lint", "false"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: OSError: weights are corrupt (unexpected; rerun with --debug for the traceback)"]
    with pytest.raises(OSError, match="weights are corrupt"):
        main([*argv, "--debug"])
