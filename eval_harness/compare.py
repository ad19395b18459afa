"""Teacher-vs-student report on the three axes users weigh: accuracy, size, latency.

All models are measured in one run on the same machine, so their speeds are comparable. The first
model is the reference. Per benchmark: pass@1 with its 95% interval, avg@K with its run-to-run
spread, and the paired difference model - reference over the same items with its 95% interval
(eval_harness.intervals); retention = accuracy / reference accuracy. Latency (prompts one at a
time): time to first token and time per output token after it; tokens/s is the batched throughput
of the evaluation itself.

report.json: {"models": {name: {path, accuracy, params, size_mb, tokens_per_s, latency: {ttft_s,
s_per_output_token, s_per_response, tokens_per_response, prompts}, benchmarks: {bench: summary}}},
"delta_vs_<first>": {name (not the first): {"accuracy": {"delta", "ci"}, "benchmarks": {bench: {"delta",
"ci", "n"}}}},
"retention_vs_<first>": {name: ratio}, "retention_vs_<first>_per_benchmark": {...}, "benchmarks",
"backend", "sampling", "intervals"}; report.md (the same numbers, in percent); report.png and
report.svg (eval_harness.figure).
"""

import json
import math
from pathlib import Path

from eval_harness.evaluate import evaluate_model, measure_latency
from eval_harness.intervals import METHOD, paired_difference
from eval_harness.metrics import item_scores
from eval_harness.report import pct
from trace_gen.verify import MathVerifierPool
from trace_gen.writer import _fsync_write


def model_files(model: str) -> Path | None:
    """The directory holding a model's files: the local path, or a hub id's cached snapshot."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def model_size(model: str) -> tuple[int | None, float | None]:
    """(parameters, MB of weight files on disk) from the safetensors files; (None, None) without any
    (a served model, or .bin weights)."""
    from safetensors import safe_open

    folder = model_files(model)
    files = sorted(folder.glob("*.safetensors")) if folder else []
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
        "intervals": METHOD,
    }
    per_item: dict[str, dict[str, list[float]]] = {}  # model -> benchmark -> pass@1 of each item
    with MathVerifierPool(workers=verify[0], timeout_s=verify[1]) as pool:
        for name, path in models.items():
            backend = make_backend(path)
            try:
                scores, rows = evaluate_model(
                    backend,
                    benches,
                    items,
                    samplings,
                    pool,
                    output_dir / "samples" / name,
                    path,
                    backend_kind,
                )
                tokens, seconds = backend.generated_tokens, backend.generate_seconds
                latency = measure_latency(backend, items[names[0]][:latency_prompts], samplings[names[0]])
                if not tokens:  # every sample was resumed from disk: the latency runs give the speed
                    tokens, seconds = backend.generated_tokens, backend.generate_seconds
            finally:
                backend.close()  # frees the weights (and a vLLM engine's GPUs) before the next model loads
            params, size_mb = model_size(path)
            per_item[name] = {b: item_scores([rows[b][it.id] for it in items[b]]) for b in names}
            report["models"][name] = {
                "path": path,
                "accuracy": sum(s["pass@1"] for s in scores.values()) / len(scores),
                "params": params,
                "size_mb": None if size_mb is None else round(size_mb, 3),
                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
                "latency": latency,
                "benchmarks": scores,
            }
    add_comparisons(report, per_item, samplings)
    from eval_harness.figure import plot

    output_dir.mkdir(parents=True, exist_ok=True)
    _fsync_write(output_dir / "report.json", json.dumps(report, indent=2).encode())
    _fsync_write(output_dir / "report.md", markdown_table(report).encode())
    plot(report, output_dir / "report.png")
    return report


def add_comparisons(report: dict, per_item: dict[str, dict[str, list[float]]], samplings: dict) -> None:
    """Add to `report` the paired differences and retentions of every model against the first one.

    per_item: model -> benchmark -> pass@1 of each item, the same items in the same order."""
    names = report["benchmarks"]
    ref_name = next(iter(report["models"]))
    ref = report["models"][ref_name]
    report[f"delta_vs_{ref_name}"] = {
        name: _deltas(per_item[name], per_item[ref_name], samplings) for name in list(report["models"])[1:]
    }
    report[f"retention_vs_{ref_name}"] = {
        name: _ratio(m["accuracy"], ref["accuracy"]) for name, m in report["models"].items()
    }
    report[f"retention_vs_{ref_name}_per_benchmark"] = {
        name: {b: _ratio(m["benchmarks"][b]["pass@1"], ref["benchmarks"][b]["pass@1"]) for b in names}
        for name, m in report["models"].items()
    }


def _deltas(model: dict[str, list[float]], ref: dict[str, list[float]], samplings: dict) -> dict:
    """Paired pass@1 differences model - reference per benchmark; the accuracy (mean over benchmarks)
    difference, with an interval when there is one benchmark (several: per benchmark only)."""
    per_bench = {}
    for b in model:
        delta, (low, high) = paired_difference(model[b], ref[b], trials=samplings[b].n)
        per_bench[b] = {"delta": delta, "ci": [low, high], "n": len(model[b])}
    overall = sum(d["delta"] for d in per_bench.values()) / len(per_bench)
    only = next(iter(per_bench.values()))["ci"] if len(per_bench) == 1 else None
    return {"accuracy": {"delta": overall, "ci": only}, "benchmarks": per_bench}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _delta(d: dict | None) -> str:
    """A paired difference in percentage points with its interval; "reference" for the first model."""
    if d is None:
        return "(reference)"
    ci = f" [{pct(d['ci'][0], True)}, {pct(d['ci'][1], True)}]" if d["ci"] else ""
    return pct(d["delta"], True) + ci


def markdown_table(report: dict) -> str:
    """Overview per model, then per benchmark; every number is report.json's, in percent or ms."""
    ref = next(iter(report["models"]))
    deltas, retention = report[f"delta_vs_{ref}"], report[f"retention_vs_{ref}"]
    lines = [
        f"| model | accuracy % | Δ vs {ref} (pp) [95% CI] | retention % | params | size MB | TTFT ms | "
        "ms / output token | tokens/s (batched) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["models"].items():
        lat = m["latency"]
        lines.append(
            f"| {name} | {pct(m['accuracy'])} | {_delta(deltas.get(name, {}).get('accuracy'))} | {pct(retention[name])} | "
            f"{_fmt(m['params'], ',')} | {_fmt(m['size_mb'], '.2f')} | {_ms(lat['ttft_s'])} | "
            f"{_ms(lat['s_per_output_token'])} | {m['tokens_per_s']:.0f} |"
        )
    lines += [
        "",
        f"Per benchmark (pass@1 in %; Δ paired over items vs {ref}; {report['intervals']}):",
        "",
        f"| benchmark | n | K | temperature | model | pass@1 [95% CI] | avg@K ± sd over runs | Δ vs {ref} (pp) [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in report["benchmarks"]:
        sampling = report["sampling"][b]
        for name, m in report["models"].items():
            s = m["benchmarks"][b]
            d = deltas[name]["benchmarks"][b] if name in deltas else None
            k = s["samples"]
            avg = f"{pct(s[f'avg@{k}'])} ± {pct(s[f'avg@{k}_std'])}" if k > 1 else "-"
            lines.append(
                f"| {b} | {s['n']} | {k} | {sampling['temperature']:g} | {name} | {pct(s['pass@1'])} "
                f"[{pct(s['pass@1_ci'][0])}, {pct(s['pass@1_ci'][1])}] | {avg} | {_delta(d)} |"
            )
    return "\n".join(lines) + "\n"
