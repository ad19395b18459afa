"""Benchmark trace_gen's own cost: the full pipeline vs the bare backend on the same prompts and seeds.

Measured side by side in one process, on one loaded backend (model load excluded from both):
- overhead_ratio: `trace_gen.pipeline.run` (prompt encoding, verification pool, format checks,
  Parquet parts + manifest, stats) over bare `backend.generate` on the same batches with the same
  sampling and batch seeds; the best of `--repeats` alternating rounds of each;
- batched_speedup (hf): one `generate` call per prompt vs length-bucketed batches, same prompts, n=1;
- with vllm importable (`--backends hf,vllm`): the same overhead ratio for the in-process vLLM engine,
  and `logprob_bytes_per_token`: on-disk (zstd Parquet) bytes of token_ids + top-k ids/logprobs per
  generated token at `--logprobs` K.
The teacher is the toy teacher when built (trace_gen/toy/assets/teacher), else a random tiny Qwen3.

Usage:
    flock /tmp/heavy.lock python bench/trace_gen_overhead.py                  # hf only, ~2 min on CPU
    VLLM_CPU_KVCACHE_SPACE=1 flock /tmp/heavy.lock .venv-vllm/bin/python bench/trace_gen_overhead.py \\
        --backends hf,vllm
The last line printed is one JSON object.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on sys.path: make this checkout's packages win.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace_gen.backends import SamplingConfig, make_backend
from trace_gen.config import RunConfig
from trace_gen.pipeline import batch_seed, run
from trace_gen.prompts import toy_prompts

TOY_TEACHER = Path(__file__).resolve().parents[1] / "trace_gen" / "toy" / "assets" / "teacher"


def teacher_dir(tmp: Path) -> Path:
    if (TOY_TEACHER / "config.json").exists():
        return TOY_TEACHER
    from trace_gen.toy.models import init_model
    from trace_gen.toy.task import split
    from trace_gen.toy.tokenizer import build_tokenizer

    init_model("teacher", build_tokenizer(split("train")[:300]), str(tmp / "teacher"), seed=0)
    return tmp / "teacher"


def bare(backend, prompts, sampling: SamplingConfig, batch_prompts: int) -> float:
    """What a hand-written loop would do: encode, generate batch by batch with the same seeds."""
    t0 = time.perf_counter()
    for batch, start in enumerate(range(0, len(prompts), batch_prompts)):
        chunk = prompts[start : start + batch_prompts]
        ids = [backend.prompt_token_ids(list(p.messages)) for p in chunk]
        backend.generate(ids, sampling, seed=batch_seed(sampling.seed, batch))
    return time.perf_counter() - t0


def pipeline(backend, prompts, sampling: SamplingConfig, batch_prompts: int, tmp: Path) -> tuple[float, Path]:
    out = Path(tempfile.mkdtemp(dir=tmp))
    config = RunConfig(teacher="bench", dataset="bench", output_dir=out, n=10**9, batch_size=batch_prompts,
                       keep_rejected=True, verify_workers=1, samples_per_prompt=sampling.n,
                       temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                       max_new_tokens=sampling.max_new_tokens, logprobs=sampling.logprobs)  # fmt: skip
    t0 = time.perf_counter()
    run(backend, prompts, config)
    return time.perf_counter() - t0, out


def overhead(backend, prompts, sampling, batch_prompts, repeats, tmp) -> dict:
    bare_s, pipe_s, own_s = [], [], []
    backend.generate([backend.prompt_token_ids(list(prompts[0].messages))], sampling, seed=0)  # warm-up
    out = None
    for _ in range(repeats):  # alternate, so machine-load drift hits both sides alike
        bare_s.append(bare(backend, prompts, sampling, batch_prompts))
        generating = backend.generate_seconds
        seconds, out = pipeline(backend, prompts, sampling, batch_prompts, tmp)
        pipe_s.append(seconds)
        own_s.append(seconds - (backend.generate_seconds - generating))  # time not spent in generate
    stats = json.loads((out / "stats.json").read_text())
    return {
        "bare_s": round(min(bare_s), 3),
        "pipeline_s": round(min(pipe_s), 3),
        "overhead_ratio": round(min(pipe_s) / min(bare_s), 4),
        "pipeline_own_s": round(min(own_s), 3),  # includes the verifier pool start (once per run)
        "generated_tokens": stats["tokens"],
        "tokens_per_s_bare": round(stats["tokens"] / min(bare_s), 1),
        "out": out,
    }


def batched_speedup(backend, prompts, max_new: int) -> dict:
    sampling = SamplingConfig(n=1, temperature=1.0, max_new_tokens=max_new)
    ids = [backend.prompt_token_ids(list(p.messages)) for p in prompts]
    t0 = time.perf_counter()
    for i, one in enumerate(ids):
        backend.generate([one], sampling, seed=i)
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.generate(ids, sampling, seed=0)
    batched = time.perf_counter() - t0
    return {
        "one_at_a_time_s": round(single, 3),
        "batched_s": round(batched, 3),
        "batched_speedup": round(single / batched, 2),
    }


def logprob_bytes(out: Path) -> dict:
    import pyarrow.parquet as pq

    nbytes, tokens = 0, 0
    for f in out.rglob("part-*.parquet"):
        meta = pq.ParquetFile(f).metadata
        names = {meta.schema.column(i).path.split(".")[0]: i for i in range(meta.num_columns)}
        for rg in range(meta.num_row_groups):
            for name in ("token_ids", "topk_ids", "topk_logprobs"):
                nbytes += meta.row_group(rg).column(names[name]).total_compressed_size
        tokens += sum(pq.read_table(f, columns=["num_tokens"]).column("num_tokens").to_pylist())
    return {"logprob_bytes_per_token": round(nbytes / max(tokens, 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="hf", help="comma list: hf, vllm")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--samples-per-prompt", type=int, default=4)
    parser.add_argument("--batch-prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--speedup-prompts", type=int, default=32)
    parser.add_argument("--logprobs", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=7, help="alternating rounds; the best of each side counts"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared box)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    try:
        teacher = teacher_dir(tmp)
        prompts = toy_prompts("train")[: args.prompts]
        sampling = SamplingConfig(
            n=args.samples_per_prompt, temperature=1.0, max_new_tokens=args.max_new_tokens
        )
        result = {
            "teacher": str(teacher),
            "prompts": len(prompts),
            "n": sampling.n,
            "max_new_tokens": sampling.max_new_tokens,
        }
        for kind in args.backends.split(","):
            options = {}
            if kind == "vllm":
                options = {"engine_args": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}}
            backend = make_backend(kind, str(teacher), batch_size=args.batch_prompts, **options)
            res = overhead(backend, prompts, sampling, args.batch_prompts, args.repeats, tmp)
            res.pop("out")
            if kind == "hf":
                res.update(batched_speedup(backend, prompts[: args.speedup_prompts], args.max_new_tokens))
            if kind == "vllm":
                lp = SamplingConfig(**{**sampling.as_dict(), "logprobs": args.logprobs})
                lp_res = overhead(backend, prompts, lp, args.batch_prompts, 1, tmp)
                res["logprobs_k"] = args.logprobs
                res["overhead_ratio_with_logprobs"] = lp_res["overhead_ratio"]
                res.update(logprob_bytes(lp_res["out"]))
                backend.close()
            print(f"{kind}: {json.dumps(res)}", flush=True)
            result[kind] = res
        first = result[args.backends.split(",")[0]]
        result["overhead_ratio"] = max(result[k]["overhead_ratio"] for k in args.backends.split(","))
        result["batched_speedup"] = result.get("hf", first).get("batched_speedup")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
