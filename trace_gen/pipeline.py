"""The generation loop: prompts → teacher samples → verdicts → committed Parquet parts.

Batches are fixed slices of the (sharded) prompt list, so a rerun sees the same batches and skips the
committed ones. Verification of batch i runs in worker processes (math) or sandbox threads (code)
while the teacher generates batch i+1. Before a prompt reaches the teacher it may be skipped, and
counted by reason: empty, a repeated prompt id, over the token budget, or (with decontamination on)
sharing a word 8-gram with a benchmark. After verification, samples are rejected for format problems
and (with dedup on) for repeating an earlier sample of the same prompt; `--n` is exact.
"""

import hashlib
import json
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from trace_gen.backends.base import SamplingConfig
from trace_gen.code_tests import code_verdict
from trace_gen.dataset import write_card
from trace_gen.filters.decontam import Decontaminator
from trace_gen.filters.dedup import duplicate_reasons
from trace_gen.filters.format import format_problem
from trace_gen.prompts import PromptRecord
from trace_gen.records import trace_row
from trace_gen.verify import MathVerifierPool, Verdict
from trace_gen.verify.sandbox import require_sandbox
from trace_gen.writer import TraceWriter

DEDUP_MODES = ("off", "exact", "near")


@dataclass(frozen=True)
class RunSettings:
    n: int  # kept traces wanted (this shard)
    batch_prompts: int = 64
    keep_rejected: bool = False
    num_shards: int = 1
    shard_index: int = 0
    verify_workers: int = 1
    verify_timeout_s: float = 10.0
    code_workers: int = 2  # sandboxed test runs at a time (code datasets)
    max_prompt_tokens: int | None = None  # default: what the backend's context allows
    dedup: str = "off"  # within-prompt dedup of kept samples: off | exact | near (MinHash)
    near_dup_threshold: float = 0.9
    decontaminate: bool = False  # skip prompts sharing a word 8-gram with a benchmark test set
    benchmarks_dir: str | None = None  # default: the sets shipped in trace_gen/verify/data

    def __post_init__(self):
        assert self.dedup in DEDUP_MODES, f"dedup must be one of {DEDUP_MODES}, got {self.dedup!r}"


def shard(prompts: list[PromptRecord], num_shards: int, shard_index: int) -> list[PromptRecord]:
    """A deterministic, disjoint slice by a hash of the prompt id (stable when the dataset is reordered)."""

    def bucket(p: PromptRecord) -> int:
        return int(hashlib.sha1(p.prompt_id.encode()).hexdigest()[:8], 16) % num_shards

    return [p for p in prompts if bucket(p) == shard_index]


def batch_seed(seed: int, batch: int) -> int:
    """The seed of a batch; backends give sample j of prompt i `batch_seed + i*n + j` (unique while
    a batch holds under 2**20 samples), so no two samples of a run share a seed."""
    return (seed << 40) + (batch << 20)


class _Skipper:
    """Why a prompt should not reach the teacher, or None."""

    def __init__(self, prompts: list[PromptRecord], backend, settings: RunSettings):
        first: dict[str, int] = {}
        self.repeats = {i for i, p in enumerate(prompts) if first.setdefault(p.prompt_id, i) != i}
        self.budget = settings.max_prompt_tokens or backend.max_prompt_tokens
        self.tokenized = backend.tokenized
        self.decon = (
            Decontaminator.from_benchmarks(settings.benchmarks_dir) if settings.decontaminate else None
        )

    def before_encoding(self, position: int, p: PromptRecord) -> str | None:
        if not p.problem.strip():
            return "skipped:empty_prompt"
        if position in self.repeats:
            return "skipped:duplicate_prompt_id"
        if self.decon is not None and (bench := self.decon.match(p.problem)):
            return f"skipped:contaminated:{bench}"
        return None

    def after_encoding(self, encoded) -> str | None:
        if self.tokenized and self.budget is not None and len(encoded) > self.budget:
            return "skipped:prompt_too_long"
        return None


def _verdict(future: Future, sample) -> tuple[Verdict, str | None]:
    """The verifier's verdict, demoted when the trace is malformed; and the format problem, if any."""
    verdict = future.result()
    problem = format_problem(sample.text, sample.finish_reason, check_language=False)
    if problem is not None and verdict.kept:  # a matching box in a malformed trace is not a trace to learn
        verdict = Verdict("unverifiable", f"format: {problem}")
    return verdict, problem


def _finish_batch(writer: TraceWriter, pending: dict, settings: RunSettings, totals: Counter) -> int:
    """Wait for the batch's verdicts, apply format checks and dedup, commit it; returns the rows kept."""
    kept, rejected, reasons = [], [], Counter(pending["skipped"])
    for (prompt, idx, sample), future in zip(pending["rows"], pending["futures"], strict=True):
        verdict, problem = _verdict(future, sample)
        row = trace_row(prompt, idx, sample, verdict, pending["teacher"], pending["sampling"])
        (kept if verdict.kept else rejected).append(row)
        if not verdict.kept:
            reasons[problem or verdict.verdict] += 1
    if settings.dedup != "off" and kept:
        texts, groups = [r["completion"] for r in kept], [r["prompt_id"] for r in kept]
        dups = duplicate_reasons(texts, groups, settings.near_dup_threshold)
        if settings.dedup == "exact":
            dups = [d if d == "exact_duplicate" else None for d in dups]
        for row, dup in zip(kept, dups, strict=True):
            if dup:
                row["verdict_reason"] = f"{dup} of an earlier sample ({row['verdict_reason']})"
                reasons[f"dedup:{dup}"] += 1
        rejected += [row for row, dup in zip(kept, dups, strict=True) if dup]
        kept = [row for row, dup in zip(kept, dups, strict=True) if not dup]
    room = settings.n - totals["kept"]
    if len(kept) > room:  # --n is exact: the surplus of the last batch goes with the rejected rows
        surplus, kept = kept[room:], kept[:room]
        reasons["over_target"] += len(surplus)
        for row in surplus:
            row["verdict_reason"] = f"over target --n ({row['verdict_reason']})"
        rejected += surplus
    if kept:
        reasons["kept"] += len(kept)
    tokens = sum(s.num_tokens for _, _, s in pending["rows"])
    skipped = sum(pending["skipped"].values())
    writer.commit(pending["batch"], pending["prompt_ids"], kept, rejected, dict(reasons), tokens, skipped)
    totals.update(
        kept=len(kept),
        rejected=len(rejected),
        tokens=tokens,
        prompts=len(pending["prompt_ids"]),
        skipped=skipped,
    )
    return len(kept)


def run(
    backend,
    teacher: str,
    prompts: list[PromptRecord],
    sampling: SamplingConfig,
    settings: RunSettings,
    out,
    run_identity: dict,
) -> dict:
    """Generate until `settings.n` traces are kept or the shard's prompts run out; returns the stats."""
    if any(p.tests for p in prompts):
        require_sandbox()  # no namespaces (and no --allow-unisolated): one line, before anything is written
    writer = TraceWriter(out, run_identity, settings.keep_rejected)
    prompts = shard(prompts, settings.num_shards, settings.shard_index)
    skipper = _Skipper(prompts, backend, settings)
    totals = Counter(writer.totals())
    done = writer.done_batches
    bar = tqdm(total=settings.n, initial=min(totals["kept"], settings.n), unit="trace", desc="kept")
    t0, tokens0 = time.perf_counter(), totals["tokens"]
    # the verifier processes start in the background while the teacher generates the first batch
    starter = ThreadPoolExecutor(1)
    pool_ready = starter.submit(MathVerifierPool, settings.verify_workers, settings.verify_timeout_s)
    starter.shutdown(wait=False)
    code_pool = ThreadPoolExecutor(settings.code_workers) if any(p.tests for p in prompts) else None
    pending = None
    try:
        for batch, start in enumerate(range(0, len(prompts), settings.batch_prompts)):
            if totals["kept"] >= settings.n:
                break
            if batch in done:
                continue
            chunk = prompts[start : start + settings.batch_prompts]
            skipped, todo, encoded = Counter(), [], []
            for position, p in enumerate(chunk, start):
                reason = skipper.before_encoding(position, p)
                ids = backend.prompt_token_ids(list(p.messages)) if reason is None else None
                reason = reason or skipper.after_encoding(ids)
                if reason:
                    skipped[reason] += 1
                else:
                    todo.append(p)
                    encoded.append(ids)
            seed = batch_seed(sampling.seed, batch)
            samples = backend.generate(encoded, sampling, seed=seed) if todo else []
            if pending is not None:
                bar.update(_finish_batch(writer, pending, settings, totals))
                pending = None
                if totals["kept"] >= settings.n:
                    break  # the batch just generated is not needed; it is not committed, so nothing is lost
            rows = [(p, i, s) for p, ss in zip(todo, samples, strict=True) for i, s in enumerate(ss)]
            pool = pool_ready.result()
            pending = {
                "batch": batch,
                "rows": rows,
                "skipped": skipped,
                "teacher": teacher,
                "prompt_ids": [p.prompt_id for p in chunk],
                "sampling": sampling.as_dict(seed=seed),
                "futures": [
                    code_pool.submit(code_verdict, s.text, p.tests)
                    if p.tests
                    else pool.submit(s.text, p.gold)
                    for p, _, s in rows
                ],
            }
            elapsed = time.perf_counter() - t0
            bar.set_postfix(
                prompts=totals["prompts"] + len(chunk),
                rejected=totals["rejected"],
                skipped=totals["skipped"],
                tok_s=f"{(totals['tokens'] - tokens0) / max(elapsed, 1e-9):.0f}",
            )
    finally:  # also when the teacher fails: the verified batch in hand is committed, not lost
        if pending is not None:
            bar.update(_finish_batch(writer, pending, settings, totals))
        pool_ready.result().close()
        if code_pool is not None:
            code_pool.shutdown()
        bar.close()  # ends the progress line, so an error message starts on its own line
    stats = write_stats(out, writer)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    stats["generated_tokens_per_s"] = round((totals["tokens"] - tokens0) / max(stats["seconds"], 1e-9), 1)
    return stats


def percentiles(values: list[int], qs=(5, 50, 95, 99)) -> dict:
    values = sorted(values)
    if not values:
        return {}
    return {f"p{q}": values[min(len(values) - 1, int(q / 100 * len(values)))] for q in qs}


def write_stats(out, writer: TraceWriter) -> dict:
    """Acceptance by reason and token-length percentiles of the kept traces, from the manifest alone;
    into stats.json and the dataset card."""
    reasons = Counter()
    lengths = []
    for e in writer.entries:
        reasons.update(e["reasons"])
        lengths += e.get("kept_tokens", [])
    totals = writer.totals()
    sampled = totals["kept"] + totals["rejected"]
    stats = {
        **totals,
        "acceptance": round(totals["kept"] / sampled, 4) if sampled else 0.0,
        "reasons": dict(sorted(reasons.items())),
        "num_tokens_percentiles": percentiles(lengths),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    write_card(out, writer.run_identity, stats, writer.keep_rejected)
    return stats
