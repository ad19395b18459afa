"""Bad input to `python -m eval_harness`: exit code 2, exactly one line on stderr naming the problem and
the fix, nothing written, and no model loaded (make_backend is made to fail loudly if reached)."""

import importlib.util
import json
import shutil
import struct
from pathlib import Path

import pytest

from eval_harness.benchmarks import toy
from eval_harness.checks import model_dir_problem
from eval_harness.cli import main

TEACHER = Path(__file__).resolve().parents[2] / "trace_gen" / "toy" / "assets" / "teacher"


def _model(tmp_path: Path, drop=(), empty=(), extra=()) -> Path:
    """A copy of the toy teacher with files removed, emptied or added."""
    out = tmp_path / "model"
    shutil.copytree(TEACHER, out)
    for name in drop:
        (out / name).unlink()
    for name in empty:
        (out / name).write_bytes(b"")
    for name in extra:
        (out / name).write_text("{}")
    return out


def _truncated(tmp_path: Path) -> Path:
    out = _model(tmp_path)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return out


def _adapter(tmp_path: Path) -> Path:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    (out / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    return out


def _unfinished_sft(tmp_path: Path) -> Path:
    """A whole model at RUN/merged of an sft run (run_info.json beside it) whose COMPLETE marker is missing."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_info.json").write_text("{}")
    return shutil.copytree(TEACHER, run / "merged")


def _responses(tmp_path: Path, rows=None, raw: bytes | None = None) -> Path:
    path = tmp_path / "responses.jsonl"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ids(n: int) -> list[str]:
    return [it.id for it in toy.load(n)]


# (case, argv builder taking tmp_path and the output dir, text the error line must hold)
CASES = [
    (
        "model without a tokenizer",
        lambda t, o: ["--model", str(_model(t, drop=("tokenizer.json",)))],
        "has no tokenizer",
    ),
    (
        "model without a chat template",
        lambda t, o: ["--model", str(_model(t, drop=("chat_template.jinja",)))],
        "no chat template",
    ),
    (
        "sft output without COMPLETE",
        lambda t, o: ["--model", str(_unfinished_sft(t))],
        "was not finished",
    ),
    (
        "config.json but no weights",
        lambda t, o: ["--model", str(_model(t, drop=("model.safetensors",)))],
        "no weight files",
    ),
    (
        "0-byte tokenizer_config.json",
        lambda t, o: ["--model", str(_model(t, empty=("tokenizer_config.json",)))],
        "is empty",
    ),
    ("truncated safetensors", lambda t, o: ["--model", str(_truncated(t))], "truncated or corrupt"),
    ("a LoRA adapter directory", lambda t, o: ["--model", str(_adapter(t))], "evaluate the merged model"),
    ("a model path that does not exist", lambda t, o: ["--model", str(t / "nope")], "is not a directory"),
    ("a hub id while offline", lambda t, o: ["--model", "nobody-here/no-such-model-xyz"], "HF_HUB_OFFLINE=1"),
    (
        "output dir is a file",
        lambda t, o: ["--oracle", "--output-dir", str(_file(t / "out.txt"))],
        "is a file",
    ),
    (
        "output dir under a file",
        lambda t, o: ["--oracle", "--output-dir", str(_file(t / "f") / "sub")],
        "cannot be created",
    ),
    ("--limit 0", lambda t, o: ["--oracle", "--limit", "0"], "--limit: must be at least 1, got 0"),
    ("--limit -1", lambda t, o: ["--oracle", "--limit", "-1"], "--limit: must be at least 1, got -1"),
    ("--top-p 1.5", lambda t, o: ["--oracle", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
    ("unknown flag", lambda t, o: ["--oracle", "--sample", "2"], "unrecognized arguments: --sample"),
    (
        "non-UTF-8 responses",
        lambda t, o: ["--responses", str(_responses(t, raw=b'{"id": "a", "completion": "\xff"}\n'))],
        "is not UTF-8",
    ),
    (
        "duplicate (id, sample) rows in responses",
        lambda t, o: [
            "--responses",
            str(_responses(t, [{"id": i, "sample": 0, "completion": "1"} for i in [*_ids(3), _ids(3)[1]]])),
            "--limit",
            "3",
        ],
        "twice",
    ),
    (
        "items with different sample counts",
        lambda t, o: [
            "--responses",
            str(_responses(t, [{"id": i, "completion": "1"} for i in [*_ids(3), _ids(3)[0]]])),
            "--limit",
            "3",
        ],
        "1 to 2 samples per item",
    ),
    (
        "a .json dataset holding one value",
        lambda t, o: ["--oracle", "--custom", str(_file(t / "set.json", '"just a string"'))],
        "holds a single JSON value",
    ),
    (
        "--models without NAME=",
        lambda t, o: ["compare", "--models", f"{TEACHER},x={TEACHER}"],
        "NAME=PATH pairs",
    ),
    (
        "greedy with K samples",
        lambda t, o: ["--model", str(TEACHER), "--samples-per-prompt", "4"],
        "greedy decoding on toy",
    ),
]
if importlib.util.find_spec("vllm") is None:
    CASES.append(
        (
            "--backend vllm without vLLM",
            lambda t, o: ["--model", str(TEACHER), "--backend", "vllm"],
            "vLLM is not installed",
        )
    )


def _file(path: Path, text: str = "x") -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(build, expected, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    import trace_gen.backends

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(trace_gen.backends, "make_backend", _no_model)
    out = tmp_path / "o"
    argv = build(tmp_path, out)
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(out)]
    if argv[0] != "compare" and "--custom" not in argv and "--benchmarks" not in argv:
        argv += ["--benchmarks", "toy"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = _run(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return exit_.code


def _no_model(*args, **kwargs):
    raise AssertionError("a model was loaded before the bad input was caught")


def test_debug_shows_the_traceback(tmp_path):
    from trace_gen.errors import UsageError

    with pytest.raises(UsageError, match="no weight files"):
        main(
            [
                "--model",
                str(_model(tmp_path, drop=("model.safetensors",))),
                "--debug",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )


def test_completion_marker_is_the_one_rule(tmp_path):
    """A directory whose weights are gone is refused, unless its writer declared it complete."""
    model = _model(tmp_path, drop=("model.safetensors",))
    assert "no weight files" in model_dir_problem(model)
    (model / "COMPLETE").write_text("")
    assert model_dir_problem(model) is None
    assert model_dir_problem(TEACHER) is None


def test_an_sft_dir_needs_its_marker_and_a_hub_style_dir_does_not(tmp_path):
    merged = _unfinished_sft(tmp_path)
    problem = model_dir_problem(merged)
    assert "was not finished" in problem and f"--config {merged.parent / 'run_config.yaml'}" in problem
    (merged / "COMPLETE").write_text('{"what": "merged", "step": 4}')
    assert model_dir_problem(merged) is None
    assert model_dir_problem(_model(tmp_path)) is None  # no sft files near it: whole weights suffice


def test_json_array_custom_set_is_read(tmp_path, capsys):
    data = tmp_path / "mine.json"
    data.write_text(
        json.dumps([{"question": "1+1?", "final": 2}, {"question": "2+2?", "final": 4}], indent=2)
    )
    out = tmp_path / "o"
    args = ["--oracle", "--custom", str(data), "--problem-column", "question", "--answer-column", "final"]
    assert main([*args, "--output-dir", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())["benchmarks"]["mine"]
    assert s["n"] == 2 and s["pass@1"] == 1.0
