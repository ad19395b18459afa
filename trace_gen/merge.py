"""`python -m trace_gen merge OUT SHARD_DIR...`: join the shards of one run into one dataset.

Each shard directory must hold the same run (run.json equal except for the shard index) and the
shard indices must cover 0..K-1 exactly once. Committed parts (per the manifests) are hard-linked
(copied across file systems) into OUT/data/ as train-s{shard}-{batch}.parquet (rejected ones under
OUT/rejected/ as part-s{shard}-{batch}.parquet), with a dataset card, so `datasets.load_dataset(OUT)` loads it; uncommitted leftovers
are ignored. The (prompt_id, sample_idx) keys are checked to
be unique across shards. OUT is built in a temporary sibling directory and renamed at the end, so
an interrupted merge leaves nothing behind. Prints and writes OUT/stats.json. `--push-to-hub REPO`
then uploads OUT as a hub dataset.

Usage:
    python -m trace_gen merge runs/traces runs/traces-shard-* [--push-to-hub user/traces]
"""

import argparse
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from trace_gen.dataset import DATA_DIR, REJECTED_DIR, kept_part, rejected_part, write_card
from trace_gen.errors import UsageError
from trace_gen.writer import RUN_FILE, committed_entries


def _read_shard(path: Path) -> tuple[dict, list[dict]]:
    if not (path / RUN_FILE).is_file():
        raise UsageError(f"{path} is not a trace_gen output directory (no {RUN_FILE})")
    return json.loads((path / RUN_FILE).read_text()), committed_entries(path)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge(out: Path, shard_dirs: list[Path]) -> dict:
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; merge into a new directory")
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

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    try:
        (tmp / DATA_DIR).mkdir()
        (tmp / REJECTED_DIR).mkdir()
        keys: set[tuple[str, int]] = set()
        totals, reasons, lengths, per_shard = Counter(), Counter(), [], {}
        for index, (path, _, entries) in sorted(shards.items()):
            for e in entries:
                for part in e["parts"]:
                    where = rejected_part if part.startswith(f"{REJECTED_DIR}/") else kept_part
                    name = where(f"s{index:05d}-{e['batch']:06d}")
                    table = pq.read_table(path / part, columns=["prompt_id", "sample_idx"])
                    for key in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
                        if key in keys:
                            raise UsageError(f"duplicate row {key} in {path / part}: shards overlap")
                        keys.add(key)
                    _link(path / part, tmp / name)
                reasons.update(e["reasons"])
                lengths += e.get("kept_tokens", [])
            shard_totals = Counter()
            for e in entries:
                shard_totals.update(
                    kept=e["kept"],
                    rejected=e["rejected"],
                    tokens=e["tokens"],
                    skipped=e.get("skipped", 0),
                    prompts=len(e["prompt_ids"]),
                )
            per_shard[index] = dict(shard_totals)
            totals.update(shard_totals)
        from trace_gen.pipeline import percentiles

        sampled = totals["kept"] + totals["rejected"]
        stats = {
            **{k: totals[k] for k in ("kept", "rejected", "tokens", "prompts", "skipped")},
            "acceptance": round(totals["kept"] / sampled, 4) if sampled else 0.0,
            "reasons": dict(sorted(reasons.items())),
            "num_tokens_percentiles": percentiles(lengths),
            "num_shards": num_shards,
            "shards": {str(k): v for k, v in sorted(per_shard.items())},
        }
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2))
        (tmp / RUN_FILE).write_text(json.dumps({**base, "shard": "merged"}, indent=2, sort_keys=True))
        write_card(tmp, base, stats, with_rejected=any((tmp / REJECTED_DIR).iterdir()))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


def make_parser(subparsers=None) -> argparse.ArgumentParser:
    kwargs = dict(description=__doc__.split("\n")[0])
    p = subparsers.add_parser("merge", **kwargs) if subparsers else argparse.ArgumentParser(**kwargs)
    p.add_argument("out", type=Path, help="new directory for the merged dataset")
    p.add_argument("shards", type=Path, nargs="+", help="the shard output directories")
    p.add_argument(
        "--push-to-hub", default=None, metavar="REPO", help="then upload OUT as the hub dataset REPO"
    )
    return p
