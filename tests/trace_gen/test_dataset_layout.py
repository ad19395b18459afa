"""A trace directory is a Hugging Face dataset: after a real run (the committed toy teacher on the toy
task) `datasets.load_dataset(OUT)` gives the kept rows and `load_dataset(OUT, data_dir="rejected")`
the rest, with the numbers of stats.json in the card, also for a second directory of the same name and
after a resume added rows (datasets' cache must not serve stale rows); sft and `filter` read it; a directory of the older layout
(parts at the top level) is still read. `--push-to-hub`: there is no hub here, so the upload is
exercised up to the network boundary: the real huggingface_hub call with its file selection is
captured, a real unreachable endpoint fails in one line (the traces stay, a rerun pushes again
without generating), and offline mode is refused before any work."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from trace_gen.cli import main

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--n", "6", "--samples-per-prompt", "2", "--batch-prompts", "4", "--temperature", "1.0"]
FLAGS += ["--keep-rejected", "--backend", "hf", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traces") / "out"
    assert main([*FLAGS, "--out", str(out)]) == 0
    return out


def card_numbers(out: Path) -> dict:
    """The stats table of the dataset card (header row, then values)."""
    rows = [line for line in (out / "README.md").read_text().splitlines() if line.startswith("| ")]
    keys = [k.strip() for k in rows[0].strip("|").split("|")]
    values = [v.strip() for v in rows[1].strip("|").split("|")]
    return dict(zip(keys, values, strict=True))


def test_load_dataset_on_the_directory(run_dir):
    stats = json.loads((run_dir / "stats.json").read_text())
    kept = load_dataset(str(run_dir), split="train")
    rejected = load_dataset(str(run_dir), data_dir="rejected", split="train")
    assert len(kept) == stats["kept"] == 6 and len(rejected) == stats["rejected"] > 0
    assert set(kept["verdict"]) == {"correct"} and "correct" not in set(rejected["verdict"]) - {"correct"}
    assert {"messages", "reasoning", "answer", "completion", "prefill"} <= set(kept.column_names)
    numbers = card_numbers(run_dir)
    assert {k: numbers[k] for k in ("kept", "rejected", "prompts")} == {
        k: str(stats[k]) for k in ("kept", "rejected", "prompts")
    }
    assert not list(run_dir.glob("*.parquet"))  # parts only under data/ and rejected/


def test_same_name_and_resumed_directories_load_their_own_rows(run_dir, tmp_path):
    """datasets caches a local directory under its base name: with YAML `configs:` in the card it
    served the first directory's rows for a second `out/` and stale rows after a resume."""
    other = tmp_path / "b" / run_dir.name
    flags = [f if f != "6" else "2" for f in FLAGS]  # --n 2
    assert main([*flags, "--out", str(other)]) == 0
    assert len(load_dataset(str(run_dir), split="train")) == 6
    assert len(load_dataset(str(other), split="train")) == 2
    assert main([*FLAGS, "--out", str(other)]) == 0  # resumes (the same run) up to --n 6
    assert len(load_dataset(str(other), split="train")) == 6


def test_sft_and_filter_read_the_layout(run_dir, tmp_path, capsys):
    from sft.data import load_traces

    assert len(load_traces(str(run_dir), ["correct"])) == 6
    assert len(load_traces(str(run_dir), ["all"], include_rejected=True)) == 6 + len(
        load_dataset(str(run_dir), data_dir="rejected", split="train")
    )
    capsys.readouterr()
    assert main(["filter", str(run_dir), str(tmp_path / "f"), "--no-require-think"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rows"] == 6


def test_older_layout_is_still_read(run_dir, tmp_path):
    from sft.data import load_traces
    from trace_gen.dataset import trace_parts

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for part in (old / "data").glob("*.parquet"):
        part.rename(old / part.name)
    (old / "data").rmdir()
    (old / "README.md").unlink()
    assert len(trace_parts(old)) == len(trace_parts(run_dir)) > 0
    assert len(load_traces(str(old), ["correct"])) == 6


def test_offline_push_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "o"
    assert main([*FLAGS, "--out", str(out), "--push-to-hub", "me/traces"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "HF_HUB_OFFLINE" in err[0]
    assert not out.exists()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert main([*FLAGS, "--out", str(out), "--push-to-hub", "not a repo id"]) == 2
    assert "is not a hub repo id" in capsys.readouterr().err
    assert main([*FLAGS, "--out", str(out), "--push-to-hub", "me/t", "--num-shards", "2"]) == 2
    assert "push the merged dataset" in capsys.readouterr().err


def test_push_uploads_the_dataset_files(tmp_path, capsys, monkeypatch):
    """The real HfApi call, captured at the network boundary (no hub here), and the files it selects."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import filter_repo_objects

    calls = {}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw))
    )
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.setdefault("upload", kw))
    out = tmp_path / "o"
    assert main([*FLAGS, "--out", str(out), "--push-to-hub", "me/traces"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["pushed_to"].endswith("/datasets/me/traces")
    assert calls["create"] == ("me/traces", {"repo_type": "dataset", "exist_ok": True})
    upload = calls["upload"]
    assert upload["repo_id"] == "me/traces" and upload["repo_type"] == "dataset"
    assert Path(upload["folder_path"]) == out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    sent = sorted(filter_repo_objects(files, allow_patterns=upload["allow_patterns"]))
    assert sent == sorted(f for f in files if f != "manifest.jsonl")
    assert "README.md" in sent and any(re.fullmatch(r"data/train-\d+\.parquet", f) for f in sent)

    # A real endpoint nobody answers: one line, the traces stay, and a rerun (nothing left to
    # generate) tries the push again.
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_x"}
    env |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    manifest = (out / "manifest.jsonl").read_text()
    cmd = [sys.executable, "-m", "trace_gen", *FLAGS, "--out", str(out), "--push-to-hub", "me/traces"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "127.0.0.1:9" in errors[0] and "rerun the same command to push again" in errors[0]
    assert (out / "manifest.jsonl").read_text() == manifest  # nothing generated again
    assert len(load_dataset(str(out), split="train")) == 6
