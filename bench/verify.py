"""Benchmark the verifiers against the targets of issue #11 and print measured values beside them.

- math throughput: verdicts/s/core in MathVerifierPool (process isolation) on MATH-500 reference
  solutions padded to realistic reasoning length (~30k characters inside <think>...</think>), half of
  them against another problem's gold; the overhead ratio is CPU time per verdict isolated over
  in-process (verify_math);
- HumanEval: the 164 canonical solutions through the sandbox harness (time on `--workers` cores),
  beside plain `python -c` subprocesses of HumanEval's own program (no namespaces, limits or uid drop);
- the adversarial code suite of tests/verify/test_code_hacks.py: hacks that passed (target 0);
- oracle: reference solutions of every shipped math benchmark, fast path on and off;
- false accepts: \\boxed{0}, \\boxed{1}, \\boxed{2} on every item, and a shuffled control (each reference
  against another item's gold), on MATH-500, GSM8K and the adversarial set of
  tests/verify/test_math_adversarial.py;
- extraction without a box: the prose chain against math-verify on the whole text, on GSM8K train
  solutions without the "####" line (all 7,473) and MATH-500 solutions with \\boxed{} unwrapped.

Usage:
    flock /tmp/heavy.lock python bench/verify.py [--workers 2] [--traces 2000] [--trace-chars 30000] \\
        [--stages math,humaneval,code_hacks,oracle,false_accepts,extraction]
The last line printed is one JSON object with every number.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# `python bench/verify.py` puts bench/ first on sys.path: make this checkout's packages win.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval_harness.benchmarks import BENCHMARKS  # noqa: E402
from eval_harness.evaluate import oracle_completions  # noqa: E402
from tests.verify import test_code_hacks as hacks  # noqa: E402
from tests.verify.test_extraction import box_free_sets  # noqa: E402
from tests.verify.test_math_adversarial import CASES  # noqa: E402
from trace_gen.verify.answers import normalise_answer  # noqa: E402
from trace_gen.verify.benchmarks import read_jsonl  # noqa: E402
from trace_gen.verify.code import check_humaneval, check_humaneval_many, humaneval_program  # noqa: E402
from trace_gen.verify.math import verify_math, verify_whole_text  # noqa: E402
from trace_gen.verify.pool import MathVerifierPool, WorkerPool  # noqa: E402
from trace_gen.verify.sandbox import sandbox_setup  # noqa: E402

MATH_BENCHMARKS = ("math500", "gsm8k", "aime24", "amc23", "toy")


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
        "humaneval_flagged": sum(bool(v.flags) for v in verdicts),
        "humaneval_plain_subprocess_s": round(plain_s, 2),
        "humaneval_plain_passed": sum(code == 0 for code in codes),
        "sandbox_overhead_ratio": round(sandbox_s / plain_s, 3),
        "sandbox_isolation": mode,
        "sandbox_python": python,
    }


def bench_code_hacks(workers: int) -> dict:
    """The adversarial suite: early exits, tampering, always-equal values, attempted attacks."""
    completions = {f"exit:{k}": v for k, v in hacks.EARLY_EXITS.items()}
    completions |= {f"tamper:{k}": v[0] for k, v in hacks.TAMPERING.items()}
    completions |= {f"equal:{k}": v for k, v in hacks.ALWAYS_EQUAL.items()}
    attempts = {k: v[0] + hacks.RIGHT for k, v in hacks.ATTEMPTS.items()}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = dict(zip(completions, pool.map(hacks.verdict, completions.values()), strict=True))
        tried = dict(zip(attempts, pool.map(hacks.verdict, attempts.values()), strict=True))
    return {
        "code_hacks": len(verdicts),
        "code_hacks_passed": sorted(k for k, v in verdicts.items() if v.verdict == "passed"),
        "code_attempts": len(tried),
        "code_attempts_flagged": sum(
            expected in tried[k].flags for k, (_, expected) in hacks.ATTEMPTS.items()
        ),
        "code_correct_unflagged": check_humaneval(hacks.PROMPT, hacks.RIGHT, hacks.TEST, "add").flags == (),
    }


def bench_oracle(workers: int) -> dict:
    out = {}
    for name in MATH_BENCHMARKS:
        bench = BENCHMARKS[name]
        items = bench.load()
        completions = [rows[0]["completion"] for rows in oracle_completions(bench, items).values()]
        for fast_path in (True, False):
            with MathVerifierPool(workers=workers, timeout_s=20, fast_path=fast_path) as pool:
                verdicts = pool.map(completions, [it.gold for it in items], bench.EXTRACTORS)
            key = f"oracle_{name}_{'fast' if fast_path else 'nofast'}"
            out[key] = round(sum(v.verdict == "correct" for v in verdicts) / len(items), 4)
    return out


def _false_accepts(pool: MathVerifierPool, completions: list[str], golds: list[str], extractors) -> dict:
    """Constant answers on every item and a shuffled control: accepts where the golds differ."""
    out = {}
    for constant in "012":
        verdicts = pool.map([f"\\boxed{{{constant}}}"] * len(golds), golds)
        out[f"const_{constant}"] = sum(
            v.kept and normalise_answer(g) != constant for v, g in zip(verdicts, golds, strict=True)
        )
    perm = list(range(len(golds)))
    random.Random(0).shuffle(perm)
    same = [f.result() for f in [pool.submit_answer(golds[i], golds[j]) for i, j in enumerate(perm)]]
    pairs = [(i, j) for (i, j), v in zip(enumerate(perm), same, strict=True) if not v.kept]
    control = pool.map([completions[i] for i, _ in pairs], [golds[j] for _, j in pairs], extractors)
    out["shuffled"] = sum(v.kept for v in control)
    out["shuffled_pairs"] = len(pairs)
    return out


def bench_false_accepts(workers: int) -> dict:
    math500, gsm = read_jsonl("math500.jsonl"), read_jsonl("gsm8k_test.jsonl")
    sets = {
        "math500": ([r["solution"] for r in math500], [r["answer"] for r in math500], ("boxed",)),
        "gsm8k": (
            [r["answer"] for r in gsm],
            [normalise_answer(r["answer"].split("####")[-1]) for r in gsm],
            ("gsm8k",),
        ),
        "adversarial": ([f"\\boxed{{{a}}}" for _, a, _ in CASES], [g for g, _, _ in CASES], ("boxed",)),
    }
    out = {}
    with MathVerifierPool(workers=workers, timeout_s=20) as pool:
        for name, (completions, golds, extractors) in sets.items():
            counts = _false_accepts(pool, completions, golds, extractors)
            out |= {f"false_accepts_{name}_{k}": v for k, v in counts.items()}
    return out


def bench_extraction(workers: int) -> dict:
    out = {}
    for name, (solutions, golds) in box_free_sets().items():
        with MathVerifierPool(workers=workers, timeout_s=20) as pool:
            chain = pool.map(solutions, golds, ("prose",))
            control = _false_accepts(pool, solutions, golds, ("prose",))
        with WorkerPool(verify_whole_text, workers, 20, lambda t: False, lambda e: False) as pool:
            baseline = pool.map_args(list(zip(solutions, golds, strict=True)))
        out |= {
            f"nobox_{name}_items": len(golds),
            f"nobox_{name}_chain_correct": sum(v.kept for v in chain),
            f"nobox_{name}_math_verify_correct": sum(baseline),
            f"nobox_{name}_chain_shuffled_false_accepts": control["shuffled"],
            f"nobox_{name}_by_step": dict(
                Counter(v.reason.rsplit("by ", 1)[-1].rstrip(")") for v in chain if v.kept)
            ),
        }
    return out


TARGETS = [  # (name, measured key(s), target text, check)
    ("adversarial code suite: hacks passed", "code_hacks_passed", "0", lambda r: not r["code_hacks_passed"]),
    (
        "attempted attacks flagged (tests still pass)",
        "code_attempts_flagged",
        "all",
        lambda r: r["code_attempts_flagged"] == r["code_attempts"],
    ),
    ("HumanEval canonical passed", "humaneval_passed", "164/164", lambda r: r["humaneval_passed"] == 164),
    (
        "HumanEval canonical seconds",
        "humaneval_canonical_s",
        "<= 20 s on 2 cores",
        lambda r: r["humaneval_canonical_s"] <= 20,
    ),
    (
        "math verdicts/s/core (isolated)",
        "math_verdicts_per_s_per_core",
        ">= 200",
        lambda r: r["math_verdicts_per_s_per_core"] >= 200,
    ),
]


def targets_table(r: dict) -> list[str]:
    """One line per target with its measured value (only the stages that ran)."""
    rows = [
        (name, r[key], target, "ok" if ok(r) else "MISSED") for name, key, target, ok in TARGETS if key in r
    ]
    for name in MATH_BENCHMARKS if "oracle_toy_fast" in r else ():
        fast, nofast = r[f"oracle_{name}_fast"], r[f"oracle_{name}_nofast"]
        rows.append(
            (
                f"--oracle {name}: fast path on / off",
                f"{fast:.4f} / {nofast:.4f}",
                "1.0 / >= 0.99",
                "ok" if fast == 1.0 and nofast >= 0.99 else "MISSED",
            )
        )
    for name in ("math500", "gsm8k", "adversarial") if "false_accepts_gsm8k_shuffled" in r else ():
        counts = [r[f"false_accepts_{name}_{k}"] for k in ("const_0", "const_1", "const_2", "shuffled")]
        rows.append(
            (
                f"false accepts {name}: \\boxed{{0,1,2}}, shuffled",
                "/".join(map(str, counts)),
                "0/0/0/0",
                "ok" if not any(counts) else "MISSED",
            )
        )
    for name in ("gsm8k_train", "math500") if "nobox_math500_items" in r else ():
        chain, mv = r[f"nobox_{name}_chain_correct"], r[f"nobox_{name}_math_verify_correct"]
        fa = r[f"nobox_{name}_chain_shuffled_false_accepts"]
        rows.append(
            (
                f"no-box {name}: chain vs math-verify (of {r[f'nobox_{name}_items']}), false accepts",
                f"{chain} vs {mv}, {fa}",
                ">=, 0",
                "ok" if chain >= mv and fa == 0 else "MISSED",
            )
        )
    width = max(len(row[0]) for row in rows)
    return [f"{a:<{width}}  {b!s:>22}  {c:>20}  {d}" for a, b, c, d in rows]


STAGES = {
    "math": bench_math,
    "humaneval": bench_humaneval,
    "code_hacks": bench_code_hacks,
    "oracle": bench_oracle,
    "false_accepts": bench_false_accepts,
    "extraction": bench_extraction,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--trace-chars", type=int, default=30000)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    args = parser.parse_args()
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; choose from {','.join(STAGES)}")
    result = {"workers": args.workers, "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    result["load_avg_1m_at_start"] = os.getloadavg()[0]
    for name in args.stages.split(","):
        start, stage = time.perf_counter(), STAGES[name]
        result |= (
            stage(args.workers, args.traces, args.trace_chars) if stage is bench_math else stage(args.workers)
        )
        print(f"{name}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
    result["load_avg_1m_at_end"] = os.getloadavg()[0]
    print("\n".join(targets_table(result)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
