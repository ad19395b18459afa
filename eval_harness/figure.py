"""The compare report as one 16:9 figure for a slide (report.png, 1920x1080, and report.svg beside it).

Panels: pass@1 per benchmark with 95% intervals and value labels (a 0% bar keeps a visible baseline
and its label); the paired difference to the reference per benchmark (percentage points, 95%
interval); parameters (and share of the reference); retention of the reference's accuracy; latency
one prompt at a time (time to first token, time per output token). The caption states n, K and the
sampling settings. A missing number (no safetensors, a one-token response) is written "n/a", never
drawn as 0. Every number comes from report.json.
"""

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; this module is imported when a report is drawn, never for --help
import matplotlib.pyplot as plt
import numpy as np

COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]  # Okabe-Ito


UNITS = ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands"))


def _params_text(params: int) -> str:
    for scale, unit in zip((1e9, 1e6, 1e3), ("B", "M", "k"), strict=True):
        if params >= scale:
            return f"{params / scale:.3g} {unit}"
    return str(params)


def _setup_text(report: dict) -> str:
    """Per benchmark: n items, K samples per item, and the sampling settings."""
    ref = next(iter(report["models"].values()))
    parts = []
    for b in report["benchmarks"]:
        s, summary = report["sampling"][b], ref["benchmarks"][b]
        temp = (
            "greedy (temperature 0)"
            if s["temperature"] == 0
            else f"temperature {s['temperature']:g}, top-p {s['top_p']:g}"
        )
        k = summary["samples"]
        parts.append(
            f"{b}: n = {summary['n']} items, K = {k} sample{'s' if k > 1 else ''} per item, {temp}, "
            f"at most {s['max_new_tokens']:,} new tokens"
        )
    return "; ".join(parts)


def plot(report: dict, path: Path) -> None:
    """Write the figure to `path` (PNG) and to the same name with .svg."""
    models, benches = list(report["models"]), report["benchmarks"]
    color = {m: COLORS[i % len(COLORS)] for i, m in enumerate(models)}
    style = {"font.size": 11, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"}
    with plt.rc_context(style):
        fig = plt.figure(figsize=(12.8, 7.2), dpi=150, layout="constrained")
        grid = fig.add_gridspec(2, 3, height_ratios=[1.3, 1])
        _accuracy(fig.add_subplot(grid[0, :2]), report, models, benches, color)
        _differences(fig.add_subplot(grid[0, 2]), report, models, benches, color)
        y = np.arange(len(models))[::-1]
        _size(fig.add_subplot(grid[1, 0]), report, models, color, y)
        _retention(fig.add_subplot(grid[1, 1]), report, models, color, y)
        _latency(fig.add_subplot(grid[1, 2]), report, models, color, y)
        fig.suptitle(
            f"{' vs '.join(models)} on {', '.join(benches)}",
            x=0.01,
            ha="left",
            fontsize=15,
            fontweight="bold",
        )
        throughput = ", ".join(f"{m} {report['models'][m]['tokens_per_s']:,.0f}" for m in models)
        caption = (
            f"{_setup_text(report)}. pass@1 = mean over the K samples. Backend {report['backend']}; every model "
            f"measured in this run on the same machine. Intervals: 95% Wilson on the items' effective sample "
            f"size; Δ paired over items (MOVER). Batched throughput while evaluating (tokens/s): {throughput}."
        )
        fig.supxlabel("\n".join(textwrap.wrap(caption, 175)), x=0.01, ha="left", fontsize=9, color="#333333")
        for target in (Path(path), Path(path).with_suffix(".svg")):
            tmp = target.with_name(f".{target.name}.tmp{target.suffix}")  # whole files only
            fig.savefig(tmp, dpi=150)
            os.replace(tmp, target)
        plt.close(fig)


def _accuracy(ax, report, models, benches, color) -> None:
    """Grouped bars of pass@1 (%) per benchmark, 95% whiskers, a value label on every bar."""
    width = min(0.8 / len(models), 0.3)
    top = 0.0
    for i, m in enumerate(models):
        s = [report["models"][m]["benchmarks"][b] for b in benches]
        acc = 100 * np.array([x["pass@1"] for x in s])
        ci = 100 * np.array([x["pass@1_ci"] for x in s]).T  # (2, benchmarks)
        x = np.arange(len(benches)) + (i - (len(models) - 1) / 2) * width
        ax.bar(x, acc, width * 0.92, color=color[m], label=f"{m} (reference)" if i == 0 else m, zorder=2)
        ax.errorbar(
            x, acc, yerr=[acc - ci[0], ci[1] - acc], fmt="none", ecolor="#333333", capsize=4, lw=1.2, zorder=3
        )
        for xi, a, hi in zip(x, acc, ci[1], strict=True):
            # a baseline in the model's colour, so a 0% bar is still seen
            ax.plot(
                [xi - width * 0.46, xi + width * 0.46],
                [0, 0],
                color=color[m],
                lw=4,
                zorder=4,
                solid_capstyle="butt",
            )
            ax.annotate(
                f"{a:.1f}%",
                (xi, hi),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=10,
                fontweight="bold",
            )
        top = max(top, float(ci[1].max()))
    ref = report["models"][models[0]]["benchmarks"]
    ax.set_xticks(
        np.arange(len(benches)), [f"{b}\nn = {ref[b]['n']} items, K = {ref[b]['samples']}" for b in benches]
    )
    ax.set_xlim(-0.6, len(benches) - 0.4)
    ax.set_ylim(0, top + 24)  # room for the value labels and, above them, the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("Accuracy: pass@1 per benchmark, with 95% interval", loc="left", fontweight="bold")
    ax.legend(loc="upper right", fontsize=9, frameon=False, ncol=min(len(models), 4))
    ax.grid(axis="y", alpha=0.3, zorder=0)


def _differences(ax, report, models, benches, color) -> None:
    """Forest plot of the paired difference to the reference, in percentage points; values in the labels."""
    deltas = report[f"delta_vs_{models[0]}"]
    rows = [(m, b, deltas[m]["benchmarks"][b]) for m in models[1:] for b in benches]
    ax.set_title(f"Δ vs {models[0]}, paired", loc="left", fontweight="bold")
    ax.set_xlabel("Δ pass@1 (pp), 95% interval")
    if not rows:
        ax.text(0.5, 0.5, "one model: nothing to compare", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        return
    y = np.arange(len(rows))[::-1]
    labels = []
    for yi, (m, b, d) in zip(y, rows, strict=True):
        lo, hi, dv = 100 * d["ci"][0], 100 * d["ci"][1], 100 * d["delta"]
        ax.errorbar([dv], [yi], xerr=[[dv - lo], [hi - dv]], fmt="o", color=color[m], capsize=4, lw=1.8, ms=7)
        labels.append(f"{m}\n{b}" if len(benches) > 1 else m)
        ax.annotate(
            f"{dv:+.1f} pp [{lo:+.1f}, {hi:+.1f}]",
            (0.5, yi),
            xycoords=("axes fraction", "data"),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            fontsize=9,
        )
    ax.set_yticks(y, labels, fontsize=9)
    ax.axvline(0, color="#555555", lw=1, ls="--")
    span = max(5.0, 1.15 * max(max(abs(100 * d["ci"][0]), abs(100 * d["ci"][1])) for _, _, d in rows))
    ax.set_xlim(-span, span)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)


def _size(ax, report, models, color, y) -> None:
    """Parameters per model (in the unit that fits), labelled with the share of the reference's."""
    ref_params = report["models"][models[0]]["params"]
    known = [report["models"][m]["params"] for m in models if report["models"][m]["params"]]
    scale, unit = next(((s, u) for s, u in UNITS if known and max(known) >= s), (1.0, "parameters"))
    for yi, m in zip(y, models, strict=True):
        p = report["models"][m]["params"]
        if p is None:
            ax.text(0, yi, "  n/a (no safetensors)", va="center", fontsize=9, color="#555555")
            continue
        ax.barh(yi, p / scale, color=color[m], height=0.6)
        share = f" ({100 * p / ref_params:.1f}%)" if ref_params and m != models[0] else ""
        ax.annotate(
            f"{_params_text(p)}{share}",
            (p / scale, yi),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(y, models)
    ax.set_ylim(-0.6, len(models) - 0.4)
    ax.set_xlim(0, max(known) / scale * 1.7 if known else 1)
    ax.set_xlabel(f"parameters ({unit})")
    ax.set_title("Size", loc="left", fontweight="bold")


def _retention(ax, report, models, color, y) -> None:
    """Accuracy as a percentage of the reference's, with the 100% line."""
    retention = report[f"retention_vs_{models[0]}"]
    shown = [100 * retention[m] for m in models if retention[m] is not None]
    for yi, m in zip(y, models, strict=True):
        r = retention[m]
        if r is None:
            ax.text(0, yi, f"  n/a ({models[0]} scored 0)", va="center", fontsize=9, color="#555555")
            continue
        ax.barh(yi, 100 * r, color=color[m], height=0.6)
        ax.plot([0, 0], [yi - 0.3, yi + 0.3], color=color[m], lw=4, solid_capstyle="butt")  # visible at 0%
        ax.annotate(
            f"{100 * r:.1f}%",
            (100 * r, yi),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.axvline(100, color="#555555", lw=1, ls="--")
    ax.set_yticks(y, [""] * len(models))  # the rows of the size panel, same order and colours
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.6, len(models) - 0.4)
    ax.set_xlim(0, max([*shown, 100.0]) * 1.3)
    ax.set_xlabel(f"accuracy as % of {models[0]}'s")
    ax.set_title("Retention", loc="left", fontweight="bold")


def _latency(ax, report, models, color, y) -> None:
    """Time to first token and time per output token (ms), prompts sent one at a time."""
    h, most = 0.38, 0.0
    for yi, m in zip(y, models, strict=True):
        lat = report["models"][m]["latency"]
        for off, key, what in (
            (h / 2, "ttft_s", "to first token"),
            (-h / 2, "s_per_output_token", "per output token"),
        ):
            v = lat[key]
            if v is None:
                ax.text(
                    0, yi + off, f"  n/a {what} (one-token answers)", va="center", fontsize=8, color="#555555"
                )
                continue
            ax.barh(
                yi + off, 1000 * v, height=h * 0.9, color=color[m], alpha=1.0 if key == "ttft_s" else 0.55
            )
            ax.annotate(
                f"{1000 * v:.1f} ms {what}",
                (1000 * v, yi + off),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
            most = max(most, 1000 * v)
    ax.set_yticks(y, [""] * len(models))  # the rows of the size panel, same order and colours
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.6, len(models) - 0.4)
    ax.set_xlim(0, most * 2.2 or 1)
    prompts = report["models"][models[0]]["latency"]["prompts"]
    ax.set_xlabel(f"milliseconds (mean over {prompts} prompts)")
    ax.set_title("Latency, one prompt at a time", loc="left", fontweight="bold")
