"""`make demo`: the whole distillation loop on the embedded toy task, on a CPU, with no model hub.

    teacher (committed, trained by `python -m trace_gen.toy.build`)
      → python -m trace_gen        sample traces at temperature 0.6 (R1 default), keep the verified ones
      → python -m sft run          LoRA student on the kept traces (and, as an ablation, on all traces)
      → python -m eval_harness compare   teacher vs students on 300 held-out toy problems

Usage:
    python scripts/demo.py [--out runs/demo] [--n 2000] [--max-steps 600] [--no-ablation]
Ends by printing the table and writing OUT/report.json.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "trace_gen" / "toy" / "assets"


def stage(title: str, cmd: list[str], timings: dict) -> None:
    print(f"\n=== {title}\n$ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    timings[title] = round(time.perf_counter() - t0, 1)
    print(f"--- {title}: {timings[title]:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--n", type=int, default=2000, help="verified traces to generate")
    p.add_argument("--max-steps", type=int, default=400, help="student LoRA steps")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test problems only")
    p.add_argument("--no-ablation", action="store_true", help="skip the student trained on unfiltered traces")
    args = p.parse_args(argv)
    py, out, timings = sys.executable, args.out, {}
    traces = out / "traces"
    start = time.perf_counter()
    stage(
        "trace_gen: sample and verify teacher traces",
        [
            py,
            "-m",
            "trace_gen",
            "--out",
            str(traces),
            "--n",
            str(args.n),
            "--samples-per-prompt",
            "4",
            "--temperature",
            "0.6",
            "--keep-rejected",
        ],
        timings,
    )
    stage(
        "sft: LoRA student on verified traces",
        [
            py,
            "-m",
            "sft",
            "run",
            "--traces",
            str(traces),
            "--output_dir",
            str(out / "student"),
            "--max_steps",
            str(args.max_steps),
        ],
        timings,
    )
    models = {"teacher": str(ASSETS / "teacher"), "student": str(out / "student" / "merged")}
    if not args.no_ablation:
        stage(
            "sft: LoRA student on ALL traces (unfiltered ablation)",
            [
                py,
                "-m",
                "sft",
                "run",
                "--traces",
                str(traces),
                "--include_rejected",
                "true",
                "--keep_verdicts",
                "all",
                "--output_dir",
                str(out / "student_unfiltered"),
                "--max_steps",
                str(args.max_steps),
            ],
            timings,
        )
        models["student_unfiltered"] = str(out / "student_unfiltered" / "merged")
    models["student_untrained"] = str(ASSETS / "student_base")
    cmd = [
        py,
        "-m",
        "eval_harness",
        "compare",
        "--benchmarks",
        "toy",
        "--output-dir",
        str(out),
        "--models",
        *[f"{k}={v}" for k, v in models.items()],
    ]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    stage("eval_harness: teacher vs students on held-out toy problems", cmd, timings)
    total = round(time.perf_counter() - start, 1)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text())
    report["demo"] = {
        "stage_seconds": timings,
        "total_seconds": total,
        "trace_stats": json.loads((traces / "stats.json").read_text()),
    }
    report_path.write_text(json.dumps(report, indent=2))
    m = report["models"]
    print(f"\ndemo finished in {total:.0f} s (stages: {timings})")
    print(
        f"student / teacher accuracy: {m['student']['accuracy']:.3f} / {m['teacher']['accuracy']:.3f} "
        f"= {m['student']['accuracy'] / max(m['teacher']['accuracy'], 1e-9):.3f}; "
        f"params {m['student']['params'] / m['teacher']['params']:.1%} of the teacher"
    )
    if "student_unfiltered" in m:
        print(
            f"filtered vs unfiltered traces: {m['student']['accuracy']:.3f} vs {m['student_unfiltered']['accuracy']:.3f}"
        )
    print(f"report: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
