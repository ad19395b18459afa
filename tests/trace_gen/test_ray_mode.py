"""`--ray` on a real local Ray cluster (no mocks): the same rows as plain `--shard-index` runs + merge,
a rerun is a no-op, `kill -9` of the driver then a rerun loses nothing and duplicates nothing, and bad
input is one line. The teacher is the committed toy teacher (the default --teacher) on the toy task."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from trace_gen.cli import main
from trace_gen.ray_mode import gpus_per_worker, shard_lock, shard_targets
from trace_gen.writer import committed_entries

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
N, SHARDS = 24, 2
# small batches: each shard commits several parts, so a kill lands between two of them
FLAGS = ["--samples-per-prompt", "4", "--batch-prompts", "2", "--max-new-tokens", "64", "--keep-rejected"]


def ray_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "trace_gen", *FLAGS, "--n", str(N), "--num-shards", str(SHARDS), "--ray",
        "--ray-address", "local", "--out", str(out), *extra,
    ]  # fmt: skip


def kept_keys(out: Path) -> set:
    return {
        (r["prompt_id"], r["sample_idx"])
        for f in out.glob("data/*.parquet")
        for r in pq.read_table(f, columns=["prompt_id", "sample_idx"]).to_pylist()
    }


def manifest_batches(shard: Path) -> list[int]:
    return [e["batch"] for e in committed_entries(shard)]


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """What two plain `--num-shards 2 --shard-index i` runs (n split 12 + 12) and `merge` produce."""
    base = tmp_path_factory.mktemp("plain")
    shards = [base / f"shard-{i}" for i in range(SHARDS)]
    for i, (out, n) in enumerate(zip(shards, shard_targets(N, SHARDS), strict=True)):
        argv = [
            *FLAGS,
            "--n",
            str(n),
            "--num-shards",
            str(SHARDS),
            "--shard-index",
            str(i),
            "--out",
            str(out),
        ]
        assert main(argv) == 0
    assert main(["merge", str(base / "merged"), *map(str, shards)]) == 0
    return base


def test_shard_targets_split_n_evenly():
    assert shard_targets(24, 2) == [12, 12]
    assert shard_targets(10, 4) == [3, 3, 2, 2]
    assert all(sum(shard_targets(n, k)) == n for n in range(1, 40) for k in range(1, n + 1))


def test_gpus_per_worker_follows_the_vllm_engine():
    assert gpus_per_worker("hf", {}, None) == 0
    assert gpus_per_worker("hf", {}, 1) == 1
    assert gpus_per_worker("vllm", {}, None) == 1
    assert gpus_per_worker("vllm", {"tensor_parallel_size": 4}, None) == 4
    assert gpus_per_worker("vllm", {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}, 4) == 4
    assert gpus_per_worker("vllm", {}, 0.5) == 0.5  # two small engines per GPU


def test_a_second_runner_of_a_shard_waits_for_the_first(tmp_path):
    shard = tmp_path / "out" / "shard-00000"
    entered = threading.Event()

    def second():
        with shard_lock(shard):
            entered.set()

    with shard_lock(shard):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.3)  # blocked while the first holds the shard
    assert entered.wait(5)
    thread.join()
    assert not shard.exists()  # the lock lives beside the shard, which stays a clean --out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ray", "--num-shards", "2", "--shard-index", "0"], "drop --shard-index"),
        (["--ray-address", "auto"], "need --ray"),
        (["--ray", "--ray-workers", "0"], "--ray-workers must be positive"),
        (["--ray", "--ray-address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
        (["--ray", "--num-shards", "4", "--n", "3"], "must be at least that"),
        (
            [
                "--ray",
                "--backend",
                "vllm",
                "--engine-args",
                '{"tensor_parallel_size": 2}',
                "--ray-gpus-per-worker",
                "1",
            ],
            "ask for 2 GPUs per engine",
        ),
    ],
    ids=["shard-index", "address-without-ray", "zero-workers", "unreachable", "n-below-shards", "gpus-vs-tp"],
)
def test_bad_ray_flags_are_one_line(tmp_path, capsys, argv, message):
    pytest.importorskip("ray")
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_without_ray_installed_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # `import ray` raises ImportError, as when absent
    assert main(["--ray", "--num-shards", "2", "--out", str(tmp_path / "o")]) == 2
    assert "pip install '.[ray]'" in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_help_documents_the_ray_flags():
    proc = subprocess.run(
        [sys.executable, "-m", "trace_gen", "--help"], capture_output=True, text=True, env=ENV
    )
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    for flag in ("--ray ", "--ray-address", "--ray-gpus-per-worker", "--ray-workers", "n // K"):
        assert flag in help_text, flag


@pytest.mark.integration
def test_ray_run_equals_plain_shards_merged_and_rerun_is_a_no_op(rows, plain, tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    # one worker: it loads the teacher once and runs shard 0, then shard 1 (the kill test runs two)
    proc = subprocess.run(
        ray_cmd(out, "--ray-workers", "1"), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["kept"] == N and stats["out"] == str(out / "merged") and stats["shards_run"] == SHARDS
    expected = rows(plain / "merged")
    assert rows(out / "merged") == expected  # same keys, same completions (kept and rejected)
    assert len(kept_keys(out / "merged")) == N
    for i in range(SHARDS):  # each shard is exactly the plain --shard-index run
        assert rows(out / f"shard-{i:05d}") == rows(plain / f"shard-{i}")
    manifests = {i: manifest_batches(out / f"shard-{i:05d}") for i in range(SHARDS)}

    rerun = subprocess.run(ray_cmd(out), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]  # the worker count is placement, not identity
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["shards_run"] == 0  # nothing left to do
    assert rows(out / "merged") == expected
    assert {i: manifest_batches(out / f"shard-{i:05d}") for i in range(SHARDS)} == manifests

    # another run in the same OUT is refused by the shards' run identity, before Ray starts
    assert main([*ray_cmd(out)[3:], "--seed", "1"]) == 2
    assert "differs in: sampling" in error_line(capsys)
    (out / "notes.txt").write_text("x")
    assert main(ray_cmd(out)[3:]) == 2
    assert "is not the output of a --ray run of 2 shards" in error_line(capsys)


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `pid`, from /proc (start time guards pid reuse)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, _start_time(child)))
            todo.append(child)
    return found


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return ""


@pytest.mark.integration
def test_kill_9_of_the_driver_then_rerun_completes_without_duplicates(rows, plain, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        ray_cmd(out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while not any(m.read_text() for m in out.glob("shard-*/manifest.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    ray_processes = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        assert sum(len(manifest_batches(out / f"shard-{i:05d}")) for i in range(SHARDS)) >= 1
        assert not (out / "merged").exists()
        assert len(kept_keys(out / "shard-00000") | kept_keys(out / "shard-00001")) < N, (
            "kill landed too late"
        )

        # at once: workers orphaned by the kill may still be finishing a batch; the shard locks serialise them
        rerun = subprocess.run(ray_cmd(out), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert rows(out / "merged") == rows(plain / "merged")  # the complete set, no duplicate keys
        for i in range(SHARDS):
            batches = manifest_batches(out / f"shard-{i:05d}")
            assert len(batches) == len(set(batches)), f"shard {i} committed a batch twice: {batches}"
        assert not list(out.rglob("*.tmp"))
    finally:  # Ray's agents can outlive a SIGKILLed driver: end those of the killed run, by pid
        for pid, started in ray_processes:
            if started and _start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
def test_a_failing_teacher_is_one_line_and_nothing_is_merged(tmp_path):
    pytest.importorskip("ray")
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(8))
    )
    out = tmp_path / "out"
    backend = [
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--teacher",
        "m",
        "--max-retries",
        "0",
    ]
    cmd = [*ray_cmd(out), *backend, "--dataset", str(data)]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert (
        "shard 0: " in errors[0] and "127.0.0.1:9" in errors[0] and "(and 1 more failed shards)" in errors[0]
    )
    assert not (out / "merged").exists() and not list(out.rglob("part-*"))
