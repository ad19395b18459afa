"""Teacher-vs-student report on the three axes users weigh: accuracy, size, latency.

All models are measured in one run on the same machine, so their speeds are comparable. The first
model is the reference: retention = model accuracy / reference accuracy, overall and per benchmark.
report.json: {"models": {name: {accuracy, params, size_mb, tokens_per_s, latency_s_per_response,
benchmarks: {bench: summary}}}, "retention_vs_<first>": {...}, ...}; report.md; report.png.
"""

import json
import math
from pathlib import Path

from eval_harness.evaluate import evaluate_model, measure_latency
from trace_gen.verify import MathVerifierPool


def model_size(path: str) -> tuple[int | None, float | None]:
    """(parameters, MB of weight files on disk) from the safetensors files; (None, None) without any."""
    from safetensors import safe_open

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return None, None
    params = 0
    for f in files:
        with safe_open(str(f), "pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not iterable)
                params += math.prod(st.get_slice(key).get_shape())
    return params, sum(f.stat().st_size for f in files) / 1e6


def compare(
    models: dict[str, str],
    benches: list,
    items: dict,
    samplings: dict,
    output_dir: Path,
    make_backend,
    backend_kind: str = "hf",
    verify: tuple[int, float] = (2, 10.0),
    latency_prompts: int = 8,
) -> dict:
    names = [b.NAME for b in benches]
    report = {
        "models": {},
        "benchmarks": names,
        "backend": backend_kind,
        "sampling": {n: s.as_dict() for n, s in samplings.items()},
    }
    with MathVerifierPool(workers=verify[0], timeout_s=verify[1]) as pool:
        for name, path in models.items():
            backend = make_backend(path)
            scores = evaluate_model(
                backend, benches, items, samplings, pool, output_dir / "samples" / name, path, backend_kind
            )
            tokens, seconds = backend.generated_tokens, backend.generate_seconds
            latency = measure_latency(backend, benches[0], samplings[names[0]], latency_prompts)
            if not tokens:  # every sample was resumed from disk: the latency runs give the speed
                tokens, seconds = backend.generated_tokens, backend.generate_seconds
            backend.close()  # frees the weights (and a vLLM engine's GPUs) before the next model loads
            params, size_mb = model_size(path)
            report["models"][name] = {
                "path": path,
                "accuracy": sum(s["pass@1"] for s in scores.values()) / len(scores),
                "params": params,
                "size_mb": None if size_mb is None else round(size_mb, 3),
                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
                "latency_s_per_response": round(latency, 4),
                "benchmarks": scores,
            }
    ref_name = next(iter(models))
    ref = report["models"][ref_name]
    report[f"retention_vs_{ref_name}"] = {
        name: _ratio(m["accuracy"], ref["accuracy"]) for name, m in report["models"].items()
    }
    report[f"retention_vs_{ref_name}_per_benchmark"] = {
        name: {b: _ratio(m["benchmarks"][b]["pass@1"], ref["benchmarks"][b]["pass@1"]) for b in names}
        for name, m in report["models"].items()
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    (output_dir / "report.md").write_text(markdown_table(report))
    plot(report, output_dir / "report.png")
    return report


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(report: dict) -> str:
    """Overview (accuracy, retention, size, speed) and per-benchmark pass@1 with 95% CIs."""
    base = next(iter(report["models"]))
    retention = report[f"retention_vs_{base}"]
    lines = [
        f"| model | accuracy | retention vs {base} | params | size MB | tokens/s | s/response |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in report["models"].items():
        lines.append(
            f"| {name} | {m['accuracy']:.3f} | {_fmt(retention[name], '.3f')} | {_fmt(m['params'], ',')} | "
            f"{_fmt(m['size_mb'], '.2f')} | {m['tokens_per_s']:.0f} | {m['latency_s_per_response']:.3f} |"
        )
    names = report["benchmarks"]
    lines += ["", "pass@1 [95% bootstrap CI] per benchmark:", ""]
    lines += ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, m in report["models"].items():
        cells = []
        for b in names:
            s = m["benchmarks"][b]
            lo, hi = s["pass@1_ci"]
            cells.append(f"{s['pass@1']:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Four panels: pass@1 per benchmark (with CIs), size on disk, tokens/s, seconds per response."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names, benches = list(report["models"]), report["benchmarks"]
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), gridspec_kw={"width_ratios": [2, 1, 1, 1]})
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        s = [report["models"][n]["benchmarks"][b] for b in benches]
        acc = np.array([x["pass@1"] for x in s])
        err = np.abs(np.array([x["pass@1_ci"] for x in s]).T - acc)  # (2, benchmarks)
        x = np.arange(len(benches)) + (i - (len(names) - 1) / 2) * width
        axes[0].bar(x, acc, width, yerr=err, capsize=3, label=n, color=colors[i % len(colors)])
    axes[0].set_xticks(np.arange(len(benches)), benches)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("pass@1 (95% CI)")
    axes[0].legend(fontsize=8)
    for ax, (key, title) in zip(
        axes[1:],
        [
            ("size_mb", "size on disk (MB)"),
            ("tokens_per_s", "tokens / s"),
            ("latency_s_per_response", "s / response"),
        ],
        strict=True,
    ):
        values = [report["models"][n][key] or 0 for n in names]
        ax.bar(names, values, color=[colors[i % len(colors)] for i in range(len(names))])
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{' vs '.join(names)} on {', '.join(benches)} ({report['backend']}, same machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
