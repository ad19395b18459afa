"""Benchmark the verifiers: math verdicts/s/core with process isolation, HumanEval through the sandbox.

Math traces are MATH-500 reference solutions padded to realistic reasoning length (~30k characters
inside <think>...</think>, the boxed answer after it). The isolation overhead ratio is the time
per verdict per core in MathVerifierPool over the time of the same call in-process (verify_math).
HumanEval runs the 164 canonical solutions through the full sandbox; its overhead ratio compares
with plain `python -c` subprocesses (no namespaces, limits or uid drop) on the same programs.

Usage:
    flock /tmp/heavy.lock python bench/verify.py [--workers 2] [--traces 2000] [--trace-chars 30000]
The last line printed is one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# `python bench/verify.py` puts bench/ first on sys.path: make this checkout's packages win.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace_gen.verify.benchmarks import read_jsonl
from trace_gen.verify.code import check_humaneval_many, humaneval_program
from trace_gen.verify.math import verify_math
from trace_gen.verify.pool import MathVerifierPool
from trace_gen.verify.sandbox import sandbox_setup


def realistic_traces(n: int, chars: int) -> tuple[list[str], list[str]]:
    """n (completion, gold) pairs: a MATH-500 solution padded to `chars` of reasoning, then the answer.

    Every other pair gets the gold answer of another problem, so about half are wrong answers
    (which always go through math-verify; identical answers are decided without parsing)."""
    rows = read_jsonl("math500.jsonl")
    completions, golds = [], []
    for i in range(n):
        row = rows[i % len(rows)]
        gold = row["answer"] if i % 2 == 0 else rows[(i * 7 + 3) % len(rows)]["answer"]
        reasoning = (row["problem"] + "\n" + row["solution"] + "\nWait, let me double-check that.\n") * (
            chars // (len(row["solution"]) + len(row["problem"]) + 40) + 1
        )
        completions.append(f"<think>{reasoning[:chars]}</think>\n\n{row['solution']}")
        golds.append(gold)
    return completions, golds


def bench_math(workers: int, n: int, chars: int) -> dict:
    completions, golds = realistic_traces(n, chars)
    start = time.perf_counter()
    with MathVerifierPool(workers=workers, timeout_s=10) as pool:
        startup_s = time.perf_counter() - start
        pool.map(completions[:50], golds[:50])  # warm the workers
        cpu0, wcpu0 = time.process_time(), pool.worker_cpu_s()
        start = time.perf_counter()
        verdicts = pool.map(completions, golds)
        isolated_s = time.perf_counter() - start
        isolated_cpu = time.process_time() - cpu0 + pool.worker_cpu_s() - wcpu0
    n_plain = min(n, 1000)
    cpu0, start = time.process_time(), time.perf_counter()
    plain = [verify_math(c, g) for c, g in zip(completions[:n_plain], golds[:n_plain], strict=True)]
    plain_s, plain_cpu = time.perf_counter() - start, time.process_time() - cpu0
    assert [v.verdict for v in plain] == [v.verdict for v in verdicts[:n_plain]], "isolation changed verdicts"
    return {
        "math_traces": n,
        "math_trace_chars": sum(map(len, completions)) // n,
        "math_verdicts": dict(Counter(v.verdict for v in verdicts)),
        "math_pool_startup_s": round(startup_s, 3),
        # wall clock over the cores used (what a user sees); CPU-time based (robust to a busy machine)
        "math_verdicts_per_s_per_core": round(n / isolated_s / min(workers, os.cpu_count() or 1), 1),
        "math_verdicts_per_cpu_s": round(n / isolated_cpu, 1),
        "math_unisolated_verdicts_per_s": round(n_plain / plain_s, 1),
        "math_unisolated_verdicts_per_cpu_s": round(n_plain / plain_cpu, 1),
        # CPU time per verdict, isolated (parent + workers) over in-process
        "isolation_overhead_ratio": round((isolated_cpu / n) / (plain_cpu / n_plain), 3),
    }


def bench_humaneval(workers: int) -> dict:
    tasks = read_jsonl("humaneval.jsonl.gz")
    python, mode = sandbox_setup()
    items = [{**t, "completion": t["canonical_solution"]} for t in tasks]
    start = time.perf_counter()
    verdicts = check_humaneval_many(items, workers=workers)
    sandbox_s = time.perf_counter() - start

    def plain(item: dict) -> int:
        program = humaneval_program(item["prompt"], item["completion"], item["test"], item["entry_point"])
        return subprocess.run([python, "-c", program], capture_output=True, timeout=30).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = list(pool.map(plain, items))
    plain_s = time.perf_counter() - start
    return {
        "humaneval_canonical_s": round(sandbox_s, 2),
        "humaneval_passed": sum(v.verdict == "passed" for v in verdicts),
        "humaneval_plain_subprocess_s": round(plain_s, 2),
        "humaneval_plain_passed": sum(code == 0 for code in codes),
        "sandbox_overhead_ratio": round(sandbox_s / plain_s, 3),
        "sandbox_isolation": mode,
        "sandbox_python": python,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--trace-chars", type=int, default=30000)
    args = parser.parse_args()
    result = {"workers": args.workers, "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    result["load_avg_1m_at_start"] = os.getloadavg()[0]
    result |= bench_math(args.workers, args.traces, args.trace_chars)
    print(json.dumps(result), file=sys.stderr)
    result |= bench_humaneval(args.workers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
