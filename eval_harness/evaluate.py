"""Score benchmark items: generate with a backend (resumable), or take pre-generated responses, or
the benchmark's own reference solutions (`--oracle`); verdicts come from trace_gen.verify.

Per-sample rows go to `<samples_dir>/<benchmark>-<settings hash>.jsonl`, one JSON line per
(item id, sample index): id, sample, problem (the user turn the model saw), gold, completion (the
whole assistant text: a `<think>` the chat template prefilled comes first, so a sample cut off inside
its reasoning has no answer to grade), answer (what the scorer extracted), verdict, reason,
finish_reason, num_tokens, settings. A per-sample file is itself a valid `--responses` file.

Crash safety: generation runs in chunks of `backend.batch_size` prompts (chunk seed = seed + index of
its first item); each scored chunk is written whole to `<file>.parts/<first index>.jsonl` (temp file,
fsync, rename), so a `kill -9` leaves complete chunks or none, never a torn row. A rerun with the same
settings reuses every complete chunk and regenerates the others whole (same seeds, same rows as an
uninterrupted run); when every item is done, the per-sample file is written (atomically) in item
order and the parts directory is removed.
"""

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from eval_harness.benchmarks.base import Item
from eval_harness.metrics import summarise
from trace_gen.backends.base import SamplingConfig
from trace_gen.errors import UsageError
from trace_gen.prompts import _read_jsonl
from trace_gen.verify import MathVerifierPool, Verdict, check_humaneval_many
from trace_gen.writer import _fsync_write

CODE_WORKERS = 2  # sandboxed HumanEval programs run at once


def sampling_for(bench, n: int, seed: int, overrides: dict) -> SamplingConfig:
    """The benchmark's default generation settings, with the CLI's non-None overrides on top."""
    settings = {**bench.GENERATION, **{k: v for k, v in overrides.items() if v is not None}}
    return SamplingConfig(n=n, seed=seed, **settings)


def settings_id(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def score(bench, items: list[Item], completions: list[str], pool: MathVerifierPool) -> list[dict]:
    """{answer, verdict, reason} for each (item, completion) pair, in order."""
    answers = [bench.extract(c) for c in completions]
    if bench.KIND == "math":
        futures = [
            pool.submit(c, item.gold, bench.EXTRACTORS) for item, c in zip(items, completions, strict=True)
        ]
        verdicts = [f.result() for f in futures]
        return [
            {"answer": a, "verdict": v.verdict, "reason": v.reason}
            for a, v in zip(answers, verdicts, strict=True)
        ]
    runnable = [i for i, a in enumerate(answers) if a is not None]
    ran = check_humaneval_many(
        [{**items[i].gold, "completion": answers[i]} for i in runnable], workers=CODE_WORKERS
    )
    verdicts = [Verdict("failed", "no ```python block after </think>")] * len(items)
    for i, v in zip(runnable, ran, strict=True):
        verdicts[i] = v
    return [{"answer": answers[i], "verdict": v.verdict, "reason": v.reason} for i, v in enumerate(verdicts)]


def sample_row(item: Item, k: int, completion: str, scored: dict, **fields) -> dict:
    """One per-sample row: the problem and gold beside the completion, its answer and verdict."""
    problem = next((m["content"] for m in reversed(item.messages) if m["role"] == "user"), None)
    return {
        "id": item.id,
        "sample": k,
        "problem": problem,
        "gold": item.gold,
        "completion": completion,
        **scored,
        **fields,
    }


def read_sample_rows(path: Path) -> list[dict]:
    """Rows of a per-sample file (written whole, atomically; a torn last line, which only an older
    version could leave, is dropped)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def parts_dir(path: Path) -> Path:
    """Where the chunks of a per-sample file in progress live."""
    return path.with_name(path.name + ".parts")


def _by_item(items: list[Item], rows: list[dict]) -> dict[str, list[dict]]:
    """Item id -> its rows ordered by sample index (later rows for the same sample win)."""
    wanted = {it.id for it in items}
    found: dict[str, dict[int, dict]] = {}
    for r in rows:
        if r["id"] in wanted:
            found.setdefault(r["id"], {})[r["sample"]] = r
    return {i: [s[k] for k in sorted(s)] for i, s in found.items()}


def _write_rows(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _fsync_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def generate(
    backend,
    bench,
    items: list[Item],
    sampling: SamplingConfig,
    pool: MathVerifierPool,
    path: Path,
    settings: dict,
) -> dict[str, list[dict]]:
    """Generate and score `sampling.n` samples per item, resuming from `path` and its chunks;
    item id -> rows."""
    key = settings_id(settings)
    parts = parts_dir(path)
    saved = read_sample_rows(path) + [r for f in sorted(parts.glob("*.jsonl")) for r in read_sample_rows(f)]
    done = _by_item(items, [r for r in saved if r.get("settings") == key])
    batch = backend.batch_size
    todo = [
        start
        for start in range(0, len(items), batch)
        if any(len(done.get(it.id, ())) < sampling.n for it in items[start : start + batch])
    ]
    if done:
        print(f"{bench.NAME}: resuming {path}, {len(todo)} chunk(s) of {batch} items left", file=sys.stderr)
    bar = tqdm(total=sum(len(items[s : s + batch]) for s in todo), desc=bench.NAME, unit="item")
    for start in todo:
        chunk = items[start : start + batch]
        prompts = [backend.prompt_token_ids(list(it.messages)) for it in chunk]
        outputs = backend.generate(prompts, sampling, seed=sampling.seed + start)
        pairs = [
            (it, k, s) for it, samples in zip(chunk, outputs, strict=True) for k, s in enumerate(samples)
        ]
        scored = score(bench, [it for it, _, _ in pairs], [s.text for _, _, s in pairs], pool)
        rows = [
            sample_row(it, k, s.text, v, finish_reason=s.finish_reason, num_tokens=s.num_tokens, settings=key)
            for (it, k, s), v in zip(pairs, scored, strict=True)
        ]
        _write_rows(parts / f"{start:07d}.jsonl", rows)  # the chunk is on disk whole, or not at all
        done.update(_by_item(chunk, rows))
        bar.update(len(chunk))
    bar.close()
    if todo or not path.exists():
        _write_rows(path, (r for it in items for r in done[it.id]))
    shutil.rmtree(parts, ignore_errors=True)
    return done


def score_given(
    bench,
    items: list[Item],
    completions: dict[str, list[dict]],
    pool: MathVerifierPool,
    path: Path,
    settings: dict,
) -> dict[str, list[dict]]:
    """Score given completions (item id -> rows with `completion`, optional finish_reason/num_tokens),
    rewriting the per-sample file; item id -> scored rows."""
    key = settings_id(settings)
    flat = [(it, k, r) for it in items for k, r in enumerate(completions[it.id])]
    scored = score(bench, [it for it, _, _ in flat], [r["completion"] for _, _, r in flat], pool)
    out: dict[str, list[dict]] = {}
    for (it, k, r), verdict in zip(flat, scored, strict=True):
        row = sample_row(
            it,
            k,
            r["completion"],
            verdict,
            finish_reason=r.get("finish_reason"),
            num_tokens=r.get("num_tokens"),
            settings=key,
        )
        out.setdefault(it.id, []).append(row)
    _write_rows(path, (r for it in items for r in out[it.id]))
    return out


def oracle_completions(bench, items: list[Item]) -> dict[str, list[dict]]:
    """Each item's reference solution, as one model output (the harness's self-test)."""
    return {it.id: [{"completion": bench.oracle(it), "finish_reason": "stop"}] for it in items}


def read_responses(path: Path) -> list[dict]:
    """Rows of a responses file: JSONL with `id` and `completion` (one row per sample; `sample`,
    `benchmark`, `finish_reason`, `num_tokens` optional). A per-sample output file of this harness
    qualifies. Not UTF-8, not JSON, or a row without id/completion: one UsageError naming the line."""
    if not path.is_file():
        raise UsageError(f"responses file not found: {path}")
    rows = []
    for lineno, row in enumerate(_read_jsonl(path), 1):
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("completion"), str):
            raise UsageError(f"{path}: row {lineno} needs an 'id' and a string 'completion'")
        rows.append({**row, "id": str(row["id"])})
    return rows


def match_responses(
    path: Path, rows: list[dict], items_by_bench: dict[str, list[Item]]
) -> dict[str, dict[str, list[dict]]]:
    """Route response rows to benchmarks (by their `benchmark` field, else by id); benchmark -> item
    id -> rows (ordered by `sample` when the rows have it). Rows for other items are ignored
    (--limit). One UsageError line when a benchmark has missing ids, when a (id, sample) pair repeats
    (it would count one sample twice) or when items have different numbers of samples."""
    routed: dict[str, dict[str, list[dict]]] = {}
    for name, items in items_by_bench.items():
        ids = {it.id for it in items}
        routed[name] = {}
        for r in rows:
            if r["id"] in ids and r.get("benchmark", name) == name:
                routed[name].setdefault(r["id"], []).append(r)
        missing = [it.id for it in items if it.id not in routed[name]]
        if missing:
            seen = list(dict.fromkeys(r["id"] for r in rows))
            raise UsageError(
                f"responses file {path} does not match benchmark {name}: {len(missing)} of {len(items)} ids "
                f"missing ({_some(missing)}); the file has ids like {_some(seen, 3)}"
            )
        for item_id, item_rows in routed[name].items():
            routed[name][item_id] = _ordered_samples(path, item_id, item_rows)
        counts = {item_id: len(r) for item_id, r in routed[name].items()}
        low, high = min(counts.values()), max(counts.values())
        if low != high:
            short = next(i for i, c in counts.items() if c == low)
            raise UsageError(
                f"responses file {path} gives {low} to {high} samples per item for {name} ({short} has {low}); "
                f"pass@k and avg@k need the same number for every item: complete or trim the file"
            )
    return routed


def _ordered_samples(path: Path, item_id: str, rows: list[dict]) -> list[dict]:
    if not all("sample" in r for r in rows):
        return rows  # samples in file order
    seen: dict = {}
    for r in rows:
        if r["sample"] in seen:
            raise UsageError(
                f"responses file {path} has sample {r['sample']} of {item_id} twice; each (id, sample) "
                f"must appear once (a repeated row would count one sample twice): remove the duplicates"
            )
        seen[r["sample"]] = r
    return [seen[k] for k in sorted(seen)]


def _some(ids: list[str], shown: int = 5) -> str:
    head = ", ".join(ids[:shown])
    return f"{head}, ..." if len(ids) > shown else head


def evaluate_model(
    backend,
    benches: list,
    items: dict[str, list[Item]],
    samplings: dict,
    pool,
    samples_dir: Path,
    model_id: str,
    backend_kind: str,
) -> tuple[dict[str, dict], dict[str, dict[str, list[dict]]]]:
    """Generate (resumably) and score every benchmark with one backend; (name -> summary,
    name -> item id -> rows)."""
    summaries, rows = {}, {}
    for bench in benches:
        sampling = samplings[bench.NAME]
        settings = {
            "benchmark": bench.NAME,
            "model": model_id,
            "backend": backend_kind,
            "sampling": sampling.as_dict(),
        }
        path = samples_dir / f"{bench.NAME}-{settings_id(settings)}.jsonl"
        rows[bench.NAME] = generate(backend, bench, items[bench.NAME], sampling, pool, path, settings)
        summaries[bench.NAME] = summary_for(
            bench, items[bench.NAME], rows[bench.NAME], path, sampling.as_dict()
        )
    return summaries, rows


def summary_for(
    bench, items: list[Item], rows: dict[str, list[dict]], path: Path, sampling: dict | None
) -> dict:
    """The benchmark's metrics, with where its per-sample rows are and how they were generated."""
    summary = summarise([rows[it.id] for it in items], bench.KIND)
    return {**summary, "kind": bench.KIND, "sampling": sampling, "samples_file": str(path)}


def measure_latency(backend, items: list[Item], sampling: SamplingConfig) -> dict:
    """What an interactive user waits for: prompts sent one at a time, one sample each.

    ttft_s: mean seconds to the first output token, timed as a call capped at one new token (prefill
    + one decode step); s_per_output_token: time per output token after the first (TPOT), the full
    responses' time minus their TTFT over their tokens minus one, pooled over prompts (None when
    every response is a single token); s_per_response and tokens_per_response: the full responses.
    One untimed call first, so start-up costs (CUDA context, a server's first request) are excluded."""
    assert items, "latency needs at least one prompt"
    full = SamplingConfig(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_new_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    first = SamplingConfig(n=1, temperature=sampling.temperature, top_p=sampling.top_p, max_new_tokens=1)
    prompts = [backend.prompt_token_ids(list(it.messages)) for it in items]
    backend.generate(prompts[:1], first, seed=sampling.seed)  # warm-up, untimed
    ttft, total, tokens = [], [], []
    for prompt in prompts:
        t0 = time.perf_counter()
        backend.generate([prompt], first, seed=sampling.seed)
        t1 = time.perf_counter()
        (sample,) = backend.generate([prompt], full, seed=sampling.seed)[0]
        ttft.append(t1 - t0)
        total.append(time.perf_counter() - t1)
        tokens.append(sample.num_tokens)
    decode = [(t - f, n - 1) for t, f, n in zip(total, ttft, tokens, strict=True) if n > 1]
    decode_tokens = sum(n for _, n in decode)
    return {
        "prompts": len(prompts),
        "ttft_s": sum(ttft) / len(ttft),
        "s_per_output_token": max(sum(s for s, _ in decode), 0.0) / decode_tokens if decode_tokens else None,
        "s_per_response": sum(total) / len(total),
        "tokens_per_response": sum(tokens) / len(tokens),
    }
