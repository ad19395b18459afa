"""Teacher-vs-student report on the three axes users weigh: accuracy, size, latency.

All models are measured in one run on the same machine, so their speeds are comparable.
"""

import json
import math
from pathlib import Path

from eval_harness.evaluate import measure_latency, score_benchmark
from trace_gen.backends.base import SamplingConfig


def model_size(path: str) -> tuple[int, float]:
    """(parameters, MB of weight files on disk)."""
    from safetensors import safe_open

    files = sorted(Path(path).glob("*.safetensors"))
    params = 0
    for f in files:
        with safe_open(str(f), "pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not iterable)
                params += math.prod(st.get_slice(key).get_shape())
    return params, sum(f.stat().st_size for f in files) / 1e6


def compare(
    models: dict[str, str],
    benchmarks: list,
    sampling: SamplingConfig,
    limit: int | None,
    output_dir: Path,
    make_backend,
) -> dict:
    report = {"models": {}, "benchmarks": [b.NAME for b in benchmarks], "sampling": sampling.as_dict()}
    for name, path in models.items():
        backend = make_backend(path)
        scores = {
            b.NAME: score_benchmark(backend, b, sampling, limit, output_dir / "samples" / name)
            for b in benchmarks
        }
        tokens_per_s = backend.generated_tokens / max(backend.generate_seconds, 1e-9)
        params, size_mb = model_size(path)
        report["models"][name] = {
            "path": path,
            "accuracy": sum(s["pass@1"] for s in scores.values()) / len(scores),
            "params": params,
            "size_mb": round(size_mb, 3),
            "tokens_per_s": round(tokens_per_s, 1),
            "latency_s_per_response": round(measure_latency(backend, benchmarks[0], sampling), 4),
            "benchmarks": scores,
        }
    first = next(iter(report["models"].values()))
    report["retention_vs_" + next(iter(models))] = {
        name: round(m["accuracy"] / first["accuracy"], 4) if first["accuracy"] else None
        for name, m in report["models"].items()
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    (output_dir / "report.md").write_text(markdown_table(report))
    plot(report, output_dir / "report.png")
    return report


def markdown_table(report: dict) -> str:
    base = next(iter(report["models"]))
    lines = [
        f"| model | accuracy | retention vs {base} | params | size MB | tokens/s | s/response |",
        "|---|---|---|---|---|---|---|",
    ]
    retention = report[f"retention_vs_{base}"]
    for name, m in report["models"].items():
        r = retention[name]
        lines.append(
            f"| {name} | {m['accuracy']:.3f} | {'-' if r is None else f'{r:.3f}'} | {m['params']:,} | "
            f"{m['size_mb']:.2f} | {m['tokens_per_s']:.0f} | {m['latency_s_per_response']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    axes_spec = [("accuracy", "accuracy (pass@1)"), ("params", "parameters"), ("tokens_per_s", "tokens / s")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, title) in zip(axes, axes_spec, strict=True):
        values = [report["models"][n][key] for n in names]
        ax.bar(names, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(names)])
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"teacher vs student on {', '.join(report['benchmarks'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
