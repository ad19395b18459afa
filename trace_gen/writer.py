"""Crash-safe output: Parquet parts written atomically, and a manifest that is the source of truth.

A batch commits in three steps: kept part (temp file, fsync, rename), rejected part (same), then one
manifest line (append, fsync). On start-up, parts whose batch has no manifest line are leftovers of
a crash between those steps and are deleted, so a rerun after `kill -9` redoes at most the batch in
flight and never writes a duplicate. Resume reads only the manifest, never the data.

Kept parts go to OUT/data/train-*.parquet, rejected ones to OUT/rejected/, with a dataset card in
OUT/README.md, so `datasets.load_dataset(OUT)` loads the directory (see trace_gen.dataset).
"""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from trace_gen.dataset import CARD, DATA_DIR, REJECTED_DIR, kept_part, rejected_part, write_card
from trace_gen.errors import UsageError
from trace_gen.records import rows_to_table

MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_part(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(rows_to_table(rows), tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def holds_run(out: Path, run_identity: dict) -> bool:
    """True if `out` holds this run (resume), False if it is absent or empty (start); a UsageError if
    it holds another run or files that are not a trace_gen output."""
    run_file = out / RUN_FILE
    run_identity = json.loads(json.dumps(run_identity))  # compare as stored (tuples become lists)
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != run_identity:
            diff = sorted(
                k for k in set(previous) | set(run_identity) if previous.get(k) != run_identity.get(k)
            )
            raise UsageError(
                f"{out} holds a different run (differs in: {', '.join(diff)}); "
                "use a new --out directory or rerun with the original settings to resume"
            )
        return True
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty and is not a trace_gen output; choose an empty --out directory")
    return False


def committed_entries(out: Path) -> list[dict]:
    """The manifest's entries, read-only; a torn last line (a crash mid-append) is not committed."""
    path = out / MANIFEST
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return entries


class TraceWriter:
    def __init__(self, out: Path, run_identity: dict, keep_rejected: bool):
        self.out = out
        self.keep_rejected = keep_rejected
        self.run_identity = json.loads(json.dumps(run_identity))
        if not holds_run(out, run_identity):
            out.mkdir(parents=True, exist_ok=True)
            _fsync_write(out / RUN_FILE, json.dumps(run_identity, indent=2, sort_keys=True).encode())
        if not (out / CARD).exists():  # final statistics are written into it when the run ends
            write_card(out, self.run_identity, None, keep_rejected)
        self.entries = self._read_manifest()
        self._remove_orphans()

    def _read_manifest(self) -> list[dict]:
        path = self.out / MANIFEST
        if not path.exists():
            return []
        entries, torn = [], False
        text = path.read_text()
        for line in text.splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                torn = True  # a torn last line from a crash mid-append: that batch is not committed
                break
        if torn or (text and not text.endswith("\n")):  # rewrite atomically, never in place
            _fsync_write(path, "".join(json.dumps(e) + "\n" for e in entries).encode())
        return entries

    def _remove_orphans(self) -> None:
        committed = {p for e in self.entries for p in e["parts"]}
        # part-*.parquet at the top level: directories written before the data/ layout
        for pattern in (f"{DATA_DIR}/*.parquet*", f"{REJECTED_DIR}/part-*.parquet*", "part-*.parquet*"):
            for f in self.out.glob(pattern):
                if str(f.relative_to(self.out)) not in committed:
                    f.unlink()

    @property
    def done_batches(self) -> set[int]:
        return {e["batch"] for e in self.entries}

    def totals(self) -> dict:
        kept = sum(e["kept"] for e in self.entries)
        return {
            "kept": kept,
            "rejected": sum(e["rejected"] for e in self.entries),
            "tokens": sum(e["tokens"] for e in self.entries),
            "prompts": sum(len(e["prompt_ids"]) for e in self.entries),
            "skipped": sum(e.get("skipped", 0) for e in self.entries),
        }

    def commit(
        self,
        batch: int,
        prompt_ids: list[str],
        kept: list[dict],
        rejected: list[dict],
        reasons: dict[str, int],
        tokens: int,
        skipped: int = 0,
    ) -> None:
        parts = []
        if kept:
            (self.out / DATA_DIR).mkdir(exist_ok=True)
            name = kept_part(f"{batch:06d}")
            _write_part(self.out / name, kept)
            parts.append(name)
        if rejected and self.keep_rejected:
            (self.out / REJECTED_DIR).mkdir(exist_ok=True)
            name = rejected_part(f"{batch:06d}")
            _write_part(self.out / name, rejected)
            parts.append(name)
        entry = {
            "batch": batch,
            "parts": parts,
            "prompt_ids": prompt_ids,
            "kept": len(kept),
            "rejected": len(rejected),
            "reasons": reasons,
            "tokens": tokens,
            "skipped": skipped,
            "kept_tokens": [row["num_tokens"] for row in kept],  # for length percentiles without the data
        }
        with open(self.out / MANIFEST, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)
