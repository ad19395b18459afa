"""The distillation lab (issue #12): every distillation method of `python -m sft` on the toy task, fixed seeds.

Two families of students; every arm of a family trains for the same --steps (full fine-tuning, batch 32, lr 3e-3,
cosine) on the same teacher traces, per seed; then `eval_harness compare` scores every model greedily on the
held-out toy problems.

  S: the toy student shape (trace_gen/toy/assets/student_base: 4 layers, width 64, 175K parameters)
    s_sft         cross-entropy on the teacher's verified traces
    s_kd_offline  + token-level KD from the teacher's top-k logprobs stored in the traces (kd_alpha 0.5)
    s_kd_online   + token-level KD from the teacher run beside the student (kd_alpha 0.5)
    s_fitnets     s_kd_online + FitNets hidden-state MSE through a trained projection (width 64 -> 128)
  L: layer-initialised (`python -m sft init-student --keep-every 2`: teacher layers 0 and 2, width 128)
    l_random      the same shape, randomly initialised (one init per seed), cross-entropy only
    l_init        the layer-initialised student, cross-entropy only
    l_kd          + token-level online KD (kd_alpha 0.5)
    l_cos         l_kd + DistilBERT's hidden-state cosine (uniform layer map)
    l_attn        l_kd + TinyBERT's attention-map term
    l_rel         l_kd + relational KD (RKD distance + angle)
    l_multi       traces of two teachers (the toy teacher and the demo's distilled student) merged, KD
                  against both online teachers weighted 1:1
    l_born        born-again: the teacher is l_kd of the same seed (same shape as the student)
    l_ema         self-distillation from an EMA of the student's own weights
    l_dml         deep mutual learning: l_init and a peer (l_random's init of the same seed) trained
                  together, each distilled toward the other; both are reported (l_dml, l_dml_peer)

DistilBERT's claim checked here: a layer-initialised student trains faster and ends better than a random one of
the same shape (l_init vs l_random: accuracy, and their training-loss curves in report.png).

Scaled down to fit about an hour on 2 quiet cores (two arms side by side, one thread each): 600 steps per S arm
and 300 per L arm (the demo trains 800 LoRA steps), 1,000 teacher traces per teacher (the demo 2,000) with top-8
logprobs, three seeds, weights of the feature terms fixed at 1 (not tuned). Why these step counts (measured on
the probe's 600 traces, seed 0, 300 held-out problems): full fine-tuning of the S shape at lr 3e-3 reached 0.040
after 300 steps and 0.713 after 600 (its loss falls from 0.2 to 0.02 between steps ~250 and ~350: the demo's
transition), at lr 1e-2 0.130 after 300; layer-init + online KD reached 0.410 after 300 steps. Offline top-k KD
needs the teacher's logprobs from trace_gen's vLLM backend, so the traces are sampled in the vLLM environment
(`make install-vllm`, --vllm-python). Resumable: an arm whose run_summary.json exists is not rerun, nor a
finished preparation step; the evaluation always reruns (about 5 s per model on 300 problems).

Writes OUT/report.json (per arm: per-seed accuracy, mean, 95% t-interval over seeds, parameters, steps, wall
time, commands), OUT/report.md (the table) and OUT/report.png.

Usage:
    python scripts/lab.py [--out runs/lab] [--seeds 0 1 2] [--steps 600 300] [--limit N] [--arms s_sft,l_init,...]
    python scripts/lab.py --steps 4 --seeds 0 --limit 10 --n 40 --out runs/lab_smoke   # smoke run (minutes)
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from demo import ASSETS, REPO, conditions, side_by_side, stage  # scripts/demo.py: the same stage runners
from on_policy_lab import t_interval  # scripts/on_policy_lab.py: the same interval over seeds

TEACHER = ASSETS / "teacher"
FULL_FT = ["--use_peft", "false", "--merge_adapter", "false", "--learning_rate", "3e-3",
           "--lr_scheduler_type", "cosine", "--warmup_steps", "20"]  # fmt: skip
ONLINE = ["--kd_source", "online", "--kd_alpha", "0.5", "--teacher_dtype", "float32"]
KD = [*ONLINE, "--teacher_model_name_or_path", str(TEACHER)]
CURVES = ("l_random", "l_init")  # their training-loss curves go into report.png
# arm -> (family, what it adds); the order is the table's and the run order
ARMS = {
    "s_sft": ("S", "SFT on the teacher's traces"),
    "s_kd_offline": ("S", "+ offline top-k KD"),
    "s_kd_online": ("S", "+ online KD"),
    "s_fitnets": ("S", "+ online KD + FitNets hidden MSE (projection 64->128)"),
    "l_random": ("L", "random init, SFT"),
    "l_init": ("L", "layer-init, SFT"),
    "l_kd": ("L", "layer-init + online KD"),
    "l_cos": ("L", "+ hidden cosine"),
    "l_attn": ("L", "+ attention maps"),
    "l_rel": ("L", "+ relational (RKD)"),
    "l_multi": ("L", "multi-teacher (teacher + demo student)"),
    "l_born": ("L", "born-again (teacher: l_kd)"),
    "l_ema": ("L", "EMA self-distillation"),
    "l_dml": ("L", "deep mutual learning: student"),
}
NEEDS = {"l_born": "l_kd"}  # arm -> arm of the same seed that must finish first
REFERENCES = (
    "teacher",
    "student_base",
    "init_student",
    "demo_student",
)  # untrained / given models, evaluated too


def arm_args(arm: str, seed: int, paths: dict) -> list[str]:
    """`python -m sft run` arguments of one arm (beyond the shared recipe, traces, output, steps and seed)."""
    init, random_init = str(paths["init"]), str(paths["out"] / f"random_s{seed}")
    base = ["--model_name_or_path", str(ASSETS / "student_base")] if arm.startswith("s_") else []
    if arm.startswith("l_"):
        base = ["--model_name_or_path", random_init if arm == "l_random" else init]
    if arm in CURVES:  # one end-of-run checkpoint: its trainer_state.json holds the loss curve
        base += [
            "--save_strategy",
            "steps",
            "--save_steps",
            str(paths["steps"]["L"]),
            "--save_only_model",
            "true",
        ]
    extra = {
        "s_sft": [],
        "s_kd_offline": ["--kd_source", "offline", "--kd_alpha", "0.5"],
        "s_kd_online": KD,
        "s_fitnets": [*KD, "--kd_hidden_weight", "1", "--kd_hidden_loss", "mse"],
        "l_random": [],
        "l_init": [],
        "l_kd": KD,
        "l_cos": [*KD, "--kd_hidden_weight", "1", "--kd_hidden_loss", "cosine"],
        "l_attn": [*KD, "--kd_attn_weight", "1"],
        "l_rel": [*KD, "--kd_rel_weight", "1"],
        "l_multi": [*ONLINE, "--teachers", f"teacher={TEACHER}", f"demo={paths['demo_student']}",
                    "--teacher_weights", "1", "1", "--traces", f"{paths['traces']},{paths['traces_demo']}"],
        "l_born": [*ONLINE, "--teacher_model_name_or_path", str(paths["out"] / f"l_kd_s{seed}")],
        "l_ema": [*ONLINE, "--kd_self", "ema"],
        "l_dml": ["--mutual_peer", random_init],
    }[arm]  # fmt: skip
    return [*base, *extra]


def arm_command(py: str, arm: str, seed: int, paths: dict) -> list[str]:
    steps = paths["steps"][ARMS[arm][0]]
    cmd = [py, "-m", "sft", "run", "--config", "configs/sft/toy_student.yaml", "--traces", str(paths["traces"]),
           "--output_dir", str(paths["out"] / f"{arm}_s{seed}"), "--max_steps", str(steps),
           "--seed", str(seed), "--data_seed", str(seed), "--logging_steps", str(max(1, steps // 30)),
           *FULL_FT]  # fmt: skip
    return [*cmd, *arm_args(arm, seed, paths)]  # later flags win: arm_args may replace --traces


def trace_cmd(vllm_py: str, teacher: Path, out: Path, n: int, logprobs: int) -> list[str]:
    """trace_gen in the vLLM environment (its backend stores the top-k logprobs offline KD reads)."""
    engine = '{"dtype": "float32", "enforce_eager": true, "max_model_len": 256}'
    return ["env", "VLLM_CPU_KVCACHE_SPACE=1", vllm_py, "-m", "trace_gen", "--teacher", str(teacher),
            "--output-dir", str(out), "--n", str(n), "--samples-per-prompt", "4", "--temperature", "0.6",
            "--logprobs", str(logprobs), "--backend", "vllm", "--engine-args", engine, "--seed", "0"]  # fmt: skip


def random_like(src: Path, out: Path, seed: int) -> None:
    """A randomly initialised model of `src`'s config (torch seed `seed`), saved with `src`'s tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.float32)
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def prepare(py: str, args, arms: list[str], paths: dict, timings: dict) -> None:
    """Traces (teacher, and the demo student's for l_multi), the layer-init student and the random inits."""
    if "l_multi" in arms and not (paths["demo_student"] / "config.json").is_file():
        stage("demo: the distilled student (second teacher)", [py, "scripts/demo.py", "--out", str(args.demo),
              "--no-ablation"], timings)  # fmt: skip
    traces = {"trace_gen: teacher traces": trace_cmd(args.vllm_python, TEACHER, paths["traces"], args.n, 8)}
    if (
        "l_multi" in arms
    ):  # vLLM's CPU attention has no kernel for the toy student's head_dim 16: transformers
        traces["trace_gen: demo student traces"] = [
            py, "-m", "trace_gen", "--teacher", str(paths["demo_student"]), "--output-dir", str(paths["traces_demo"]),
            "--n", str(args.n), "--samples-per-prompt", "4", "--temperature", "0.6", "--backend", "hf",
            "--device", "cpu", "--seed", "0"]  # fmt: skip
    todo = {
        t: c for t, c in traces.items() if not (Path(c[c.index("--output-dir") + 1]) / "stats.json").is_file()
    }
    if todo:
        side_by_side(todo, paths["out"] / "logs", timings)
    if any(a.startswith("l_") for a in arms) and not (paths["init"] / "config.json").is_file():
        cmd = [py, "-m", "sft", "init-student", "--teacher", str(TEACHER), "--keep-every", "2",
               "--output-dir", str(paths["init"])]  # fmt: skip
        stage("sft init-student: every other teacher layer", cmd, timings)
    for seed in args.seeds if {"l_random", "l_dml"} & set(arms) else []:
        if not (paths["out"] / f"random_s{seed}" / "config.json").is_file():
            random_like(paths["init"], paths["out"] / f"random_s{seed}", seed)


def run_arms(py: str, jobs: list[tuple[str, int]], paths: dict, timings: dict) -> None:
    """Train the jobs two at a time (one thread each), skipping finished ones; a job waits for NEEDS."""
    done = lambda arm, seed: (paths["out"] / f"{arm}_s{seed}" / "run_summary.json").is_file()  # noqa: E731
    for a, s in [(a, s) for a, s in jobs if done(a, s)]:
        summary = json.loads((paths["out"] / f"{a}_s{s}" / "run_summary.json").read_text())
        if summary["global_step"] != paths["steps"][ARMS[a][0]]:
            sys.exit(f"lab: {a}_s{s} in {paths['out']} ran {summary['global_step']} steps, not "
                     f"{paths['steps'][ARMS[a][0]]}: give another --out (or remove that run)")  # fmt: skip
    pending = [(a, s) for a, s in jobs if not done(a, s)]
    while pending:
        ready = [(a, s) for a, s in pending if a not in NEEDS or done(NEEDS[a], s)][:2]
        if not ready:
            sys.exit(f"lab: nothing can run; waiting on {pending}")
        logs = paths["out"] / "logs" / "+".join(f"{a}_s{s}" for a, s in ready)  # stage-1.log: the second arm
        side_by_side({f"{a} seed {s}": arm_command(py, a, s, paths) for a, s in ready}, logs, timings)
        pending = [j for j in pending if j not in ready]


def loss_curve(run: Path) -> list[list[float]]:
    """[[step, training loss], ...] from the run's end-of-run checkpoint."""
    (state,) = run.glob("checkpoint-*/trainer_state.json")
    return [[h["step"], h["loss"]] for h in json.loads(state.read_text())["log_history"] if "loss" in h]


def summarise(report: dict, arms: list[str], seeds: list[int], paths: dict, py: str) -> dict:
    models, rows = report["models"], {}
    for arm in arms:
        runs = [paths["out"] / f"{arm}_s{s}" for s in seeds]
        summaries = [json.loads((r / "run_summary.json").read_text()) for r in runs]
        wall = [
            (r / "run_summary.json").stat().st_mtime - (r / "run_info.json").stat().st_mtime for r in runs
        ]
        for name in [arm, f"{arm}_peer"] if arm == "l_dml" else [arm]:
            accs = np.array([models[f"{name}_s{s}"]["accuracy"] for s in seeds])
            rows[name] = {
                "family": ARMS[arm][0],
                "what": ARMS[arm][1] if name == arm else "deep mutual learning: peer (random init)",
                "per_seed": accs.round(4).tolist(),
                "mean": round(float(accs.mean()), 4),
                "ci95_seeds": t_interval(accs),
                "params": models[f"{name}_s{seeds[0]}"]["params"],
                "steps": [s["global_step"] for s in summaries],
                "train_wall_s": [round(w, 1) for w in wall],
                "commands": [" ".join(["python", *arm_command(py, arm, s, paths)[1:]]) for s in seeds],
            }
        if arm in CURVES:
            rows[arm]["loss_curves"] = [loss_curve(r) for r in runs]
    refs = {
        k: {"accuracy": m["accuracy"], "params": m["params"]} for k, m in models.items() if k in REFERENCES
    }
    return {"arms": rows, "references": refs}


def write_markdown(out: Path, summary: dict, meta: dict) -> None:
    refs = summary["references"]
    lines = [
        "# The distillation family on the toy task",
        "",
        f"Seeds {meta['seeds']}; full fine-tuning steps of 32 sequences per arm: S {meta['steps']['S']}, L "
        f"{meta['steps']['L']}; greedy accuracy on "
        f"{meta['limit'] or 'all 300'} held-out problems. References: "
        + ", ".join(f"{k} {v['accuracy']:.3f} ({v['params']:,} params)" for k, v in refs.items())
        + ".",
        "",
        "| family | arm | what | per seed | mean [95% t-interval over seeds] | params | steps | train wall s (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, a in summary["arms"].items():
        lines.append(
            f"| {a['family']} | {name} | {a['what']} | {', '.join(f'{x:.3f}' for x in a['per_seed'])} "
            f"| {a['mean']:.3f} [{a['ci95_seeds'][0]:.3f}, {a['ci95_seeds'][1]:.3f}] | {a['params']:,} "
            f"| {a['steps'][0]} | {sum(a['train_wall_s']) / len(a['train_wall_s']):.0f} |"
        )
    lines += ["", f"Lab wall time {meta['wall_seconds']:.0f} s; load before/after: {meta['load_before']} / "
              f"{meta['load_after']}; {meta['conditions']}.", ""]  # fmt: skip
    lines += ["Commands (seed 0 of each arm; the others differ in --seed/--data_seed):", ""]
    lines += [f"    {a['commands'][0]}" for n, a in summary["arms"].items() if not n.endswith("_peer")]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, summary: dict, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, refs = summary["arms"], summary["references"]
    curves = [a for a in CURVES if a in rows]
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(13, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1] if curves else [1]})  # fmt: skip
    ax = axes[0][0]
    for x, a in enumerate(rows.values()):
        color = "C0" if a["family"] == "S" else "C1"
        ax.scatter([x] * len(a["per_seed"]), a["per_seed"], color="0.6", s=14, zorder=2,
                   label="one seed" if x == 0 else None)  # fmt: skip
        lo, hi = a["ci95_seeds"]
        ax.errorbar(x, a["mean"], yerr=[[a["mean"] - lo], [hi - a["mean"]]], fmt="o", color=color, capsize=5,
                    zorder=3, label="mean, 95% t-interval" if x == 0 else None)  # fmt: skip
        ax.annotate(
            f"{a['mean']:.2f}", (x, hi), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8
        )
    s_count = sum(a["family"] == "S" for a in rows.values())
    if 0 < s_count < len(rows):
        ax.axvline(s_count - 0.5, color="0.3", lw=0.8)
    for x0, x1, fam, color in [(0, s_count, "S: toy student shape", "C0"),
                               (s_count, len(rows), "L: layer-init shape", "C1")]:  # fmt: skip
        if x1 > x0:
            ax.text(
                (x0 + x1 - 1) / 2, 1.02, fam, color=color, ha="center", transform=ax.get_xaxis_transform()
            )
    if "teacher" in refs:
        ax.axhline(
            refs["teacher"]["accuracy"],
            color="C3",
            ls=":",
            label=f"teacher {refs['teacher']['accuracy']:.3f}",
        )
    ax.set_xticks(range(len(rows)), list(rows), rotation=40, ha="right")
    ax.set_ylabel(f"held-out accuracy (greedy, {meta['limit'] or 300} problems)")
    ax.set_ylim(-0.02, 1.16)  # the band above 1 holds the legend
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.set_title(
        f"mean and 95% t-interval over seeds {meta['seeds']}, steps S {meta['steps']['S']} | L {meta['steps']['L']}",
        pad=18,
    )
    if curves:
        ax = axes[0][1]
        for arm, color in zip(curves, ("C2", "C1"), strict=False):
            for i, curve in enumerate(rows[arm]["loss_curves"]):
                steps, loss = zip(*curve, strict=True) if curve else ((), ())
                ax.plot(steps, loss, color=color, alpha=0.8, label=rows[arm]["what"] if i == 0 else None)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (cross-entropy)")
        ax.set_title("random vs layer-initialised, same shape")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=130)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/lab"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, nargs="+", default=[600, 300],
                   help="training steps of every arm: one value for both families, or two: S L")  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=200, help="evaluate on the first N held-out problems (0: all)"
    )
    p.add_argument("--n", type=int, default=1000, help="verified traces per teacher")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    p.add_argument("--demo", type=Path, default=Path("runs/demo"), help="scripts/demo.py output (l_multi)")
    p.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"),
                   help="python of the vLLM environment (trace_gen's top-k logprobs)")  # fmt: skip
    args = p.parse_args(argv)
    if len(args.steps) > 2 or min(args.steps) < 1:
        p.error(f"--steps {args.steps}: give one count for both families or two (S L), each >= 1")
    chosen = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(chosen) - set(ARMS))
    if unknown:
        p.error(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    if not Path(args.vllm_python).is_file():
        p.error(
            f"--vllm-python {args.vllm_python}: not found; run `make install-vllm` (trace_gen's top-k logprobs)"
        )
    chosen += [NEEDS[a] for a in chosen if a in NEEDS and NEEDS[a] not in chosen]
    arms = [a for a in ARMS if a in chosen]
    py, out, timings = sys.executable, args.out.resolve(), {}
    args.demo = args.demo.resolve()
    steps = {"S": args.steps[0], "L": args.steps[-1]}
    paths = {"out": out, "steps": steps, "traces": out / "traces", "traces_demo": out / "traces_demo",
             "init": out / "init_student", "demo_student": args.demo / "student" / "merged"}  # fmt: skip
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    start = time.perf_counter()
    prepare(py, args, arms, paths, timings)
    run_arms(py, [(a, s) for s in args.seeds for a in arms], paths, timings)
    models = {"teacher": str(TEACHER), "student_base": str(ASSETS / "student_base")}
    if any(a.startswith("l_") for a in arms):
        models["init_student"] = str(paths["init"])
    if "l_multi" in arms:
        models["demo_student"] = str(paths["demo_student"])
    for arm in arms:
        for s in args.seeds:
            models[f"{arm}_s{s}"] = json.loads((out / f"{arm}_s{s}" / "run_summary.json").read_text())[
                "final_model"
            ]
            if arm == "l_dml":
                models[f"l_dml_peer_s{s}"] = str(out / f"{arm}_s{s}" / "peer")
    names = list(models)
    halves = {f"eval_harness: models {i + 1}/2": names[i::2] for i in range(2)}
    evals = {}
    for i, (title, part) in enumerate(halves.items()):
        evals[title] = [py, "-m", "eval_harness", "compare", "--benchmarks", "toy", "--output-dir",
                        str(out / f"eval{i}"), "--backend", "hf", "--device", "cpu",
                        "--models", *[f"{k}={models[k]}" for k in part]]  # fmt: skip
        evals[title] += ["--limit", str(args.limit)] if args.limit else []
    side_by_side(evals, out / "logs", timings)
    report = {"models": {}}
    for i in range(2):
        report["models"].update(json.loads((out / f"eval{i}" / "report.json").read_text())["models"])
    summary = summarise(report, arms, args.seeds, paths, py)
    meta = {
        "seeds": args.seeds, "steps": steps, "limit": args.limit, "n_traces": args.n,
        "stage_seconds": timings, "wall_seconds": round(time.perf_counter() - start, 1),
        "load_before": " ".join(load_before), "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "conditions": conditions(), "eval_commands": [" ".join(["python", *c[1:]]) for c in evals.values()],
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps({"summary": summary, "meta": meta}, indent=2))
    write_markdown(out, summary, meta)
    plot(out, summary, meta)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
