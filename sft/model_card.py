"""The model card (README.md) of a trained student, built only from the files the run wrote.

Inputs, all read from disk so the card can be re-rendered later (`python -m sft card RUN_DIR --eval
SUMMARY.json` adds evaluation numbers once `python -m eval_harness` has run):
    RUN_DIR/run_summary.json      what was trained: base model, mode, rows, steps, loss, method settings
    RUN_DIR/run_info.json         versions and git commit
    TRACES/run.json, stats.json   the trace run (teacher, dataset, sampling) and its statistics, when the traces
                                  are a trace_gen directory
    eval_harness summary.json     pass@1 (with interval), avg@K, maj@K per benchmark (optional)

The card replaces PEFT's blank template in RUN_DIR (the adapter or full model) and RUN_DIR/merged.
"""

import json
import sys
from pathlib import Path

import yaml

CARD = "README.md"
METHOD_KEYS = (
    "kd_source",
    "kd_alpha",
    "kd_beta",
    "kd_temperature",
    "kd_temperature_end",
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "max_length",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "assistant_only_loss",
    "completion_only_loss",
    "packing",
    "chat_template_path",
    "eos_token",
)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


def _trace_facts(traces: str | None) -> tuple[dict | None, dict | None]:
    """(run.json, stats.json) of a trace_gen directory, or (None, None) for other trace sources."""
    if not traces or not Path(traces).is_dir():
        return None, None
    return _read_json(Path(traces) / "run.json"), _read_json(Path(traces) / "stats.json")


def _eval_lines(evaluation: dict) -> list[str]:
    """One table row per benchmark of an eval_harness summary.json: pass@1 [95% interval], avg@K ± sd, maj@K."""
    lines = [
        "| benchmark | n | samples | pass@1 [95% CI] | avg@K ± sd | maj@K |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in sorted(evaluation.get("benchmarks", {}).items()):
        k = s.get("samples")
        ci = s.get("pass@1_ci") or [None, None]
        pass1 = f"{100 * s['pass@1']:.1f}%" if s.get("pass@1") is not None else "?"
        interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if None not in ci else ""
        avg = s.get(f"avg@{k}")
        avg_text = f"{100 * avg:.1f}% ± {100 * s[f'avg@{k}_std']:.1f} (K={k})" if avg is not None else "-"
        maj = s.get(f"maj@{k}")
        maj_text = f"{100 * maj:.1f}% (K={k})" if maj is not None else "-"
        lines.append(f"| {name} | {s.get('n', '?')} | {k} | {pass1}{interval} | {avg_text} | {maj_text} |")
    sampling = next(
        (s.get("sampling") for s in evaluation.get("benchmarks", {}).values() if s.get("sampling")), None
    )
    if sampling:
        lines += ["", f"Sampling: `{json.dumps(sampling, sort_keys=True)}`."]
    return lines


def card_text(
    summary: dict,
    info: dict | None,
    trace_run: dict | None,
    trace_stats: dict | None,
    evaluation: dict | None = None,
    adapter: bool = False,
) -> str:
    """The card's Markdown, YAML metadata first (pure: the same inputs give the same card)."""
    base = summary.get("base_model")
    meta = {
        "library_name": "peft" if adapter else "transformers",
        "tags": ["distill-kit", "distillation", "trl", "sft", summary.get("mode", "sft")],
    }
    if _is_hub_id(base):
        meta["base_model"] = base
    teacher = (trace_run or {}).get("teacher")
    title = f"Student distilled from `{teacher}`" if teacher else "Student fine-tuned on reasoning traces"
    settings = summary.get("settings", {})
    lines = [f"---\n{yaml.safe_dump(meta, sort_keys=True)}---", "", f"# {title}", ""]
    lines += [
        f"- base model: `{base}`",
        f"- method: {summary.get('mode', '?')} fine-tuning with TRL's SFTTrainer"
        + (
            f", token-level KD from `{summary['kd_source']}` teacher"
            if summary.get("kd_source") not in (None, "none")
            else ""
        ),
        f"- trained on {summary.get('train_rows', '?'):,} rows of `{summary.get('traces', '?')}` for "
        f"{summary.get('global_step', '?')} steps (final train loss {summary.get('train_loss')})",
    ]
    if trace_run:
        lines.append(
            f"- traces: teacher `{trace_run.get('teacher', '?')}` on `{trace_run.get('dataset', '?')}`, sampling "
            f"`{json.dumps(trace_run.get('sampling', {}), sort_keys=True)}`"
        )
    if trace_stats:
        keys = ("kept", "verified", "sampled", "acceptance")
        lines.append(
            "- trace statistics: " + ", ".join(f"{k} {trace_stats[k]}" for k in keys if k in trace_stats)
        )
    method = {k: settings[k] for k in METHOD_KEYS if k in settings}
    if method:
        lines += [
            "",
            "## Settings",
            "",
            "Values that differ from the defaults (all of them: `run_config.yaml`):",
            "",
        ]
        lines += [f"- `{k}`: `{json.dumps(v)}`" for k, v in method.items()]
    lines += ["", "## Evaluation", ""]
    if evaluation:
        lines += _eval_lines(evaluation)
    else:
        lines.append(
            "Not evaluated yet: run `python -m eval_harness --model THIS_DIR ...`, then "
            "`python -m sft card RUN_DIR --eval OUTPUT/summary.json` to add the numbers here."
        )
    loader = "AutoPeftModelForCausalLM" if adapter else "AutoModelForCausalLM"
    module = "peft" if adapter else "transformers"
    lines += [
        "",
        "## Use",
        "",
        "```python",
        f"from {module} import {loader}",
        "from transformers import AutoTokenizer",
        f'model = {loader}.from_pretrained("THIS_DIR")',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_DIR")',
        "```",
    ]
    if info:
        versions = info.get("versions", {})
        lines += [
            "",
            "## Provenance",
            "",
            f"git commit `{(info.get('git') or {}).get('commit')}`; "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        ]
    return "\n".join(lines) + "\n"


def write_cards(run_dir: Path, evaluation: dict | None = None) -> list[Path]:
    """Write README.md into the run's model directories (the run dir, and merged/ when present); atomic."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "run_summary.json")
    if summary is None:
        raise FileNotFoundError(
            f"{run_dir} has no run_summary.json: it is not a finished `python -m sft run`"
        )
    info = _read_json(run_dir / "run_info.json")
    trace_run, trace_stats = _trace_facts(summary.get("traces"))
    written = []
    for model_dir, adapter in (
        (run_dir, (run_dir / "adapter_config.json").is_file()),
        (run_dir / "merged", False),
    ):
        if not (model_dir / "config.json").is_file() and not adapter:
            continue
        tmp = model_dir / (CARD + ".tmp")
        tmp.write_text(card_text(summary, info, trace_run, trace_stats, evaluation, adapter))
        tmp.replace(model_dir / CARD)
        written.append(model_dir / CARD)
    return written


def load_evaluation(path: str) -> dict:
    """An eval_harness summary.json ({"benchmarks": {name: {"pass@1": ...}}}); UsageError for anything else."""
    from sft.errors import UsageError

    file = Path(path)
    if file.is_dir():
        file = file / "summary.json"
    if not file.is_file():
        raise UsageError(
            f"--eval {path}: no such file; pass EVAL_OUTPUT_DIR/summary.json of `python -m eval_harness`"
        )
    try:
        evaluation = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--eval {file} is not JSON ({err}): pass eval_harness's summary.json") from None
    benchmarks = evaluation.get("benchmarks") if isinstance(evaluation, dict) else None
    if not isinstance(benchmarks, dict) or not all(
        isinstance(s, dict) and "pass@1" in s for s in benchmarks.values()
    ):
        raise UsageError(
            f"--eval {file} is not an eval_harness summary.json (no `benchmarks` of pass@1 numbers): pass "
            "EVAL_OUTPUT_DIR/summary.json written by `python -m eval_harness`"
        )
    return evaluation


def main(argv: list[str]) -> int:
    """`python -m sft card RUN_DIR [--eval EVAL_OUTPUT/summary.json]`: re-render the run's model card."""
    import argparse

    from sft.errors import UsageError

    parser = argparse.ArgumentParser(
        prog="python -m sft card", description="Re-render the model card (README.md) of a finished `sft run`."
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output directory of `python -m sft run`")
    parser.add_argument(
        "--eval",
        metavar="SUMMARY_JSON",
        help="eval_harness summary.json (or its output directory): adds pass@1 / avg@K / maj@K per benchmark",
    )
    args = parser.parse_args(argv)
    try:
        if not (Path(args.run_dir) / "run_summary.json").is_file():
            raise UsageError(
                f"{args.run_dir} has no run_summary.json: pass the --output_dir of a finished `python -m sft run`"
            )
        evaluation = load_evaluation(args.eval) if args.eval else None
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for card in write_cards(Path(args.run_dir), evaluation):
        print(f"wrote {card}")
    return 0
