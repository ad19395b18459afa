"""Bad input, as a new user types it: exit 2, exactly one line on stderr naming the problem and the
fix, and nothing written (a fresh --output-dir is not created, an existing one is left as it was).
Every case runs before a teacher loads. The table in `CASES` is the list reported in issue #15."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trace_gen.cli import main, make_parser
from trace_gen.config import TOY_TEACHER

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def jsonl(tmp: Path, rows: list, name: str = "d.jsonl") -> Path:
    return write(tmp / name, "".join(json.dumps(r) + "\n" for r in rows))


def teacher_copy(tmp: Path, keep: tuple[str, ...]) -> Path:
    out = tmp / "teacher"
    out.mkdir()
    for name in keep:
        (out / name).write_bytes((TOY_TEACHER / name).read_bytes())
    return out


def no_tokenizer(tmp):
    return ["--teacher", str(teacher_copy(tmp, ("config.json", "model.safetensors")))]


def no_chat_template(tmp):
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return ["--teacher", str(teacher_copy(tmp, files))]


def zero_row_parquet(tmp):
    table = pa.table({"problem": pa.array([], pa.string()), "answer": pa.array([], pa.string())})
    pq.write_table(table, tmp / "empty.parquet")
    return ["--dataset", str(tmp / "empty.parquet")]


def json_array_of_strings(tmp):
    return ["--dataset", str(write(tmp / "d.json", json.dumps(["1+1?", "2+2?"])))]


def empty_problems(tmp):
    return ["--dataset", str(jsonl(tmp, [{"problem": "", "answer": "1"}, {"problem": "  ", "answer": "2"}]))]


def empty_answers(tmp):
    return ["--dataset", str(jsonl(tmp, [{"problem": "1+1?", "answer": ""}, {"problem": "2+2?"}]))]


def empty_ids(tmp):
    rows = [{"id": "a", "problem": "1+1?", "answer": "2"}, {"id": None, "problem": "2+2?", "answer": "4"}]
    return ["--dataset", str(jsonl(tmp, rows)), "--id-column", "id"]


def n_beyond_dataset(tmp):
    rows = [{"problem": f"{i}+1?", "answer": str(i + 1)} for i in range(3)]
    return ["--dataset", str(jsonl(tmp, rows)), "--samples-per-prompt", "2", "--n", "10"]


def missing_column(tmp):
    return ["--dataset", str(jsonl(tmp, [{"question": "1+1?", "answer": "2"}]))]


def bad_json_line(tmp):
    return [
        "--dataset",
        str(write(tmp / "d.jsonl", json.dumps({"problem": "a", "answer": "1"}) + "\n{broken\n")),
    ]


def not_utf8(tmp):
    (tmp / "d.jsonl").write_bytes(b'{"problem": "caf\xe9", "answer": "1"}\n')
    return ["--dataset", str(tmp / "d.jsonl")]


def dataset_dict_dir(tmp):
    write(tmp / "dd" / "dataset_dict.json", '{"splits": ["train"]}')
    return ["--dataset", str(tmp / "dd")]


def output_is_a_file(tmp):
    return ["--output-dir", str(write(tmp / "afile", "x"))]


def output_under_a_file(tmp):
    return ["--output-dir", str(write(tmp / "afile", "x") / "sub")]


def another_run_in_output(tmp):
    out = tmp / "o"
    write(out / "run.json", json.dumps({"teacher": "someone else"}))
    return ["--output-dir", str(out)]


def foreign_output(tmp):
    write(tmp / "o" / "notes.txt", "mine")
    return []


CASES = [
    # (id, argv or argv builder, text the one line must contain)
    ("teacher-without-tokenizer", no_tokenizer, "has no tokenizer"),
    ("teacher-without-chat-template", no_chat_template, "has no chat template"),
    ("teacher-missing", ["--teacher", "./nope"], "teacher not found"),
    (
        "hub-id-offline",
        ["--teacher", "Qwen/Qwen2.5-0.5B-Instruct"],
        "not in the local hub cache and HF_HUB_OFFLINE",
    ),
    ("vllm-not-installed", ["--backend", "vllm"], "vLLM is not installed"),
    ("output-is-a-file", output_is_a_file, "is a file, not a directory"),
    ("output-under-a-file", output_under_a_file, "cannot be created"),
    ("output-holds-another-run", another_run_in_output, "holds a different run"),
    ("output-not-a-trace-dir", foreign_output, "is not a trace_gen output"),
    ("temperature-negative", ["--temperature", "-1"], "--temperature must be >= 0"),
    ("batch-size-zero", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("top-p-above-1", ["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    ("max-new-tokens-zero", ["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    ("n-zero", ["--n", "0"], "--n must be at least 1"),
    ("seed-negative", ["--seed", "-1"], "--seed must be >= 0"),
    ("stop-empty", ["--stop", ""], "--stop '' would stop at once"),
    ("shard-index-outside", ["--num-shards", "2", "--shard-index", "2"], "outside 0..1"),
    ("logprobs-without-vllm", ["--backend", "hf", "--logprobs", "5"], "--logprobs needs --backend vllm"),
    ("device-unknown", ["--device", "gpu"], "not one of auto, cpu, cuda, cuda:N"),
    ("engine-args-not-json", ["--engine-args", "{tensor_parallel_size: 2}"], "not valid JSON"),
    ("dtype-unknown", ["--dtype", "fp8"], "invalid choice: 'fp8'"),
    ("unknown-flag", ["--temprature", "0.7"], "unrecognized arguments: --temprature"),
    ("zero-row-parquet", zero_row_parquet, "has no rows"),
    ("json-array-of-strings", json_array_of_strings, "row 1 is str, not an object"),
    ("all-problems-empty", empty_problems, "column 'problem' (--problem-column) is empty in every row"),
    ("all-answers-empty", empty_answers, "column 'answer' (--answer-column) is empty in every row"),
    ("ids-missing", empty_ids, "column 'id' (--id-column) is empty in 1 of 2 rows"),
    ("n-beyond-the-dataset", n_beyond_dataset, "--n 10 cannot be reached"),
    ("missing-column", missing_column, "no column 'problem'"),
    ("bad-json-line", bad_json_line, "d.jsonl:2 is not valid JSON"),
    ("not-utf8", not_utf8, "not UTF-8"),
    ("dataset-dict-dir", dataset_dict_dir, "is a DatasetDict"),
    ("dataset-path-missing", ["--dataset", "./nope.jsonl"], "dataset file not found"),
    ("dataset-dir-unreadable", ["--dataset", "./nope"], "cannot read dataset"),
]


def files_under(path: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))} if path.exists() else {}


@pytest.mark.parametrize(("builder", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(builder, message, tmp_path, capsys):
    if message == "vLLM is not installed" and importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this environment")
    work = tmp_path / "work"
    work.mkdir()
    argv = builder(work) if callable(builder) else list(builder)
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(work / "o")]
    if "--backend" not in argv:
        argv += ["--backend", "hf"]  # no auto-pick note: the error must be the only line
    before = files_under(work)
    capsys.readouterr()
    assert main([*argv, "--max-new-tokens", "8"] if "--max-new-tokens" not in argv else argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert files_under(work) == before  # nothing written, nothing removed


def test_the_table_as_a_user_sees_it(tmp_path):
    """Two cases end to end in a fresh process: the whole stderr is the one line, exit 2."""
    for argv in (["--temperature", "-1"], ["--teacher", "Qwen/Qwen2.5-0.5B-Instruct"]):
        cmd = [
            sys.executable,
            "-m",
            "trace_gen",
            *argv,
            "--backend",
            "hf",
            "--output-dir",
            str(tmp_path / "o"),
        ]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and not proc.stdout
        assert not (tmp_path / "o").exists()


def test_a_json_array_of_rows_is_read(tmp_path, capsys):
    data = write(
        tmp_path / "d.json", json.dumps([{"problem": f"{i}+1?", "answer": str(i + 1)} for i in range(3)])
    )
    argv = ["--dataset", str(data), "--n", "100", "--backend", "hf", "--output-dir", str(tmp_path / "o")]
    assert main(argv) == 2  # the rows were read and checked: the error is about --n, not the file
    assert "3 usable prompts" in capsys.readouterr().err


@pytest.mark.parametrize("sub", [[], ["merge"], ["filter"]])
def test_help(sub):
    proc = subprocess.run([sys.executable, "-m", "trace_gen", *sub, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage" in proc.stdout.lower()


def test_help_is_grouped_with_each_default_once_and_imports_nothing_heavy():
    code = (
        "import sys, contextlib, io\n"
        "from trace_gen.cli import make_parser\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n        make_parser().parse_args(['--help'])\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'vllm', 'datasketch', 'math_verify')"
        " if m in sys.modules))\n"
        "print(buf.getvalue())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    heavy, _, text = proc.stdout.partition("\n")
    assert heavy == "[]", heavy  # --help returns before any of these is imported (< 2 s on a cold disk)
    flat = " ".join(text.split())
    entries = re.split(r"\n  (?=-)", text)  # one per flag
    assert "(default: None)" not in flat and all(e.count("(default:") <= 1 for e in entries)
    for group in ("teacher and problems:", "output:", "sampling", "generation backend:", "OpenAI-compatible",
                  "inline checks", "throughput and scale-out:", "Ray cluster", "debugging:"):  # fmt: skip
        assert group in text, group
    for old in ("--out ", "--batch-prompts", "--output_dir", "--model "):
        assert old not in flat, old  # old and underscore spellings are hidden aliases
    assert "--seed SEED base seed; each batch's seed is recorded in `sampling` (default: 0)" in flat


def test_old_and_underscore_spellings_are_aliases():
    new = make_parser().parse_args(
        ["--output-dir", "o", "--teacher", "t", "--batch-size", "3", "--top-p", "0.5"]
    )
    old = make_parser().parse_args(["--out", "o", "--model", "t", "--batch-prompts", "3", "--top_p", "0.5"])
    under = make_parser().parse_args(
        ["--output_dir", "o", "--teacher", "t", "--batch_size", "3", "--top-p", "0.5"]
    )
    assert vars(new) == vars(old) == vars(under)
    assert make_parser().parse_args(["--out", "x"]).trust_remote_code is False  # remote code only when asked


def test_deprecated_spelling_is_noted_once(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--temperature", "-1", "--backend", "hf"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "note: --out is now --output-dir (the old spelling works until the next release)"
    assert err[1].startswith("error: --temperature") and len(err) == 2


def test_unreachable_server_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = jsonl(tmp_path, [{"problem": "1+1?", "answer": "2"}])
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
    argv += ["--dataset", str(data), "--output-dir", str(tmp_path / "o"), "--allow-short"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    assert "cannot reach the teacher server at http://127.0.0.1:9/v1 (connection refused)" in err[0]
    assert not (tmp_path / "o").exists()  # failed before its first commit: nothing to block the rerun


def test_filter_subcommand(tiny_teacher, tmp_path, capsys):
    data = jsonl(tmp_path, [{"problem": f"Eve has {i} shells.", "answer": "1"} for i in range(3)])
    traces = tmp_path / "traces"
    argv = ["--teacher", str(tiny_teacher), "--dataset", str(data), "--output-dir", str(traces)]
    argv += ["--max-new-tokens", "8", "--samples-per-prompt", "1", "--keep-rejected", "--n", "3"]
    assert main([*argv, "--allow-short"]) == 0
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
    assert not list(tmp_path.glob(".f.partial-*"))  # built aside, renamed whole
    assert main(["filter", str(tmp_path / "nothing"), str(tmp_path / "g")]) == 2
    assert "no Parquet parts" in capsys.readouterr().err
    assert main(["filter", str(rejected), str(tmp_path / "f")]) == 2  # into a non-empty directory
    assert "is not empty" in capsys.readouterr().err
    assert main(["filter", str(rejected), str(tmp_path / "h"), "--keep-flagged"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["config"]["drop_flagged"] is False


def test_output_dir_is_required_in_one_line(capsys):
    assert main(["--backend", "hf", "--n", "3"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "error: --output-dir is required: the directory the traces go to"


def test_subcommands_take_underscore_spellings_too(tmp_path, capsys):
    from trace_gen.filter_cli import make_parser as filter_parser

    args = filter_parser().parse_args(["in", "out", "--keep_verdicts", "wrong", "--no_require_think"])
    assert args.keep_verdicts == ["wrong"] and args.require_think is False
    assert main(["merge", str(tmp_path / "m"), str(tmp_path / "nope"), "--push_to_hub", "x y"]) == 2
    assert "is not a hub repo id" in capsys.readouterr().err


def test_debug_gives_the_traceback_instead(tmp_path):
    from trace_gen.errors import UsageError

    with pytest.raises(UsageError, match="--temperature must be >= 0"):
        main(["--temperature", "-1", "--backend", "hf", "--output-dir", str(tmp_path / "o"), "--debug"])
