"""`python -m eval_harness`: score a model on reasoning benchmarks; `compare` for teacher vs student.

Usage:
    python -m eval_harness --model PATH --benchmarks math500,gsm8k,aime24,amc23,humaneval \\
        --samples 4 --backend vllm --engine-args '{"tensor_parallel_size": 2, "max_model_len": 34816}' \\
        --output-dir runs/eval
    python -m eval_harness --responses runs/eval/samples/math500-<hash>.jsonl --benchmarks math500 --output-dir runs/rescore
    python -m eval_harness --oracle --benchmarks math500,gsm8k,humaneval --output-dir runs/oracle
    python -m eval_harness --model PATH --custom my_set.jsonl --custom-type math \\
        --problem-field question --answer-field final --output-dir runs/mine
    python -m eval_harness compare --models teacher=PATH student=PATH --benchmarks math500 --limit 100 \\
        --output-dir runs/cmp

Generation defaults are per benchmark: R1's (temperature 0.6, top_p 0.95, 32,768 new tokens) for the
real ones, greedy with 128 new tokens for the toy; --temperature/--top-p/--max-new-tokens override.
New tokens are capped to what the model's context leaves after each prompt (a warning says so).
Without --backend: vllm when it is installed and a GPU is visible, else hf (the choice is printed).
Writes OUTPUT_DIR/summary.json ({"benchmarks": {name: {"pass@1": ..., "n": ...}}}, fractions 0-1),
summary.md, and per-sample rows under OUTPUT_DIR/samples/ (a rerun with the same settings resumes).
"""

import argparse
import json
import sys
from pathlib import Path

from eval_harness.benchmarks import BENCHMARKS
from eval_harness.benchmarks.custom import KINDS, CustomBenchmark
from trace_gen.backends import BACKENDS
from trace_gen.backends.base import DTYPES
from trace_gen.backends.openai_options import OpenAIOptions, add_openai_arguments
from trace_gen.cli import json_object
from trace_gen.errors import BackendError, UsageError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--benchmarks",
        default=None,
        help=f"comma-separated; known: {', '.join(BENCHMARKS)} (default: toy, or only --custom)",
    )
    p.add_argument("--samples", type=int, default=1, help="samples K per item (pass@1 is their mean)")
    p.add_argument("--temperature", type=float, default=None, help="default per benchmark (R1: 0.6; toy: 0)")
    p.add_argument("--top-p", type=float, default=None, help="default per benchmark (R1: 0.95)")
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="default per benchmark (R1: 32768; toy: 128)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; a chunk of items uses seed + its first index"
    )
    p.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    p.add_argument(
        "--batch-size", type=int, default=64, help="prompts per generate call (and per saved chunk)"
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="default: vllm when it is installed and a GPU is visible, else hf (printed)",
    )
    p.add_argument(
        "--engine-args",
        type=json_object,
        default={},
        help='vllm: JSON of vllm.EngineArgs fields, e.g. \'{"tensor_parallel_size": 2, "max_model_len": 34816}\'',
    )
    p.add_argument(
        "--device",
        default="auto",
        help="hf: auto (the GPU(s) when visible, several via device_map='auto'), cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="hf: auto = bfloat16 on GPU, float32 on CPU"
    )
    add_openai_arguments(p)
    p.add_argument("--verify-workers", type=int, default=2, help="math-verify worker processes")
    p.add_argument("--verify-timeout", type=float, default=10.0, help="seconds per math answer check")
    p.add_argument("--output-dir", type=Path, required=True)
    g = p.add_argument_group("custom benchmark (your own held-out set)")
    g.add_argument("--custom", default=None, metavar="FILE", help="JSONL/Parquet/saved or hub dataset")
    g.add_argument("--custom-type", choices=KINDS, default="math")
    g.add_argument("--custom-name", default=None, help="default: the file name without extension")
    g.add_argument("--custom-split", default="test", help="split, for a hub dataset")
    g.add_argument("--problem-field", default="problem", help="math: the problem; code: the function prompt")
    g.add_argument("--answer-field", default="answer", help="math: the gold final answer")
    g.add_argument("--id-field", default=None, help="default: <name>-<row index>")
    g.add_argument("--solution-field", default=None, help="reference solution, for --oracle")
    g.add_argument("--test-field", default="test", help="code: test code defining check(candidate)")
    g.add_argument("--entry-point-field", default="entry_point", help="code: the function's name")
    g.add_argument(
        "--extractors", default="boxed", help="math: answer extractors in order (boxed,gsm8k,last_number)"
    )


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
        p.add_argument("--latency-prompts", type=int, default=8, help="prompts timed one at a time")
    else:
        p = argparse.ArgumentParser(
            prog="python -m eval_harness",
            description=__doc__.split("\n")[0],
            epilog="subcommand: compare (see `python -m eval_harness compare --help`)",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--model", help="model directory or hub id")
        source.add_argument(
            "--responses", type=Path, help="score pre-generated responses (JSONL: id, completion)"
        )
        source.add_argument("--oracle", action="store_true", help="score the reference solutions (self-test)")
    _common(p)
    return p


def _benchmarks(args) -> list:
    custom = []
    if args.custom:
        name = args.custom_name or Path(args.custom).name.split(".")[0]
        if name in BENCHMARKS:
            raise UsageError(f"custom benchmark name {name!r} is taken by a built-in one; pass --custom-name")
        custom = [
            CustomBenchmark(
                path=args.custom,
                kind=args.custom_type,
                name=name,
                problem_field=args.problem_field,
                answer_field=args.answer_field,
                id_field=args.id_field,
                solution_field=args.solution_field,
                test_field=args.test_field,
                entry_point_field=args.entry_point_field,
                split=args.custom_split,
                extractors=tuple(e.strip() for e in args.extractors.split(",")),
            )
        ]
    spec = args.benchmarks if args.benchmarks is not None else ("" if custom else "toy")
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UsageError(
            f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)} (or --custom FILE)"
        )
    if not names and not custom:
        raise UsageError("no benchmarks given; pass --benchmarks or --custom FILE")
    return [BENCHMARKS[n] for n in names] + custom


def _check_model(path: str) -> None:
    p = Path(path)
    if (path.startswith((".", "/", "~")) or p.exists()) and not (p / "config.json").is_file():
        raise UsageError(f"model not found: {p} has no config.json; pass a model directory or hub id")


def _backend_options(args) -> dict:
    if args.backend == "hf":
        return {"device": args.device, "dtype": args.dtype}
    if args.backend == "vllm":
        return {"engine_args": args.engine_args}
    return OpenAIOptions.from_args(args).as_kwargs()


def _resolve_backend(args) -> None:
    """--backend when not given: vllm when it is installed and a GPU is visible, else hf (printed)."""
    if args.backend is None:
        from trace_gen.backends.base import auto_backend

        args.backend = auto_backend()


def _samplings(args, benches: list) -> dict:
    from eval_harness.evaluate import sampling_for

    if args.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {args.samples}")
    overrides = {"temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens}
    samplings = {b.NAME: sampling_for(b, args.samples, args.seed, overrides) for b in benches}
    greedy = [name for name, s in samplings.items() if s.temperature == 0]
    if args.samples > 1 and greedy:
        raise UsageError(
            f"--samples {args.samples} with greedy decoding on {', '.join(greedy)} repeats one answer; "
            f"pass --temperature (R1 evaluation uses 0.6) or --samples 1"
        )
    return samplings


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    is_compare = bool(argv) and argv[0] == "compare"
    args = make_parser(is_compare).parse_args(argv[1:] if is_compare else argv)
    try:
        benches = _benchmarks(args)
        if is_compare:
            return _compare(args, benches)
        return _evaluate(args, benches)
    except (UsageError, BackendError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _evaluate(args, benches: list) -> int:
    from eval_harness import evaluate as ev
    from eval_harness.report import summary_markdown
    from trace_gen.verify import MathVerifierPool

    samplings = _samplings(args, benches) if args.model else {}
    items = {b.NAME: b.load(args.limit) for b in benches}  # missing data fails here, before any model
    samples_dir = args.output_dir / "samples"
    if args.model:
        _check_model(args.model)
    if args.responses:
        responses = ev.match_responses(args.responses, ev.read_responses(args.responses), items)
        source = {"responses": str(args.responses)}
    elif args.oracle:
        responses = {b.NAME: ev.oracle_completions(b, items[b.NAME]) for b in benches}
        source = {"oracle": True}
    else:
        _resolve_backend(args)
        source = {"model": args.model, "backend": args.backend}

    with MathVerifierPool(workers=args.verify_workers, timeout_s=args.verify_timeout) as pool:
        if args.model:
            from trace_gen.backends import make_backend

            backend = make_backend(args.backend, args.model, args.batch_size, **_backend_options(args))
            try:
                results = ev.evaluate_model(
                    backend, benches, items, samplings, pool, samples_dir, args.model, args.backend
                )
            finally:
                backend.close()
        else:
            results = {}
            for b in benches:
                settings = {"benchmark": b.NAME, **{k: str(v) for k, v in source.items()}}
                path = samples_dir / f"{b.NAME}-{ev.settings_id(settings)}.jsonl"
                rows = ev.score_given(b, items[b.NAME], responses[b.NAME], pool, path, settings)
                results[b.NAME] = ev.summary_for(b, items[b.NAME], rows, path, None)

    summary = {**source, "limit": args.limit, "benchmarks": results}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.output_dir / "summary.md").write_text(summary_markdown(summary))
    print(summary_markdown(summary))
    print(f"wrote {args.output_dir / 'summary.json'} and summary.md; per-sample rows in {samples_dir}")
    return 0


def _compare(args, benches: list) -> int:
    from eval_harness.compare import compare, markdown_table
    from trace_gen.backends import make_backend

    models = dict(m.split("=", 1) for m in args.models if "=" in m)
    if len(models) != len(args.models):
        raise UsageError("--models takes NAME=PATH pairs, e.g. teacher=runs/t student=runs/s")
    for path in models.values():
        _check_model(path)
    samplings = _samplings(args, benches)
    items = {b.NAME: b.load(args.limit) for b in benches}
    _resolve_backend(args)

    def backend_for(path: str):
        return make_backend(args.backend, path, args.batch_size, **_backend_options(args))

    report = compare(
        models,
        benches,
        items,
        samplings,
        args.output_dir,
        backend_for,
        backend_kind=args.backend,
        verify=(args.verify_workers, args.verify_timeout),
        latency_prompts=args.latency_prompts,
    )
    print(markdown_table(report))
    print(f"wrote {args.output_dir / 'report.json'}, report.md, report.png")
    return 0
