"""Generate answers for benchmark items with a backend and score them with trace_gen's verifier."""

import json
import time
from pathlib import Path

from tqdm import tqdm

from trace_gen.backends.base import SamplingConfig
from trace_gen.verify import verify_math


def score_benchmark(
    backend, bench, sampling: SamplingConfig, limit: int | None, out_dir: Path | None
) -> dict:
    """pass@1 (mean over the K samples of every item), truncation rate, mean response tokens."""
    items = bench.load(limit)
    prompts = [backend.prompt_token_ids(list(item.messages)) for item in items]
    results = []
    batch = backend.batch_size
    bar = tqdm(total=len(items), desc=f"{bench.NAME}", unit="item", dynamic_ncols=True)
    for start in range(0, len(items), batch):
        samples = backend.generate(prompts[start : start + batch], sampling, seed=sampling.seed + start)
        results += samples
        bar.update(len(samples))
    bar.close()
    rows, correct, truncated, tokens = [], 0, 0, 0
    for item, samples in zip(items, results, strict=True):
        for k, s in enumerate(samples):
            v = verify_math(s.text, item.gold)
            correct += v.kept
            truncated += s.finish_reason == "length"
            tokens += s.num_tokens
            rows.append(
                {
                    "id": item.id,
                    "sample": k,
                    "completion": s.text,
                    "finish_reason": s.finish_reason,
                    "num_tokens": s.num_tokens,
                    "gold": item.gold,
                    "verdict": v.verdict,
                    "reason": v.reason,
                }
            )
    total = len(rows)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / f"{bench.NAME}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return {
        "pass@1": correct / total,
        "n": len(items),
        "samples": sampling.n,
        "truncation_rate": truncated / total,
        "mean_response_tokens": tokens / total,
    }


def measure_latency(backend, bench, sampling: SamplingConfig, n_prompts: int = 8) -> float:
    """Mean seconds per response when prompts are sent one at a time (what an interactive user sees)."""
    items = bench.load(n_prompts)
    single = SamplingConfig(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_new_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    t0 = time.perf_counter()
    for item in items:
        backend.generate([backend.prompt_token_ids(list(item.messages))], single, seed=sampling.seed)
    return (time.perf_counter() - t0) / len(items)
