"""Crash-safe output: Parquet parts written atomically, and a manifest that is the source of truth.

A batch commits in two steps: its parts (each a temp file, fsync, rename), then one manifest line
(append, fsync). On start-up, parts no manifest line names are leftovers of a crash between those
steps and are deleted, as are temp files, so a rerun after `kill -9` redoes at most the batch in
flight and never writes a duplicate. Resume reads only the manifest, never the data. Nothing is
written before the first batch commits: a run that fails before that (bad input, a teacher that does
not load) leaves no directory behind to block the corrected rerun.

`--n` and the rows on disk. A batch's verified samples are kept toward --n in sample order until --n
is reached; the verified ones past it (only in the batch that reaches --n) go to OUT/unused/, not to
OUT/data/. A rerun with another --n moves rows so the directory holds exactly what a fresh run with
that --n would: a larger --n first takes the unused verified rows of the last batch, then generates
from the next batch on; a smaller one moves the rows past the new target, and whole batches a fresh
run would not have generated, to OUT/unused/ (nothing is deleted, so growing again regenerates
nothing). A moved batch gets new part names and a new manifest line; the last line of a batch wins.

    OUT/data/train-<batch>[-r<rev>].parquet    kept traces (toward --n)
    OUT/rejected/part-<batch>[-r<rev>].parquet samples that failed a check (--keep-rejected)
    OUT/unused/verified-<batch>[-r<rev>].parquet, unused/rejected-...  rows past --n (see above)
"""

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trace_gen.dataset import (
    DATA_DIR,
    REJECTED_DIR,
    UNUSED_DIR,
    kept_part,
    rejected_part,
    unused_part,
    write_card,
)
from trace_gen.errors import UsageError
from trace_gen.records import rows_to_table
from trace_gen.testpoints import crash_point

MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"
STATS = "stats.json"


def fsync_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_fsync_write = fsync_write  # the old private name, still imported by eval_harness.cli


def _write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def holds_run(out: Path, run_identity: dict) -> bool:
    """True if `out` holds this run (resume), False if it is absent or empty (start); a UsageError if
    it holds another run or files that are not a trace_gen output."""
    run_file = out / RUN_FILE
    run_identity = json.loads(json.dumps(run_identity, default=str))  # compare as stored
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != run_identity:
            diff = sorted(
                k for k in set(previous) | set(run_identity) if previous.get(k) != run_identity.get(k)
            )
            raise UsageError(
                f"{out} holds a different run (differs in: {', '.join(diff)}); use a new --output-dir, "
                "or rerun with the original settings to resume (--n may differ)"
            )
        return True
    if out.is_dir() and any(p for p in out.iterdir() if not p.name.endswith(".tmp")):
        raise UsageError(
            f"{out} is not empty and is not a trace_gen output; choose an empty or new --output-dir"
        )
    return False


def committed_entries(out: Path) -> list[dict]:
    """The manifest's entries, read-only: the last line of each batch, in batch order; a torn last
    line (a crash mid-append) is not committed."""
    path = out / MANIFEST
    latest: dict[int, dict] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break
        latest[entry["batch"]] = {"active": True, "rev": 0, **entry}
    return [latest[b] for b in sorted(latest)]


def verified_count(entry: dict) -> int:
    return entry.get("verified", entry["kept"])  # directories written before --n could be changed


def percentiles(values: list[int], qs=(5, 50, 95, 99)) -> dict:
    values = sorted(values)
    if not values:
        return {}
    return {f"p{q}": values[min(len(values) - 1, int(q / 100 * len(values)))] for q in qs}


def summarize(entries: list[dict]) -> dict:
    """The statistics of a run from its manifest entries (the batches a fresh run with this --n
    generates): kept toward --n; verified of sampled (acceptance); rejected and skipped by reason;
    kept-trace length percentiles."""
    active = [e for e in entries if e.get("active", True)]
    totals, reasons, lengths = Counter(), Counter(), []
    for e in active:
        verified = verified_count(e)
        totals.update(
            kept=e["kept"],
            verified=verified,
            rejected=e["rejected"],
            tokens=e["tokens"],
            prompts=len(e["prompt_ids"]),
            skipped=e.get("skipped", 0),
        )
        reasons.update(e["reasons"])
        if "verified" in e:  # kept and over-target are derived from the split, not stored as reasons
            reasons.update(kept=e["kept"], over_target=verified - e["kept"])
        lengths += e.get("verified_tokens", e.get("kept_tokens", []))[: e["kept"]]
    sampled = totals["verified"] + totals["rejected"]
    keys = ("kept", "verified", "rejected", "prompts", "skipped", "tokens")
    return {
        **{k: totals[k] for k in keys},
        "sampled": sampled,
        "over_target": totals["verified"] - totals["kept"],
        "acceptance": round(totals["verified"] / sampled, 4) if sampled else 0.0,
        "reasons": dict(sorted((k, v) for k, v in reasons.items() if v)),
        "num_tokens_percentiles": percentiles(lengths),
    }


def _part_name(batch: int, rev: int) -> str:
    return f"{batch:06d}" if rev == 0 else f"{batch:06d}-r{rev}"


class TraceWriter:
    """The output directory of one run (one shard), aimed at `n` kept traces (see the module docstring)."""

    def __init__(self, out: Path, run_identity: dict, keep_rejected: bool, n: int):
        self.out = Path(out)
        self.keep_rejected = keep_rejected
        self.n = n
        self.run_identity = json.loads(json.dumps(run_identity, default=str))
        self.started = holds_run(self.out, run_identity)
        self.entries: list[dict] = []
        if self.started:
            self._clean()
            self._repair_manifest()
            self.entries = committed_entries(self.out)
            self._remove_orphans()
            self._retarget()

    # -- reading ----------------------------------------------------------------------------------

    @property
    def done_batches(self) -> set[int]:
        return {e["batch"] for e in self.entries}

    @property
    def kept(self) -> int:
        return sum(e["kept"] for e in self.entries if e["active"])

    def totals(self) -> dict:
        return summarize(self.entries)

    def complete(self, num_batches: int) -> bool:
        """True when a run would generate nothing more: --n is kept, or every batch is committed."""
        return self.kept >= self.n or len(self.entries) >= num_batches

    # -- writing ----------------------------------------------------------------------------------

    def commit(self, batch: int, prompt_ids: list[str], verified: list[dict], rejected: list[dict],
               reasons: dict[str, int], tokens: int, skipped: int = 0) -> int:  # fmt: skip
        """Commit one batch: its verified rows (kept toward --n in order, the rest unused) and the rows
        that failed a check, with their reasons; returns the rows kept."""
        self._start()
        k = max(0, min(len(verified), self.n - self.kept))
        entry = {
            "batch": batch,
            "rev": 0,
            "active": True,
            "prompt_ids": prompt_ids,
            "kept": k,
            "verified": len(verified),
            "rejected": len(rejected),
            "reasons": reasons,
            "tokens": tokens,
            "skipped": skipped,
            "verified_tokens": [row["num_tokens"] for row in verified],  # percentiles without the data
        }
        tables = {
            "verified": rows_to_table(verified) if verified else None,
            "rejected": rows_to_table(rejected) if rejected and self.keep_rejected else None,
        }
        entry["parts"] = self._write_parts(batch, 0, True, k, tables)
        crash_point("commit:parts")
        self._append(entry)
        crash_point("commit:manifest")
        self.entries.append(entry)
        return k

    def finish(self, stats: dict) -> None:
        """Write stats.json and the dataset card (creating the directory for a run that committed nothing)."""
        self._start()
        fsync_write(self.out / STATS, json.dumps(stats, indent=2).encode())
        write_card(self.out, self.run_identity, stats, self.keep_rejected)

    def _start(self) -> None:
        if self.started:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        fsync_write(self.out / RUN_FILE, json.dumps(self.run_identity, indent=2, sort_keys=True).encode())
        write_card(self.out, self.run_identity, None, self.keep_rejected)
        self.started = True

    def _append(self, entry: dict) -> None:
        with open(self.out / MANIFEST, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _write_parts(self, batch: int, rev: int, active: bool, k: int, tables: dict) -> list[str]:
        """Write a batch's parts for the split (active, k); returns their paths relative to OUT."""
        name, verified, rejected = _part_name(batch, rev), tables["verified"], tables["rejected"]
        files = []
        if verified is not None and active and k:
            files.append((kept_part(name), verified.slice(0, k)))
        if verified is not None and (not active or k < verified.num_rows):
            files.append((unused_part("verified", name), verified.slice(k if active else 0)))
        if rejected is not None:
            files.append((rejected_part(name) if active else unused_part("rejected", name), rejected))
        for path, table in files:
            _write_table(self.out / path, table)
        return [path for path, _ in files]

    def _retarget(self) -> None:
        """Move rows so the directory holds what a fresh run with this --n holds (module docstring)."""
        kept = 0
        for i, e in enumerate(self.entries):
            if "verified" not in e:  # written before --n could be changed: left as it is
                kept += e["kept"]
                continue
            active = kept < self.n  # a fresh run generates a batch while it has fewer than --n
            k = min(e["verified"], self.n - kept) if active else 0
            kept += k
            if (active, k) != (e["active"], e["kept"]):
                self.entries[i] = self._move(e, active, k)

    def _move(self, entry: dict, active: bool, k: int) -> dict:
        def read(dirs: tuple[str, ...]) -> pa.Table | None:
            parts = [p for p in entry["parts"] if p.startswith(dirs)]
            return pa.concat_tables([pq.read_table(self.out / p) for p in parts]) if parts else None

        # kept rows come first in a batch's sample order, then its unused verified ones
        tables = {
            "verified": read((f"{DATA_DIR}/", f"{UNUSED_DIR}/verified-")),
            "rejected": read((f"{REJECTED_DIR}/", f"{UNUSED_DIR}/rejected-")),
        }
        rev = entry["rev"] + 1
        moved = {**entry, "rev": rev, "active": active, "kept": k}
        moved["parts"] = self._write_parts(entry["batch"], rev, active, k, tables)
        crash_point("retarget:parts")
        self._append(moved)
        crash_point("retarget:manifest")
        for old in set(entry["parts"]) - set(moved["parts"]):
            (self.out / old).unlink(missing_ok=True)
        return moved

    def _repair_manifest(self) -> None:
        """Drop a torn last line (a crash mid-append), atomically, before anything is appended to it."""
        path = self.out / MANIFEST
        if not path.exists():
            return
        text = path.read_text()
        lines = []
        for line in text.splitlines():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                break
            lines.append(line + "\n")
        if "".join(lines) != text:
            fsync_write(path, "".join(lines).encode())

    def _clean(self) -> None:
        for tmp in [*self.out.glob("*.tmp"), *self.out.glob("*/*.tmp")]:
            tmp.unlink()

    def _remove_orphans(self) -> None:
        committed = {p for e in self.entries for p in e["parts"]}
        # part-*.parquet at the top level: directories written before the data/ layout
        patterns = (f"{DATA_DIR}/*.parquet*", f"{REJECTED_DIR}/*.parquet*", f"{UNUSED_DIR}/*.parquet*")
        for pattern in (*patterns, "part-*.parquet*"):
            for f in self.out.glob(pattern):
                if str(f.relative_to(self.out)) not in committed:
                    f.unlink()
