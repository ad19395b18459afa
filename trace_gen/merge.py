"""`python -m trace_gen merge OUT SHARD_DIR...`: join the shards of one run into one dataset.

Each shard directory must hold the same run (run.json equal except for the shard index) and the
shard indices must cover 0..K-1 exactly once. The parts of each shard's committed batches (per its
manifest; its unused rows past --n are not part of the dataset) are hard-linked (copied across file
systems) into OUT/data/ as train-s{shard}-{batch}.parquet (rejected ones under OUT/rejected/ as
part-s{shard}-{batch}.parquet), with a dataset card, so `datasets.load_dataset(OUT)` loads it;
uncommitted leftovers are ignored. The (prompt_id, sample_idx) keys are checked to be unique across
shards. OUT is built in a hidden temporary sibling and renamed at the end (trace_gen.outdir), so an
interrupted merge leaves no OUT, and its temporary directory is removed by the next merge. Prints and
writes OUT/stats.json. `--push-to-hub REPO` then uploads OUT as a hub dataset.

Usage:
    python -m trace_gen merge runs/traces runs/traces-shard-* [--push-to-hub user/traces]
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from trace_gen.dataset import DATA_DIR, REJECTED_DIR, kept_part, rejected_part, write_card
from trace_gen.errors import UsageError
from trace_gen.outdir import building, check_writable
from trace_gen.writer import RUN_FILE, STATS, committed_entries, summarize


def _read_shard(path: Path) -> tuple[dict, list[dict]]:
    if not (path / RUN_FILE).is_file():
        raise UsageError(f"{path} is not a trace_gen output directory (no {RUN_FILE})")
    return json.loads((path / RUN_FILE).read_text()), committed_entries(path)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _check_shards(shard_dirs: list[Path]) -> tuple[dict, dict]:
    """({index: (path, identity, entries)}, the identity without its shard) of shards that make one run."""
    shards = {}
    for path in shard_dirs:
        identity, entries = _read_shard(path)
        index = identity["shard"][0]
        if index in shards:
            raise UsageError(f"shard {index} given twice: {shards[index][0]} and {path}")
        shards[index] = (path, identity, entries)
    counts = {ident["shard"][1] for _, ident, _ in shards.values()}
    if len(counts) != 1:
        raise UsageError(f"shards come from different --num-shards values: {sorted(counts)}")
    (num_shards,) = counts
    missing = sorted(set(range(num_shards)) - set(shards))
    if missing:
        raise UsageError(f"missing shard(s) {missing} of {num_shards}; finish them first")
    base = {k: v for k, v in shards[0][1].items() if k != "shard"}
    for index, (path, identity, _) in sorted(shards.items()):
        differs = sorted(k for k in set(base) | set(identity) - {"shard"} if base.get(k) != identity.get(k))
        if differs:
            raise UsageError(
                f"{path} (shard {index}) is a different run from shard 0 (differs in: {', '.join(differs)})"
            )
    return shards, base


def merge(out: Path, shard_dirs: list[Path]) -> dict:
    out = Path(out)
    check_writable(out, "merge OUT")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; merge into a new directory")
    shards, base = _check_shards(shard_dirs)
    with building(out) as tmp:
        (tmp / DATA_DIR).mkdir()
        (tmp / REJECTED_DIR).mkdir()
        keys: set[tuple[str, int]] = set()
        per_shard, all_entries = {}, []
        for index, (path, _, entries) in sorted(shards.items()):
            active = [e for e in entries if e["active"]]
            for e in active:
                for part in e["parts"]:
                    if part.startswith(f"{REJECTED_DIR}/"):
                        name = rejected_part(f"s{index:05d}-{e['batch']:06d}")
                    elif part.startswith(f"{DATA_DIR}/") or "/" not in part:
                        name = kept_part(f"s{index:05d}-{e['batch']:06d}")
                    else:
                        continue  # unused rows past the shard's --n are not part of the dataset
                    table = pq.read_table(path / part, columns=["prompt_id", "sample_idx"])
                    for key in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
                        if key in keys:
                            raise UsageError(f"duplicate row {key} in {path / part}: shards overlap")
                        keys.add(key)
                    _link(path / part, tmp / name)
            per_shard[str(index)] = {k: v for k, v in summarize(entries).items() if isinstance(v, int)}
            all_entries += entries
        stats = {**summarize(all_entries), "num_shards": len(shards), "shards": per_shard}
        (tmp / STATS).write_text(json.dumps(stats, indent=2))
        (tmp / RUN_FILE).write_text(json.dumps({**base, "shard": "merged"}, indent=2, sort_keys=True))
        write_card(tmp, base, stats, with_rejected=any((tmp / REJECTED_DIR).iterdir()))
    return stats


def make_parser() -> argparse.ArgumentParser:
    from trace_gen.cli import add_flag, new_parser

    p = new_parser("python -m trace_gen merge", __doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="new directory for the merged dataset")
    p.add_argument("shards", type=Path, nargs="+", help="the shard output directories")
    add_flag(
        p, ("--push-to-hub",), default=None, metavar="REPO", help="then upload OUT as the hub dataset REPO"
    )
    add_flag(
        p, ("--debug",), action="store_true", help="print the full traceback instead of the one-line error"
    )
    return p
