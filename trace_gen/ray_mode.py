"""`python -m trace_gen ... --ray --num-shards K`: the same pipeline, one shard per Ray Data call.

Each of the K shards is exactly the run `--num-shards K --shard-index i --out OUT/shard-0000i` would
do (same prompts, seeds, atomic parts, manifest, resume). Ray Data hands the unfinished shards to a
pool of actors (`map_batches` over `from_items`, one shard per call; `--ray-workers` actors, default
one per unfinished shard, started as the cluster has room), each of which loads the teacher once and
runs shard after shard. Then the shards are merged exactly as `python -m trace_gen merge` does. The
layout:

    OUT/shard-00000 ... OUT/shard-{K-1}   per-shard runs: the resume state (each resumable alone)
    OUT/merged                            the dataset to pass on: `python -m sft run --traces OUT/merged`

`--n` is the total: shard i is given n // K, plus one if i < n % K. Rerunning the same command
resumes every unfinished shard from its manifest (finished ones are not started again) and rebuilds
OUT/merged (hard links); a different run in the same OUT is refused. A worker Ray restarts after a
crash resumes its shard the same way, and a lock file per shard (OUT/shard-XXXXX.lock) makes a second
runner of a shard wait for the first, so neither retries nor a rerun next to workers orphaned by a
killed driver can commit a batch twice. On a cluster every node needs this package installed, and OUT
(and a local --dataset/--teacher) on a shared file system with flock.

Usage:
    python -m trace_gen --backend vllm --teacher Qwen/QwQ-32B --dataset data.jsonl --n 800000 \\
        --engine-args '{"tensor_parallel_size": 4}' --ray --ray-address auto --num-shards 64 --out /shared/traces
"""

import argparse
import fcntl
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from trace_gen.errors import BackendError, UsageError
from trace_gen.writer import committed_entries, holds_run

SHARD_DIR = "shard-{:05d}"  # OUT/shard-00000: a --shard-index run's --out
LOCK = ".lock"  # OUT/shard-00000.lock: held by the worker running that shard
MERGED = "merged"


def shard_targets(n: int, num_shards: int) -> list[int]:
    """Kept traces wanted per shard: n split as evenly as possible, the first n % K shards one more."""
    return [n // num_shards + (i < n % num_shards) for i in range(num_shards)]


def shard_args(args: argparse.Namespace, index: int, n: int) -> argparse.Namespace:
    """The flags of the plain `--shard-index` run that is shard `index` of this --ray run."""
    return argparse.Namespace(
        **{
            **vars(args),
            "ray": False,
            "ray_address": None,
            "ray_gpus_per_worker": None,
            "ray_workers": None,
            "push_to_hub": None,  # the driver pushes OUT/merged once, after the merge
            "shard_index": index,
            "n": n,
            "out": Path(args.out) / SHARD_DIR.format(index),
        }
    )


def gpus_per_worker(backend: str, engine_args: dict, requested: float | None) -> float:
    """GPUs Ray reserves per actor: vLLM needs one per engine rank (tensor x pipeline parallel)."""
    if backend != "vllm":
        return requested or 0.0
    ranks = engine_args.get("tensor_parallel_size", 1) * engine_args.get("pipeline_parallel_size", 1)
    if requested is None:
        return float(ranks)
    if ranks > 1 and requested != ranks:
        raise UsageError(
            f"--engine-args ask for {ranks} GPUs per engine (tensor x pipeline parallel) but "
            f"--ray-gpus-per-worker is {requested:g}; make them equal (or drop --ray-gpus-per-worker)"
        )
    return requested


def check_out(out: Path, shards: list[argparse.Namespace]) -> None:
    """UsageError unless OUT is new or holds this very --ray run (every shard's run.json matches)."""
    from trace_gen.cli import run_identity, sampling_config

    known = {s.out.name for s in shards} | {s.out.name + LOCK for s in shards} | {MERGED}
    if out.is_dir():
        for entry in sorted(out.iterdir()):
            if entry.name not in known and not entry.name.startswith(f".{MERGED}.merging-"):
                raise UsageError(
                    f"{out} is not the output of a --ray run of {len(shards)} shards (it holds "
                    f"{entry.name}); use a new --out directory, or the original --num-shards to resume"
                )
    for s in shards:
        holds_run(s.out, run_identity(s, sampling_config(s)))


def is_done(shard: argparse.Namespace) -> bool:
    return sum(e["kept"] for e in committed_entries(shard.out)) >= shard.n


@contextmanager
def shard_lock(shard_out: Path) -> Iterator[None]:
    """Held while a worker runs the shard: a second runner of the same shard (a worker still finishing
    its batch after its driver was killed, or a concurrent rerun) waits, then resumes from the manifest
    instead of committing the same batch twice. The OS releases it when the holder dies."""
    shard_out.parent.mkdir(parents=True, exist_ok=True)
    with open(shard_out.with_name(shard_out.name + LOCK), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


class ShardWorker:
    """A Ray Data actor: loads the teacher once, then runs whole shards through `cli.generate`."""

    def __init__(self, args: argparse.Namespace):
        from trace_gen.backends import make_backend
        from trace_gen.cli import backend_options

        self.args = args
        self.backend = make_backend(
            args.backend, args.teacher, args.batch_prompts, args.trust_remote_code, **backend_options(args)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from trace_gen.cli import generate

        errors = []
        for index, n in zip(batch["shard_index"], batch["n"], strict=True):
            shard = shard_args(self.args, int(index), int(n))
            try:  # bad input or a failing teacher: reported in one line; the other shards go on
                with shard_lock(shard.out):
                    generate(shard, self.backend)
                errors.append("")
            except (UsageError, BackendError) as err:
                errors.append(str(err))
        return {"shard_index": list(batch["shard_index"]), "error": errors}


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise UsageError(f"--ray needs Ray Data ({err}): pip install '.[ray]'") from None
    return ray


def check_reachable(address: str | None) -> None:
    """A HOST:PORT nobody listens on is one line here; ray.init would retry it for minutes."""
    host, _, port = (address or "").rpartition(":")
    if "://" in (address or "") or not port.isdigit():
        return  # None, 'auto', 'local' and ray:// are Ray's to resolve
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise UsageError(
            f"no Ray cluster answers at {address} ({err}); start one (`ray start --head`) or fix --ray-address"
        ) from None


def run_shards(args: argparse.Namespace, todo: list[argparse.Namespace]) -> list[str]:
    """Run the shards on the Ray cluster; returns one line per shard that failed."""
    ray = import_ray()
    gpus = gpus_per_worker(args.backend, args.engine_args, args.ray_gpus_per_worker)
    try:
        ray.init(address=args.ray_address)
    except (ConnectionError, ValueError) as err:
        where = args.ray_address or "the default address"
        raise UsageError(f"could not start or reach Ray at {where}: {err}") from None
    try:
        items = [{"shard_index": s.shard_index, "n": s.n} for s in todo]
        results = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map_batches(
                ShardWorker,
                fn_constructor_kwargs={"args": args},
                batch_size=1,  # one shard per call
                # started as the cluster has room; one shard in flight per worker, so a free worker
                # never waits behind a busy one
                compute=ray.data.ActorPoolStrategy(
                    size=min(len(items), args.ray_workers or len(items)), max_tasks_in_flight_per_actor=1
                ),
                num_gpus=gpus or None,
            )
            .take_all()
        )
    finally:
        ray.shutdown()
    return [
        f"shard {r['shard_index']}: {r['error']}"
        for r in sorted(results, key=lambda r: int(r["shard_index"]))
        if r["error"]
    ]


def run_ray(args: argparse.Namespace) -> dict:
    """Run or resume all shards on Ray, then (re)build OUT/merged; returns the merged stats."""
    from trace_gen.cli import load_prompts
    from trace_gen.merge import merge

    import_ray()
    check_reachable(args.ray_address)
    args = argparse.Namespace(**{**vars(args), "out": Path(args.out).resolve()})
    targets = shard_targets(args.n, args.num_shards)
    shards = [shard_args(args, i, n) for i, n in enumerate(targets)]
    check_out(args.out, shards)
    load_prompts(args)  # bad data fails here, in one line, before any worker starts
    todo = [s for s in shards if not is_done(s)]
    if todo and (failed := run_shards(args, todo)):
        more = f" (and {len(failed) - 1} more failed shards)" if len(failed) > 1 else ""
        raise BackendError(f"{failed[0]}{more}")  # each message says how to fix it; committed batches stay
    merged = args.out / MERGED
    for old in [*args.out.glob(f".{MERGED}.merging-*"), merged]:
        if old.exists():  # merged is derived data (hard links): rebuilt from the shards on every run
            shutil.rmtree(old)
    stats = merge(merged, [s.out for s in shards])
    for index, target in enumerate(targets):
        if stats["shards"][str(index)]["kept"] < target:
            kept = stats["shards"][str(index)]["kept"]
            print(f"warning: shard {index} kept {kept} of {target}: its prompts ran out", file=sys.stderr)
    return {**stats, "out": str(merged), "shards_run": len(todo)}
