"""`python -m eval_harness`: score models on reasoning benchmarks; `compare` for teacher vs student.

Usage:
    python -m eval_harness --model PATH --benchmarks toy --output-dir runs/eval
    python -m eval_harness compare --models teacher=PATH student=PATH --benchmarks toy --output-dir runs/cmp
"""

import argparse
import json
import sys
from pathlib import Path

from eval_harness.benchmarks import BENCHMARKS
from trace_gen.backends import BACKENDS
from trace_gen.errors import UsageError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmarks", default="toy", help=f"comma-separated; known: {', '.join(BENCHMARKS)}")
    p.add_argument("--samples", type=int, default=1, help="samples per item (pass@1 is their mean)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (R1 evaluation uses 0.6)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    p.add_argument("--batch-size", type=int, default=64, help="prompts per generate call")
    p.add_argument("--backend", choices=BACKENDS, default="hf")
    p.add_argument("--output-dir", type=Path, required=True)


def make_parser(compare: bool) -> argparse.ArgumentParser:
    if compare:
        p = argparse.ArgumentParser(
            prog="python -m eval_harness compare",
            description="accuracy, size and speed of several models, measured in one run",
        )
        p.add_argument(
            "--models",
            nargs="+",
            required=True,
            metavar="NAME=PATH",
            help="models to compare; the first is the reference (e.g. teacher=PATH student=PATH)",
        )
    else:
        p = argparse.ArgumentParser(
            prog="python -m eval_harness",
            description=__doc__.split("\n")[0],
            epilog="subcommand: compare (see `python -m eval_harness compare --help`)",
        )
        p.add_argument("--model", required=True, help="model directory or hub id")
    _common(p)
    return p


def _benchmarks(spec: str) -> list:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UsageError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    return [BENCHMARKS[n] for n in names]


def _check_model(path: str) -> None:
    p = Path(path)
    if (path.startswith((".", "/", "~")) or p.exists()) and not (p / "config.json").is_file():
        raise UsageError(f"model not found: {p} has no config.json; pass a model directory or hub id")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    is_compare = bool(argv) and argv[0] == "compare"
    args = make_parser(is_compare).parse_args(argv[1:] if is_compare else argv)
    try:
        benchmarks = _benchmarks(args.benchmarks)
        from trace_gen.backends import SamplingConfig, make_backend

        sampling = SamplingConfig(
            n=args.samples,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        )

        def backend_for(path: str):
            return make_backend(args.backend, path, args.batch_size)

        if is_compare:
            from eval_harness.compare import compare, markdown_table

            models = dict(m.split("=", 1) for m in args.models if "=" in m)
            if len(models) != len(args.models):
                raise UsageError("--models takes NAME=PATH pairs, e.g. teacher=runs/t student=runs/s")
            for path in models.values():
                _check_model(path)
            report = compare(models, benchmarks, sampling, args.limit, args.output_dir, backend_for)
            print(markdown_table(report))
            print(f"wrote {args.output_dir / 'report.json'}, report.md, report.png")
            return 0
        from eval_harness.evaluate import score_benchmark

        _check_model(args.model)
        backend = backend_for(args.model)
        summary = {
            "model": args.model,
            "sampling": sampling.as_dict(),
            "benchmarks": {
                b.NAME: score_benchmark(backend, b, sampling, args.limit, args.output_dir / "samples")
                for b in benchmarks
            },
        }
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary["benchmarks"]))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
