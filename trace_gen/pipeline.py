"""The generation loop: prompts → teacher samples → verdicts → committed Parquet parts.

Batches are fixed slices of the (sharded) prompt list, so a rerun sees the same batches and skips the
committed ones. Verification of batch i runs in worker processes (math) or sandbox threads (code)
while the teacher generates batch i+1. Before a prompt reaches the teacher it may be skipped, and
counted by reason: empty, a repeated prompt id, over the token budget, or (with decontamination on)
sharing a word 8-gram with a benchmark. After verification a sample is rejected, with its reason, for
a format problem, for a sandbox flag on a passing program (unless --keep-flagged; the rule of `filter`,
`trace_gen.filters.policy.flag_reason`), or for repeating an earlier sample of its prompt (--dedup,
`trace_gen.filters.dedup`, as `filter` does). The verified rest is kept toward --n, which is exact
(see trace_gen.writer for the verified samples past it).
"""

import hashlib
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

from tqdm import tqdm

from trace_gen.code_tests import code_verdict
from trace_gen.config import RunConfig
from trace_gen.errors import UsageError
from trace_gen.filters.decontam import Decontaminator
from trace_gen.filters.dedup import duplicate_reasons
from trace_gen.filters.format import format_problem
from trace_gen.filters.policy import flag_reason
from trace_gen.prompts import PromptRecord
from trace_gen.records import trace_row
from trace_gen.verify import MathVerifierPool, Verdict
from trace_gen.writer import TraceWriter


def shard(prompts: list[PromptRecord], num_shards: int, shard_index: int) -> list[PromptRecord]:
    """A deterministic, disjoint slice by a hash of the prompt id (stable when the dataset is reordered)."""

    def bucket(p: PromptRecord) -> int:
        return int(hashlib.sha1(p.prompt_id.encode()).hexdigest()[:8], 16) % num_shards

    return [p for p in prompts if bucket(p) == shard_index]


def num_batches(prompts: list[PromptRecord], batch_size: int) -> int:
    return -(-len(prompts) // batch_size)


def batch_seed(seed: int, batch: int) -> int:
    """The seed of a batch; backends give sample j of prompt i `batch_seed + i*n + j` (unique while
    a batch holds under 2**20 samples), so no two samples of a run share a seed."""
    return (seed << 40) + (batch << 20)


class _Skipper:
    """Why a prompt should not reach the teacher, or None."""

    def __init__(self, prompts: list[PromptRecord], backend, config: RunConfig):
        first: dict[str, int] = {}
        self.repeats = {i for i, p in enumerate(prompts) if first.setdefault(p.prompt_id, i) != i}
        self.budget = config.max_prompt_tokens or backend.max_prompt_tokens
        self.tokenized = backend.tokenized
        self.decon = Decontaminator.from_benchmarks(config.benchmarks_dir) if config.decontaminate else None

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


def usable_prompts(prompts: list[PromptRecord]) -> int:
    """Prompts that can reach the teacher at most (not empty, not a repeated id)."""
    return len({p.prompt_id for p in prompts if p.problem.strip()})


def _encode(backend, p: PromptRecord):
    """The prompt as the backend takes it; a teacher whose chat template fails is one line."""
    try:
        return backend.prompt_token_ids(list(p.messages))
    except Exception as err:  # the template is the teacher's code: ValueError, jinja2's TemplateError, ...
        raise UsageError(
            f"the teacher's chat template failed on prompt {p.prompt_id} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}); give a teacher whose tokenizer has a "
            "chat template"
        ) from err


def _verdict(future: Future, sample) -> tuple[Verdict, str | None]:
    """The verifier's verdict, demoted when the trace is malformed; and the format problem, if any."""
    verdict = future.result()
    problem = format_problem(sample.text, sample.finish_reason, check_language=False)
    if problem is not None and verdict.kept:  # a matching box in a malformed trace is not a trace to learn
        verdict = Verdict("unverifiable", f"format: {problem}")
    return verdict, problem


def _check(pending: dict, config: RunConfig) -> tuple[list[dict], list[dict], Counter]:
    """(verified rows in sample order, rejected rows, reasons) of a generated batch."""
    verified, rejected, reasons = [], [], Counter(pending["skipped"])
    for (prompt, idx, sample), future in zip(pending["rows"], pending["futures"], strict=True):
        verdict, problem = _verdict(future, sample)
        row = trace_row(prompt, idx, sample, verdict, pending["teacher"], pending["sampling"])
        reason = None if verdict.kept else (problem or verdict.verdict)
        if reason is None and not config.keep_flagged and (flag := flag_reason(row)):
            reason = f"flagged:{flag}"
            row["verdict_reason"] = f"flagged by the sandbox: {flag} ({row['verdict_reason']})"
        (rejected if reason else verified).append(row)
        if reason:
            reasons[reason] += 1
    if config.dedup != "off" and verified:
        texts, groups = [r["completion"] for r in verified], [r["prompt_id"] for r in verified]
        dups = duplicate_reasons(texts, groups, config.near_dup_threshold)
        if config.dedup == "exact":
            dups = [d if d == "exact_duplicate" else None for d in dups]
        for row, dup in zip(verified, dups, strict=True):
            if dup:
                row["verdict_reason"] = f"{dup} of an earlier sample ({row['verdict_reason']})"
                reasons[f"dedup:{dup}"] += 1
        rejected += [row for row, dup in zip(verified, dups, strict=True) if dup]
        verified = [row for row, dup in zip(verified, dups, strict=True) if not dup]
    return verified, rejected, reasons


def _commit(writer: TraceWriter, pending: dict, config: RunConfig) -> int:
    """Wait for the batch's verdicts, apply the checks, commit it; returns the rows kept."""
    verified, rejected, reasons = _check(pending, config)
    tokens = sum(s.num_tokens for _, _, s in pending["rows"])
    skipped = sum(pending["skipped"].values())
    return writer.commit(
        pending["batch"], pending["prompt_ids"], verified, rejected, dict(reasons), tokens, skipped
    )


def _show(bar: tqdm, writer: TraceWriter, tokens0: int, t0: float) -> None:
    """The progress line's counters, from the committed batches (exact after the last commit)."""
    t = writer.totals()
    counters = {
        "sampled": t["sampled"],
        "verified": t["verified"],
        "acceptance": f"{t['acceptance']:.2f}",
        "rejected": t["rejected"],
        "skipped": t["skipped"],
        "tok/s": f"{(t['tokens'] - tokens0) / max(time.perf_counter() - t0, 1e-9):.0f}",
    }
    bar.n = min(t["kept"], bar.total)
    bar.set_postfix(counters)


def run(backend, prompts: list[PromptRecord], config: RunConfig, writer: TraceWriter | None = None) -> dict:
    """Generate until `config.n` traces are kept or the prompts (of this shard: the caller shards them)
    run out; returns the stats (also written to OUT/stats.json and the dataset card)."""
    if writer is None:
        writer = TraceWriter(config.output_dir, config.identity(), config.keep_rejected, config.n)
    sampling = config.sampling()
    skipper = _Skipper(prompts, backend, config)
    tokens0 = writer.totals()["tokens"]
    bar = tqdm(total=config.n, initial=min(writer.kept, config.n), unit="trace", desc="kept", smoothing=0.1)
    t0 = time.perf_counter()
    _show(bar, writer, tokens0, t0)
    # the verifier processes start in the background while the teacher generates the first batch
    starter = ThreadPoolExecutor(1)
    pool_ready = starter.submit(MathVerifierPool, config.verify_workers, config.verify_timeout)
    starter.shutdown(wait=False)
    code_pool = ThreadPoolExecutor(config.code_workers) if any(p.tests for p in prompts) else None
    pending = None
    try:
        for batch, start in enumerate(range(0, len(prompts), config.batch_size)):
            if writer.kept >= config.n:
                break
            if batch in writer.done_batches:
                continue
            chunk = prompts[start : start + config.batch_size]
            skipped, todo, encoded = Counter(), [], []
            for position, p in enumerate(chunk, start):
                reason = skipper.before_encoding(position, p)
                ids = _encode(backend, p) if reason is None else None
                reason = reason or skipper.after_encoding(ids)
                if reason:
                    skipped[reason] += 1
                else:
                    todo.append(p)
                    encoded.append(ids)
            seed = batch_seed(sampling.seed, batch)
            samples = backend.generate(encoded, sampling, seed=seed) if todo else []
            if pending is not None:
                _commit(writer, pending, config)
                _show(bar, writer, tokens0, t0)
                pending = None
                if writer.kept >= config.n:
                    break  # the batch just generated is not needed; it is not committed, so nothing is lost
            rows = [(p, i, s) for p, ss in zip(todo, samples, strict=True) for i, s in enumerate(ss)]
            pool = pool_ready.result()
            pending = {
                "batch": batch,
                "rows": rows,
                "skipped": skipped,
                "teacher": config.teacher,
                "prompt_ids": [p.prompt_id for p in chunk],
                "sampling": sampling.as_dict(seed=seed),
                "futures": [
                    code_pool.submit(code_verdict, s.text, p.tests)
                    if p.tests
                    else pool.submit(s.text, p.gold)
                    for p, _, s in rows
                ],
            }
    finally:  # also when the teacher fails: the verified batch in hand is committed, not lost
        try:
            if pending is not None:
                _commit(writer, pending, config)
                _show(bar, writer, tokens0, t0)
        finally:
            pool_ready.result().close()
            if code_pool is not None:
                code_pool.shutdown()
            bar.close()  # ends the progress line, so an error message starts on its own line
    stats = finish(writer)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    stats["generated_tokens_per_s"] = round((stats["tokens"] - tokens0) / max(stats["seconds"], 1e-9), 1)
    return stats


def finish(writer: TraceWriter) -> dict:
    """The run's statistics from the manifest alone, written to stats.json and the dataset card."""
    stats = {**writer.totals(), "target": writer.n}
    writer.finish(stats)
    return stats
