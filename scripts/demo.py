"""`make demo`: the whole distillation loop on the embedded toy task, on a CPU, with no model hub.

    teacher (committed, trained by `python -m trace_gen.toy.build`)
      → python -m trace_gen        sample traces at temperature 0.6 (R1 default), keep the verified ones
      → python -m sft run          LoRA student on the kept traces and, as an ablation, on all traces
                                   (the two trainings run side by side, one core and one thread each)
      → python -m eval_harness compare   teacher vs students on 300 held-out toy problems

Usage:
    python scripts/demo.py [--out runs/demo] [--n 2000] [--max-steps 800] [--no-ablation]
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
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
ONE_THREAD = {**ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def stage(title: str, cmd: list[str], timings: dict) -> None:
    print(f"\n=== {title}\n$ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=ENV)
    timings[title] = round(time.perf_counter() - t0, 1)
    print(f"--- {title}: {timings[title]:.0f} s", flush=True)


def side_by_side(stages: dict[str, list[str]], logs: Path, timings: dict) -> None:
    """Run independent stages at once, one thread each (2 cores: ~the wall time of one).

    The first stage prints to the terminal (its progress bar is the demo's); the others write to
    logs/<n>.log. If one fails, the others are stopped and the failed one's log tail is shown."""
    logs.mkdir(parents=True, exist_ok=True)
    t0, procs = time.perf_counter(), {}
    for i, (title, cmd) in enumerate(stages.items()):
        print(f"\n=== {title}\n$ {shlex.join(cmd)}", flush=True)
        log = None if i == 0 else open(logs / f"stage-{i}.log", "w")  # noqa: SIM115 (closed below)
        if log:
            print(f"(side by side with the stage above; output in {log.name})", flush=True)
        procs[title] = (subprocess.Popen(cmd, cwd=REPO, env=ONE_THREAD, stdout=log, stderr=log), log)
    failed = None
    for title, (proc, log) in procs.items():
        if proc.wait() != 0 and failed is None:
            failed = title
            for other, _ in procs.values():
                other.kill()
        timings[title] = round(time.perf_counter() - t0, 1)
        if log:
            log.close()
    if failed:
        log = procs[failed][1]
        tail = Path(log.name).read_text()[-3000:] if log else ""
        sys.exit(f"{tail}\ndemo: stage failed: {failed}")
    print(f"--- {', '.join(stages)}: {max(timings[t] for t in stages):.0f} s", flush=True)


def conditions() -> dict:
    """What the numbers depend on beyond this code and its fixed seeds: the torch build and the CPU
    float kernels it picks (README: the demo's numbers repeat exactly when these are the same)."""
    import platform

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    vendors = [line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")]
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_vendor": vendors[0] if vendors else platform.machine(),
    }


def sft_cmd(py: str, traces: Path, out: Path, max_steps: int, *extra: str) -> list[str]:
    return [
        py,
        "-m",
        "sft",
        "run",
        "--config",
        str(REPO / "configs" / "sft" / "toy_student.yaml"),
        "--traces",
        str(traces),
        "--output_dir",
        str(out),
        "--max_steps",
        str(max_steps),
        "--resume_from_checkpoint",  # a rerun trains again from step 0 (the traces may have changed)
        "false",
        *extra,
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--n", type=int, default=2000, help="verified traces to generate")
    p.add_argument("--max-steps", type=int, default=800, help="student LoRA steps")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test problems only")
    p.add_argument("--no-ablation", action="store_true", help="skip the student trained on unfiltered traces")
    args = p.parse_args(argv)
    py, out, timings = sys.executable, args.out, {}
    traces = out / "traces"
    start = time.perf_counter()
    sampling = ["--samples-per-prompt", "4", "--temperature", "0.6", "--keep-rejected"]
    # the published numbers are CPU fp32 transformers; without this a GPU machine would pick vLLM/bf16
    cpu = ["--backend", "hf", "--device", "cpu"]
    stage(
        "trace_gen: sample and verify teacher traces",
        [py, "-m", "trace_gen", "--output-dir", str(traces), "--n", str(args.n), *sampling, *cpu],
        timings,
    )
    training = {"sft: LoRA student on verified traces": sft_cmd(py, traces, out / "student", args.max_steps)}
    models = {"teacher": str(ASSETS / "teacher"), "student": str(out / "student" / "merged")}
    if not args.no_ablation:
        title = "sft: LoRA student on ALL traces (unfiltered ablation)"
        training[title] = sft_cmd(
            py,
            traces,
            out / "student_unfiltered",
            args.max_steps,
            *["--include_rejected", "true", "--keep_verdicts", "all"],
        )
        models["student_unfiltered"] = str(out / "student_unfiltered" / "merged")
    side_by_side(training, out / "logs", timings)
    models["student_untrained"] = str(ASSETS / "student_base")
    cmd = [py, "-m", "eval_harness", "compare", "--benchmarks", "toy", "--output-dir", str(out), *cpu]
    cmd += ["--models", *[f"{k}={v}" for k, v in models.items()]]
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
        "conditions": conditions(),
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
