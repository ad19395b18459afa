"""`python -m trace_gen ... --ray --num-shards K`: the same pipeline, one shard per Ray Data call.

Each of the K shards is exactly the run `--num-shards K --shard-index i --output-dir OUT/shard-0000i`
would do (same prompts, seeds, atomic parts, manifest, resume). Ray Data hands the unfinished shards
to a pool of actors (`map_batches` over `from_items`, one shard per call; `--ray-workers` actors,
default one per unfinished shard, started as the cluster has room), each of which loads the teacher
once and runs shard after shard; what is shipped to them is the typed `RunConfig` of the run. Then
the shards are merged exactly as `python -m trace_gen merge` does. The layout:

    OUT/shard-00000 ... OUT/shard-{K-1}   per-shard runs: the resume state (each resumable alone)
    OUT/merged                            the dataset to pass on: `python -m sft run --traces OUT/merged`

`--n` is the total: shard i is given n // K, plus one if i < n % K. Rerunning the same command
resumes every unfinished shard from its manifest (finished ones are not started again) and rebuilds
OUT/merged (hard links); a different run in the same OUT is refused, a different --n extends or trims
every shard to its new target as a plain rerun does (trace_gen.writer). A worker Ray restarts after a
crash resumes its shard the same way, and a lock file per shard (OUT/shard-XXXXX.lock) makes a second
runner of a shard wait for the first, so neither retries nor a rerun next to workers orphaned by a
killed driver can commit a batch twice. On a cluster every node needs this package installed, and OUT
(and a local --dataset/--teacher) on a shared file system with flock.

Usage:
    python -m trace_gen --backend vllm --teacher Qwen/QwQ-32B --dataset data.jsonl --n 800000 \\
        --engine-args '{"tensor_parallel_size": 4}' --ray --ray-address auto --num-shards 64 \\
        --output-dir /shared/traces
"""

import fcntl
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from trace_gen.config import RunConfig, gpus_per_worker
from trace_gen.errors import BackendError, UsageError
from trace_gen.outdir import PARTIAL
from trace_gen.prompts import PromptRecord
from trace_gen.writer import committed_entries, holds_run, verified_count

SHARD_DIR = "shard-{:05d}"  # OUT/shard-00000: a --shard-index run's --output-dir
LOCK = ".lock"  # OUT/shard-00000.lock: held by the worker running that shard
MERGED = "merged"


def shard_targets(n: int, num_shards: int) -> list[int]:
    """Kept traces wanted per shard: n split as evenly as possible, the first n % K shards one more."""
    return [n // num_shards + (i < n % num_shards) for i in range(num_shards)]


def shard_config(config: RunConfig, index: int, n: int) -> RunConfig:
    """The plain `--shard-index` run that is shard `index` of the --ray run `config`."""
    return config.for_shard(index, n, Path(config.output_dir) / SHARD_DIR.format(index))


def check_out(out: Path, shards: list[RunConfig]) -> None:
    """UsageError unless OUT is new or holds this very --ray run (every shard's run.json matches)."""
    known = {s.output_dir.name for s in shards} | {s.output_dir.name + LOCK for s in shards} | {MERGED}
    if out.is_dir():
        for entry in sorted(out.iterdir()):
            if entry.name not in known and not entry.name.startswith(f".{MERGED}{PARTIAL}"):
                raise UsageError(
                    f"{out} is not the output of a --ray run of {len(shards)} shards (it holds "
                    f"{entry.name}); use a new --output-dir, or the original --num-shards to resume"
                )
    for s in shards:
        holds_run(s.output_dir, s.identity())


def is_done(shard: RunConfig, prompts: list[PromptRecord]) -> bool:
    """True when running the shard would generate nothing: its committed batches hold --n verified
    rows, or it has no batch left (the rerun-with-another---n split is then settled by `settle`)."""
    from trace_gen.pipeline import num_batches

    entries = committed_entries(shard.output_dir)
    return sum(map(verified_count, entries)) >= shard.n or len(entries) >= num_batches(
        prompts, shard.batch_size
    )


def settle(shard: RunConfig) -> None:
    """Bring a finished shard to its (possibly new) --n and rewrite its stats, without a teacher."""
    from trace_gen.pipeline import finish
    from trace_gen.writer import TraceWriter

    with shard_lock(shard.output_dir):
        finish(TraceWriter(shard.output_dir, shard.identity(), shard.keep_rejected, shard.n))


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
    """A Ray Data actor: loads the teacher once, then runs whole shards through `trace_gen.run.generate`."""

    def __init__(self, config: RunConfig):
        from trace_gen.run import load_backend

        self.config = config
        self.backend = load_backend(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from trace_gen.run import generate

        errors = []
        for index, n in zip(batch["shard_index"], batch["n"], strict=True):
            shard = shard_config(self.config, int(index), int(n))
            try:  # bad input or a failing teacher: reported in one line; the other shards go on
                with shard_lock(shard.output_dir):
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


def check_ray_address(address: str | None) -> None:
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


def run_shards(config: RunConfig, todo: list[RunConfig]) -> list[str]:
    """Run the shards on the Ray cluster; returns one line per shard that failed."""
    ray = import_ray()
    gpus = gpus_per_worker(config.backend, config.engine_args, config.ray_gpus_per_worker)
    try:
        ray.init(address=config.ray_address)
    except (ConnectionError, ValueError) as err:
        where = config.ray_address or "the default address"
        raise UsageError(f"could not start or reach Ray at {where}: {err}") from None
    try:
        items = [{"shard_index": s.shard_index, "n": s.n} for s in todo]
        results = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map_batches(
                ShardWorker,
                fn_constructor_kwargs={"config": config},  # the typed run configuration, pickled
                batch_size=1,  # one shard per call
                # started as the cluster has room; one shard in flight per worker, so a free worker
                # never waits behind a busy one
                compute=ray.data.ActorPoolStrategy(
                    size=min(len(items), config.ray_workers or len(items)), max_tasks_in_flight_per_actor=1
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


def run_ray(config: RunConfig, prompts: list[PromptRecord], notes: list[str]) -> dict:
    """Run or resume all shards on Ray, then (re)build OUT/merged; returns the merged stats."""
    import dataclasses

    from trace_gen.merge import merge
    from trace_gen.pipeline import shard
    from trace_gen.run import check_reachable

    import_ray()
    check_ray_address(config.ray_address)
    config = dataclasses.replace(config, output_dir=Path(config.output_dir).resolve())
    targets = shard_targets(config.n, config.num_shards)
    shards = [shard_config(config, i, n) for i, n in enumerate(targets)]
    check_out(config.output_dir, shards)
    check_reachable(config, prompts, "the dataset")
    for note in notes:
        print(note, file=sys.stderr)
    parts = [shard(prompts, config.num_shards, i) for i in range(config.num_shards)]
    done = [is_done(s, p) for s, p in zip(shards, parts, strict=True)]
    for s in (s for s, d in zip(shards, done, strict=True) if d):
        settle(s)
    todo = [s for s, d in zip(shards, done, strict=True) if not d]
    if todo and (failed := run_shards(config, todo)):
        more = f" (and {len(failed) - 1} more failed shards)" if len(failed) > 1 else ""
        raise BackendError(f"{failed[0]}{more}")  # each message says how to fix it; committed batches stay
    merged = config.output_dir / MERGED
    if merged.exists():  # derived data (hard links): rebuilt from the shards on every run
        shutil.rmtree(merged)
    stats = merge(merged, [s.output_dir for s in shards])
    for index, target in enumerate(targets):
        if stats["shards"][str(index)]["kept"] < target:
            kept = stats["shards"][str(index)]["kept"]
            print(f"warning: shard {index} kept {kept} of {target}: its prompts ran out", file=sys.stderr)
    return {**stats, "target": config.n, "output_dir": str(merged), "shards_run": len(todo)}
