"""`python -m eval_harness`: score a model on reasoning benchmarks; `compare` for teacher vs student.

Usage:
    python -m eval_harness --model PATH --benchmarks math500,gsm8k,aime24,amc23,humaneval \\
        --backend vllm --engine-args '{"tensor_parallel_size": 2, "max_model_len": 34816}' \\
        --output-dir runs/eval
    python -m eval_harness --responses runs/eval/samples/math500-<hash>.jsonl --benchmarks math500 --output-dir runs/rescore
    python -m eval_harness --oracle --benchmarks math500,gsm8k,humaneval --output-dir runs/oracle
    python -m eval_harness --model PATH --custom my_set.jsonl --custom-type math \\
        --problem-column question --answer-column final --output-dir runs/mine
    python -m eval_harness compare --models teacher=PATH,student=PATH --benchmarks math500 --limit 100 \\
        --output-dir runs/cmp

Generation defaults are per benchmark: R1's (temperature 0.6, top_p 0.95, 32,768 new tokens) and K
samples per item (aime24 64, amc23 16, math500 and humaneval 4, gsm8k 1) for the real ones, greedy
with 128 new tokens and K = 1 for the toy; --temperature/--top-p/--max-new-tokens/--samples-per-prompt
override. New tokens are capped to what the model's context leaves after each prompt (a warning says so).
Writes OUTPUT_DIR/summary.json ({"benchmarks": {name: {"pass@1": ..., "pass@1_ci": [lo, hi], "n": ...}}},
fractions 0-1), summary.md, and per-sample rows under OUTPUT_DIR/samples/ (a rerun with the same
settings resumes). Flags: `--a-b` and `--a_b` are the same flag; old names (--samples, --*-field,
--custom-split) still work.
"""

import argparse
import re
import sys
from pathlib import Path

from eval_harness.benchmarks import BENCHMARKS
from eval_harness.benchmarks.custom import KINDS, CustomBenchmark
from trace_gen.backends import BACKENDS
from trace_gen.backends.base import DTYPES
from trace_gen.backends.openai_options import OpenAIOptions, add_openai_arguments
from trace_gen.cli import json_object
from trace_gen.errors import BackendError, UsageError

# old spelling -> flag (VOCAB.md: one vocabulary for the three CLIs); accepted with a note on stderr
ALIASES = {
    "--samples": "--samples-per-prompt",
    "--custom-split": "--split",
    "--problem-field": "--problem-column",
    "--answer-field": "--answer-column",
    "--id-field": "--id-column",
    "--test-field": "--tests-column",
    "--solution-field": "--solution-column",
    "--entry-point-field": "--entry-point-column",
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the CLIs' rule for bad input: one line, exit 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default once: appended where the help text does not already state it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def normalise_argv(argv: list[str]) -> list[str]:
    """`--a_b` -> `--a-b`; old names -> current ones (one note on stderr each)."""
    out = []
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token.partition("=")
            name = "--" + name[2:].replace("_", "-")
            if name in ALIASES:
                print(f"note: {name} is now {ALIASES[name]} (the old name works for now)", file=sys.stderr)
                name = ALIASES[name]
            token = name + eq + value
        out.append(token)
    return out


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (--limit 0 would silently mean "everything")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _known_samples() -> str:
    return ", ".join(f"{name} {b.SAMPLES}" for name, b in BENCHMARKS.items())


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("benchmarks")
    g.add_argument(
        "--benchmarks",
        default=None,
        help=f"comma-separated; known: {', '.join(BENCHMARKS)} (default: toy, or only --custom)",
    )
    g.add_argument(
        "--limit", type=_positive_int, default=None, help="first N items of each benchmark (default: all)"
    )
    g = p.add_argument_group("custom benchmark (your own held-out set)")
    g.add_argument(
        "--custom", default=None, metavar="FILE", help="JSONL, JSON array, Parquet, saved or hub dataset"
    )
    g.add_argument("--custom-type", choices=KINDS, default="math", help="how items are scored")
    g.add_argument("--custom-name", default=None, help="default: the file name without extension")
    g.add_argument("--split", default="test", help="split, for a hub dataset")
    g.add_argument("--problem-column", default="problem", help="math: the problem; code: the function prompt")
    g.add_argument("--answer-column", default="answer", help="math: the gold final answer")
    g.add_argument("--id-column", default=None, help="a stable id (default: <name>-<row index>)")
    g.add_argument("--solution-column", default=None, help="reference solution, for --oracle (default: none)")
    g.add_argument("--tests-column", default="test", help="code: test code defining check(candidate)")
    g.add_argument("--entry-point-column", default="entry_point", help="code: the function's name")
    g.add_argument(
        "--extractors", default="boxed", help="math: answer extractors in order (boxed,gsm8k,last_number)"
    )
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--samples-per-prompt",
        type=_positive_int,
        default=None,
        metavar="K",
        help=f"samples per item; pass@1 is their mean, avg@K their per-run spread (default per benchmark: "
        f"{_known_samples()}; custom 1; 1 when greedy)",
    )
    g.add_argument(
        "--temperature", type=float, default=None, help="default per benchmark (R1: 0.6; toy: 0 = greedy)"
    )
    g.add_argument("--top-p", type=float, default=None, help="default per benchmark (R1: 0.95; toy: 1)")
    g.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=None,
        help="default per benchmark (R1: 32768; toy: 128)",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="base seed; a chunk of items uses seed + its first index"
    )
    g = p.add_argument_group("generation backend")
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="default: vllm when it is installed and a GPU is visible, else hf (printed)",
    )
    g.add_argument(
        "--engine-args",
        type=json_object,
        default={},
        help='vllm: JSON of vllm.EngineArgs fields, e.g. \'{"tensor_parallel_size": 2, "max_model_len": 34816}\'',
    )
    g.add_argument(
        "--device",
        default="auto",
        help="hf: auto (the GPU(s) when visible, several via device_map='auto'), cpu, cuda or cuda:N",
    )
    g.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="hf: auto = bfloat16 on GPU, float32 on CPU"
    )
    g.add_argument(
        "--batch-size", type=_positive_int, default=64, help="prompts per generate call (and per saved chunk)"
    )
    add_openai_arguments(p)
    g = p.add_argument_group("scoring")
    g.add_argument("--verify-workers", type=_positive_int, default=2, help="math-verify worker processes")
    g.add_argument("--verify-timeout", type=float, default=10.0, help="seconds per math answer check")
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", type=Path, required=True, help="created if missing; a rerun resumes")
    g.add_argument("--debug", action="store_true", help="full traceback instead of the one-line error")


def make_parser(compare: bool) -> argparse.ArgumentParser:
    if compare:
        p = _Parser(
            prog="python -m eval_harness compare",
            description="accuracy (with paired differences), size and latency of several models, measured "
            "in one run on one machine; writes report.json, report.md, report.png and report.svg",
            formatter_class=_Help,
            allow_abbrev=False,
        )
        g = p.add_argument_group("models")
        g.add_argument(
            "--models",
            nargs="+",
            required=True,
            metavar="NAME=PATH[,NAME=PATH...]",
            help="models to compare, comma- or space-separated; the first is the reference "
            "(e.g. teacher=PATH,student=PATH)",
        )
        g.add_argument("--latency-prompts", type=_positive_int, default=8, help="prompts timed one at a time")
    else:
        p = _Parser(
            prog="python -m eval_harness",
            description=__doc__.split("\n")[0],
            epilog="subcommand: compare (see `python -m eval_harness compare --help`). Old flag names still "
            "work: --samples, --problem-field, --answer-field, --id-field, --test-field, --solution-field, "
            "--entry-point-field, --custom-split; --a_b is --a-b.",
            formatter_class=_Help,
            allow_abbrev=False,
        )
        g = p.add_argument_group("what to score (one of)")
        source = g.add_mutually_exclusive_group(required=True)
        source.add_argument("--model", help="model directory or hub id (openai backend: the served name)")
        source.add_argument(
            "--responses", type=Path, help="score pre-generated responses (JSONL: id, completion[, sample])"
        )
        source.add_argument("--oracle", action="store_true", help="score the reference solutions (self-test)")
    _common(p)
    return p


def parse_models(values: list[str]) -> dict[str, str]:
    """NAME=PATH pairs, comma- or space-separated (a comma inside a path is kept)."""
    pairs = [pair for v in values for pair in re.split(r",(?=[^,=/]+=)", v) if pair]
    if not all("=" in pair and pair.split("=", 1)[0] and pair.split("=", 1)[1] for pair in pairs):
        raise UsageError("--models takes NAME=PATH pairs, e.g. teacher=runs/t,student=runs/s")
    models = dict(pair.split("=", 1) for pair in pairs)
    if len(models) != len(pairs):
        raise UsageError("--models names must be different, e.g. teacher=... student=...")
    return models


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
                problem_field=args.problem_column,
                answer_field=args.answer_column,
                id_field=args.id_column,
                solution_field=args.solution_column,
                test_field=args.tests_column,
                entry_point_field=args.entry_point_column,
                split=args.split,
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


def _check_numbers(args) -> None:
    if args.temperature is not None and args.temperature < 0:
        raise UsageError(f"--temperature must be 0 (greedy) or more, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.verify_timeout <= 0:
        raise UsageError(f"--verify-timeout must be positive, got {args.verify_timeout}")


def _backend_options(args) -> dict:
    if args.backend == "hf":
        return {"device": args.device, "dtype": args.dtype}
    if args.backend == "vllm":
        return {"engine_args": args.engine_args}
    return OpenAIOptions.from_args(args).as_kwargs()


def _resolve_backend(args) -> None:
    """--backend when not given: vllm when it is installed and a GPU is visible, else hf (printed);
    then the chosen backend's package must be installed."""
    from eval_harness.checks import check_backend

    if args.backend is None:
        from trace_gen.backends.base import auto_backend

        args.backend = auto_backend()
    check_backend(args.backend)


def _samplings(args, benches: list) -> dict:
    """Each benchmark's SamplingConfig: its defaults (K = its SAMPLES, or 1 when greedy) under the flags."""
    from eval_harness.evaluate import sampling_for

    overrides = {"temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens}
    samplings = {}
    for b in benches:
        greedy = sampling_for(b, 1, args.seed, overrides).temperature == 0
        k = args.samples_per_prompt or (1 if greedy else b.SAMPLES)
        if greedy and k > 1:
            raise UsageError(
                f"--samples-per-prompt {k} with greedy decoding on {b.NAME} repeats one answer; "
                f"pass --temperature (R1 evaluation uses 0.6) or --samples-per-prompt 1"
            )
        samplings[b.NAME] = sampling_for(b, k, args.seed, overrides)
    return samplings


def _prepare_output(path: Path) -> None:
    """Create the output directory (check_output_dir said it can be) once the model has loaded, so a
    load that fails leaves nothing behind."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"--output-dir {path} cannot be created ({err.strerror}); pass another directory"
        ) from err


def main(argv: list[str] | None = None) -> int:
    argv = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    is_compare = bool(argv) and argv[0] == "compare"
    args = make_parser(is_compare).parse_args(argv[1:] if is_compare else argv)
    try:
        _check_numbers(args)
        benches = _benchmarks(args)
        if is_compare:
            return _compare(args, benches)
        return _evaluate(args, benches)
    except (UsageError, BackendError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


def _evaluate(args, benches: list) -> int:
    from eval_harness import evaluate as ev
    from eval_harness.checks import check_model, check_output_dir
    from eval_harness.report import summary_markdown

    samplings = _samplings(args, benches) if args.model else {}
    items = {b.NAME: b.load(args.limit) for b in benches}  # missing data fails here, before any model
    check_output_dir(args.output_dir)
    samples_dir = args.output_dir / "samples"
    if args.responses:
        responses = ev.match_responses(args.responses, ev.read_responses(args.responses), items)
        source = {"responses": str(args.responses)}
    elif args.oracle:
        responses = {b.NAME: ev.oracle_completions(b, items[b.NAME]) for b in benches}
        source = {"oracle": True}
    else:
        check_model(args.model, args.backend)  # before the auto pick prints its choice
        _resolve_backend(args)
        source = {"model": args.model, "backend": args.backend}

    from trace_gen.verify import MathVerifierPool

    with MathVerifierPool(workers=args.verify_workers, timeout_s=args.verify_timeout) as pool:
        if args.model:
            from trace_gen.backends import make_backend

            backend = make_backend(args.backend, args.model, args.batch_size, **_backend_options(args))
            try:
                _prepare_output(args.output_dir)
                results, _ = ev.evaluate_model(
                    backend, benches, items, samplings, pool, samples_dir, args.model, args.backend
                )
            finally:
                backend.close()
        else:
            _prepare_output(args.output_dir)
            results = {}
            for b in benches:
                settings = {"benchmark": b.NAME, **{k: str(v) for k, v in source.items()}}
                path = samples_dir / f"{b.NAME}-{ev.settings_id(settings)}.jsonl"
                rows = ev.score_given(b, items[b.NAME], responses[b.NAME], pool, path, settings)
                results[b.NAME] = ev.summary_for(b, items[b.NAME], rows, path, None)

    import json

    from eval_harness.intervals import METHOD
    from trace_gen.writer import _fsync_write

    summary = {**source, "limit": args.limit, "intervals": METHOD, "benchmarks": results}
    _fsync_write(args.output_dir / "summary.json", json.dumps(summary, indent=2).encode())
    _fsync_write(args.output_dir / "summary.md", summary_markdown(summary).encode())
    print(summary_markdown(summary))
    print(f"wrote {args.output_dir / 'summary.json'} and summary.md; per-sample rows in {samples_dir}")
    return 0


def _compare(args, benches: list) -> int:
    from eval_harness.checks import check_model, check_output_dir
    from eval_harness.compare import compare, markdown_table

    models = parse_models(args.models)
    samplings = _samplings(args, benches)
    items = {b.NAME: b.load(args.limit) for b in benches}
    check_output_dir(args.output_dir)
    for path in models.values():
        check_model(path, args.backend)  # before the auto pick prints its choice
    _resolve_backend(args)
    from trace_gen.backends import make_backend

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
    print(f"wrote {args.output_dir / 'report.json'}, report.md, report.png, report.svg")
    return 0
