"""The generation loop: prompts → teacher samples → verdicts → committed Parquet parts.

Batches are fixed slices of the (sharded) prompt list, so a rerun sees the same batches and skips the
committed ones. Verification of batch i runs in worker processes while the teacher generates batch i+1.
"""

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from tqdm import tqdm

from trace_gen.backends.base import SamplingConfig
from trace_gen.filters.format import format_problem
from trace_gen.prompts import PromptRecord
from trace_gen.records import trace_row
from trace_gen.verify import MathVerifierPool, Verdict
from trace_gen.writer import TraceWriter


@dataclass(frozen=True)
class RunSettings:
    n: int  # kept traces wanted (this shard)
    batch_prompts: int = 64
    keep_rejected: bool = False
    num_shards: int = 1
    shard_index: int = 0
    verify_workers: int = 1
    verify_timeout_s: float = 10.0


def shard(prompts: list[PromptRecord], num_shards: int, shard_index: int) -> list[PromptRecord]:
    """A deterministic, disjoint slice by a hash of the prompt id (stable when the dataset is reordered)."""

    def bucket(p: PromptRecord) -> int:
        return int(hashlib.sha1(p.prompt_id.encode()).hexdigest()[:8], 16) % num_shards

    return [p for p in prompts if bucket(p) == shard_index]


def _finish_batch(writer: TraceWriter, pending: dict, settings: RunSettings, totals: Counter) -> int:
    """Wait for the batch's verdicts, apply the format checks, commit it; returns the rows kept."""
    kept, rejected, reasons = [], [], Counter()
    for (prompt, idx, sample), future in zip(pending["rows"], pending["futures"], strict=True):
        verdict = future.result()
        problem = format_problem(sample.text, sample.finish_reason, check_language=False)
        if (
            problem is not None and verdict.kept
        ):  # a matching box in a malformed trace is not a trace to learn
            verdict = Verdict("unverifiable", f"format: {problem}")
        row = trace_row(prompt, idx, sample, verdict, pending["teacher"], pending["sampling"])
        reason = "kept" if verdict.kept else problem or verdict.verdict
        reasons[reason] += 1
        (kept if verdict.kept else rejected).append(row)
    room = settings.n - totals["kept"]
    if len(kept) > room:  # --n is exact: the surplus of the last batch goes with the rejected rows
        surplus, kept = kept[room:], kept[:room]
        reasons["kept"] -= len(surplus)
        reasons["over_target"] += len(surplus)
        for row in surplus:
            row["verdict_reason"] = f"over target --n ({row['verdict_reason']})"
        rejected += surplus
    tokens = sum(s.num_tokens for _, _, s in pending["rows"])
    writer.commit(pending["batch"], pending["prompt_ids"], kept, rejected, dict(reasons), tokens)
    totals.update(kept=len(kept), rejected=len(rejected), tokens=tokens, prompts=len(pending["prompt_ids"]))
    return len(kept)


def run(
    backend,
    teacher: str,
    prompts: list[PromptRecord],
    sampling: SamplingConfig,
    settings: RunSettings,
    out: Path,
    run_identity: dict,
) -> dict:
    writer = TraceWriter(out, run_identity, settings.keep_rejected)
    prompts = shard(prompts, settings.num_shards, settings.shard_index)
    totals = Counter(writer.totals())
    done = writer.done_batches
    bar = tqdm(
        total=settings.n,
        initial=min(totals["kept"], settings.n),
        unit="trace",
        desc="kept traces",
        dynamic_ncols=True,
    )
    t0, tokens0 = time.perf_counter(), totals["tokens"]
    pending = None
    with MathVerifierPool(settings.verify_workers, settings.verify_timeout_s) as pool:
        for batch, start in enumerate(range(0, len(prompts), settings.batch_prompts)):
            if totals["kept"] >= settings.n:
                break
            if batch in done:
                continue
            chunk = prompts[start : start + settings.batch_prompts]
            seed = sampling.seed * 1_000_003 + batch
            token_ids = [backend.prompt_token_ids(list(p.messages)) for p in chunk]
            samples = backend.generate(token_ids, sampling, seed=seed)
            if pending is not None:
                bar.update(_finish_batch(writer, pending, settings, totals))
                pending = None
                if totals["kept"] >= settings.n:
                    break  # the batch just generated is not needed; it is not committed, so nothing is lost
            rows = [(p, i, s) for p, ss in zip(chunk, samples, strict=True) for i, s in enumerate(ss)]
            pending = {
                "batch": batch,
                "rows": rows,
                "teacher": teacher,
                "prompt_ids": [p.prompt_id for p in chunk],
                "sampling": sampling.as_dict(seed=seed),
                "futures": [pool.submit(s.text, p.gold) for p, _, s in rows],
            }
            elapsed = time.perf_counter() - t0
            bar.set_postfix(
                prompts=totals["prompts"] + len(chunk),
                rejected=totals["rejected"],
                tok_s=f"{(totals['tokens'] - tokens0) / max(elapsed, 1e-9):.0f}",
            )
        if pending is not None:
            bar.update(_finish_batch(writer, pending, settings, totals))
    bar.close()
    stats = write_stats(out, writer)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    return stats


def write_stats(out: Path, writer: TraceWriter) -> dict:
    """Acceptance by reason and token-length percentiles, from the manifest and the num_tokens column."""
    reasons = Counter()
    for e in writer.entries:
        reasons.update(e["reasons"])
    lengths = []
    for e in writer.entries:
        for part in e["parts"]:
            lengths += pq.read_table(out / part, columns=["num_tokens"]).column("num_tokens").to_pylist()
    lengths.sort()
    pct = (
        {f"p{q}": lengths[min(len(lengths) - 1, int(q / 100 * len(lengths)))] for q in (5, 50, 95, 99)}
        if lengths
        else {}
    )
    totals = writer.totals()
    sampled = totals["kept"] + totals["rejected"]
    stats = {
        **totals,
        "acceptance": round(totals["kept"] / sampled, 4) if sampled else 0.0,
        "reasons": dict(reasons),
        "num_tokens_percentiles": pct,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
