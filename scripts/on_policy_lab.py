"""Evidence for `python -m sft on-policy` on the toy task: on-policy distillation vs as many extra SFT steps.

Every arm starts from the demo's distilled student (OUT_DEMO/student/merged; `scripts/demo.py --no-ablation`
builds it when missing) and trains a fresh LoRA of the demo's shape (r=64, all linears + the tied
embedding) for the same number of steps of 32 sequences, the same learning rate and schedule, per seed:

  sft         python -m sft run        cross-entropy on the demo's verified teacher traces (more of the same)
  on_policy   python -m sft on-policy  reverse KL to the teacher on the student's own samples (lambda = 1)
  off_policy  python -m sft on-policy --lmbda 0   reverse KL to the teacher on the traces: the teacher's
              distribution without the student's samples, to tell "on-policy" from "imitating the teacher"

The three arms of a seed run side by side (one thread each); then `eval_harness compare` scores every
model greedily on the 300 held-out toy problems. Writes OUT/report.json, report.md and report.png: per
arm the mean accuracy over seeds with a 95% t-interval, and each arm minus sft pooled over seeds with a
95% paired bootstrap over problems.

Usage:
    python scripts/on_policy_lab.py [--demo runs/demo] [--out runs/on_policy] [--steps 100] [--seeds 0 1 2] [--limit N]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from demo import ASSETS, side_by_side, stage  # scripts/demo.py: the same stage runner

ARMS = ("sft", "on_policy", "off_policy")
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
COMMON = ["--learning_rate", "1e-3", "--lr_scheduler_type", "cosine", "--warmup_steps", "5",
          "--per_device_train_batch_size", "32", "--logging_steps", "10", "--save_strategy", "no"]  # fmt: skip


def arm_command(
    py: str, arm: str, student: Path, traces: Path, out: Path, steps: int, seed: int
) -> list[str]:
    run = ["--model_name_or_path", str(student), "--output_dir", str(out), "--max_steps", str(steps),
           "--seed", str(seed), "--data_seed", str(seed), *COMMON]  # fmt: skip
    if arm == "sft":
        return [
            py,
            "-m",
            "sft",
            "run",
            "--config",
            "configs/sft/toy_student.yaml",
            "--traces",
            str(traces),
            "--resume_from_checkpoint",  # a rerun trains again from step 0 (the traces may have changed)
            "false",
            *run,
        ]
    # the traces' prompts for every arm: on_policy samples on them (each prompt once), off_policy reads the traces
    on_policy = [
        py,
        "-m",
        "sft",
        "on-policy",
        "--config",
        "configs/sft/toy_on_policy.yaml",
        "--prompts",
        str(traces),
        *run,
    ]
    if arm == "on_policy":
        return on_policy
    return [*on_policy, "--lmbda", "0", "--max_completion_length", "256"]


def correct_by_problem(eval_dir: Path, name: str) -> dict[str, float]:
    """Problem id -> 1.0/0.0 from eval_harness's per-sample file of one model (greedy: one sample each)."""
    (path,) = (eval_dir / "samples" / name).glob("toy-*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: float(r["verdict"] == "correct") for r in rows}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> list[float]:
    """95% percentile interval of mean(a - b) over problems; a, b: (seeds, problems) 0/1, same order."""
    diff = (a - b).mean(0)  # (problems,) averaged over seeds
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[idx].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def t_interval(accs: np.ndarray) -> list[float]:
    """95% t-interval of the mean of per-seed accuracies (seeds,), clipped to [0, 1]; one seed: [mean, mean]."""
    half = T_975.get(len(accs) - 1, 1.96) * accs.std(ddof=1) / np.sqrt(len(accs)) if len(accs) > 1 else 0.0
    return [round(max(0.0, float(accs.mean() - half)), 4), round(min(1.0, float(accs.mean() + half)), 4)]


def summarise(report: dict, eval_dir: Path, seeds: list[int]) -> dict:
    models = report["models"]
    problems = sorted(correct_by_problem(eval_dir, "student"))
    grid = {
        arm: np.array([[correct_by_problem(eval_dir, f"{arm}_s{s}")[p] for p in problems] for s in seeds])
        for arm in ARMS
    }  # (seeds, problems)
    arms = {}
    for arm in ARMS:
        accs = np.array([models[f"{arm}_s{s}"]["accuracy"] for s in seeds])
        arms[arm] = {
            "per_seed": accs.round(4).tolist(),
            "mean": round(float(accs.mean()), 4),
            "ci95_seeds": t_interval(accs),
            "minus_sft": round(float((grid[arm] - grid["sft"]).mean()), 4),
            "minus_sft_ci95_problems": [round(x, 4) for x in paired_bootstrap(grid[arm], grid["sft"])],
        }
    return {
        "start_student": models["student"]["accuracy"],
        "start_student_ci95": models["student"]["benchmarks"]["toy"]["pass@1_ci"],
        "teacher": models["teacher"]["accuracy"],
        "arms": arms,
        "problems": len(problems),
    }


def write_markdown(out: Path, summary: dict, meta: dict) -> None:
    s = summary
    lines = [
        "# On-policy distillation vs extra SFT steps (toy task)",
        "",
        f"Start: the demo's distilled student, held-out accuracy {s['start_student']:.3f} "
        f"[{s['start_student_ci95'][0]:.3f}, {s['start_student_ci95'][1]:.3f}] (teacher {s['teacher']:.3f}). "
        f"Each arm: {meta['steps']} more LoRA steps of 32 sequences, seeds {meta['seeds']}; greedy accuracy on "
        f"{s['problems']} held-out problems.",
        "",
        "| arm | per seed | mean [95% t-interval over seeds] | arm - sft [95% paired bootstrap over problems] "
        "| tokens/s generation / training |",
        "|---|---|---|---|---|",
    ]
    for arm, a in s["arms"].items():
        runs = [meta["run_summaries"][f"{arm}_s{seed}"] for seed in meta["seeds"]]
        speeds = [[r.get(f"tokens_per_s_{k}") for r in runs] for k in ("generation", "training")]
        speed = " / ".join("-" if None in v else f"{sum(v) / len(v):.0f}" for v in speeds)
        diff = (
            "-"
            if arm == "sft"
            else f"{a['minus_sft']:+.3f} [{a['minus_sft_ci95_problems'][0]:+.3f}, {a['minus_sft_ci95_problems'][1]:+.3f}]"
        )
        lines.append(
            f"| {arm} | {', '.join(f'{x:.3f}' for x in a['per_seed'])} | {a['mean']:.3f} "
            f"[{a['ci95_seeds'][0]:.3f}, {a['ci95_seeds'][1]:.3f}] | {diff} | {speed} |"
        )
    lines += [
        "",
        f"Wall time {meta['wall_seconds']:.0f} s; load before/after: {meta['load_before']} / {meta['load_after']}.",
        "",
    ]
    lines += ["Commands:", "", *[f"    {c}" for c in meta["commands"]], ""]
    (out / "report.md").write_text("\n".join(lines))


def plot(out: Path, summary: dict, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for x, a in enumerate(summary["arms"].values()):
        ax.scatter(
            [x] * len(a["per_seed"]),
            a["per_seed"],
            color="0.55",
            zorder=2,
            label="one seed" if x == 0 else None,
        )
        lo, hi = a["ci95_seeds"]
        ax.errorbar(x, a["mean"], yerr=[[a["mean"] - lo], [hi - a["mean"]]], fmt="o", color="C0", capsize=6,
                    zorder=3, label="mean, 95% t-interval" if x == 0 else None)  # fmt: skip
    ax.axhline(summary["start_student"], color="C2", ls="--", label="start: demo student")
    ax.axhline(summary["teacher"], color="C3", ls=":", label="teacher")
    ax.set_xticks(range(len(summary["arms"])), list(summary["arms"]))
    ax.set_ylabel(f"held-out accuracy (greedy, {summary['problems']} problems)")
    ax.set_title(f"toy task: {len(seeds)} seeds per arm, same steps from the demo student")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo", type=Path, default=Path("runs/demo"), help="scripts/demo.py output directory")
    p.add_argument("--out", type=Path, default=Path("runs/on_policy"))
    p.add_argument("--steps", type=int, default=100, help="extra training steps per arm")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test problems only")
    args = p.parse_args(argv)
    py, out, timings = sys.executable, args.out.resolve(), {}
    args.demo = args.demo.resolve()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    start = time.perf_counter()
    student, traces = args.demo / "student" / "merged", args.demo / "traces"
    if not (student / "config.json").is_file():
        stage(
            "demo: the distilled student",
            [py, "scripts/demo.py", "--out", str(args.demo), "--no-ablation"],
            timings,
        )
    commands, models = [], {"student": str(student), "teacher": str(ASSETS / "teacher")}
    for seed in args.seeds:
        stages = {}
        for arm in ARMS:
            cmd = arm_command(py, arm, student, traces, out / f"{arm}_s{seed}", args.steps, seed)
            stages[f"{arm} seed {seed}"] = cmd
            models[f"{arm}_s{seed}"] = str(out / f"{arm}_s{seed}" / "merged")
            commands.append(" ".join(["python", *cmd[1:]]))
        side_by_side(stages, out / "logs", timings)
    eval_cmd = [py, "-m", "eval_harness", "compare", "--benchmarks", "toy", "--output-dir", str(out / "eval"),
                "--models", *[f"{k}={v}" for k, v in models.items()]]  # fmt: skip
    eval_cmd += ["--limit", str(args.limit)] if args.limit else []
    stage("eval_harness: every model on the held-out toy problems", eval_cmd, timings)
    commands.append(" ".join(["python", *eval_cmd[1:]]))
    report = json.loads((out / "eval" / "report.json").read_text())
    summary = summarise(report, out / "eval", args.seeds)
    meta = {
        "steps": args.steps, "seeds": args.seeds, "stage_seconds": timings,
        "wall_seconds": round(time.perf_counter() - start, 1), "load_before": " ".join(load_before),
        "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]), "commands": commands,
        "run_summaries": {
            name: json.loads((Path(path).parent / "run_summary.json").read_text())
            for name, path in models.items() if name not in ("student", "teacher")
        },
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps({"summary": summary, "meta": meta}, indent=2))
    write_markdown(out, summary, meta)
    plot(out, summary, args.seeds)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
