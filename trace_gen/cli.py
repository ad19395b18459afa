"""`python -m trace_gen`: sample chain-of-thought traces from a teacher and keep the verified ones.

Usage:
    python -m trace_gen --output-dir runs/traces --n 2000                # toy teacher on the toy task
    python -m trace_gen --backend vllm --teacher Qwen/QwQ-32B --dataset data.jsonl \\
        --problem-column question --answer-column answer --n 800000 --samples-per-prompt 4 \\
        --engine-args '{"tensor_parallel_size": 4, "max_model_len": 34816}' --output-dir runs/traces \\
        --push-to-hub me/qwq-traces          # then: datasets.load_dataset("runs/traces") or the hub copy
    python -m trace_gen --backend hf --device cuda --dtype bfloat16 --teacher MODEL ...   # no vLLM
    python -m trace_gen --backend openai --base-url http://127.0.0.1:8000/v1 --teacher NAME ...
    python -m trace_gen ... --num-shards 8 --shard-index $SLURM_ARRAY_TASK_ID --output-dir runs/shard-$SLURM_ARRAY_TASK_ID
    python -m trace_gen merge runs/traces runs/shard-*          # join shards, print stats
    python -m trace_gen ... --ray --num-shards 64 --output-dir runs/traces  # Ray cluster: runs/traces/merged
    python -m trace_gen filter runs/traces runs/filtered        # format/dedup/decontam/keep policy

The flags are the fields of `trace_gen.config.RunConfig` (the library takes the same object:
`trace_gen.generate(RunConfig(...))`). Every flag also takes its underscore spelling (--output_dir).
Exit codes: 0 done; 2 bad input or a failing teacher (one `error:` line; --debug for the traceback),
nothing half-written and committed batches kept; 3 the prompts ran out before --n traces were kept
(the rows written are valid; --allow-short makes this 0); 1 an unexpected error.
"""

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path

from trace_gen.backends.openai_options import OpenAIOptions, add_openai_arguments
from trace_gen.config import TOY_TEACHER, RunConfig
from trace_gen.errors import BackendError, UsageError, unexpected_error_line

SUBCOMMANDS = ("merge", "filter")
EXIT_SHORT = 3
REPO = Path(__file__).resolve().parents[1]
DEPRECATED = {"--out": "--output-dir", "--model": "--teacher", "--batch-prompts": "--batch-size"}


def json_object(text: str) -> dict:
    """argparse type: a JSON object (for --engine-args, --extra-body)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each default said once: appended unless the help already says it, or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:  # argparse's hook for this
        text = action.help or ""
        default = action.default
        if isinstance(action, argparse.BooleanOptionalAction) and "(default:" not in text:
            return f"{text} (default: %(default)s)"
        if "(default:" in text or default is None or default is False or default == argparse.SUPPRESS:
            return text
        return text if default in ([], {}, ()) else f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`error: ...` and where the flags are listed, exit 2), and every
    flag also under its underscore spelling (`--output_dir` is `--output-dir`, as in sft's parser)."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        end = args.index("--") if "--" in args else len(args)
        for i, arg in enumerate(args[:end]):
            if arg.startswith("--") and "_" in (name := arg.partition("=")[0]):
                args[i] = name.replace("_", "-") + arg[len(name) :]
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (`{self.prog} --help` lists the flags)\n")


def new_parser(prog: str, description: str) -> Parser:
    return Parser(prog=prog, description=description, formatter_class=HelpFormatter)


def add_flag(group, names: tuple[str, ...], **kwargs) -> None:
    """A flag under its first name; the others (old spellings) as hidden aliases."""
    group.add_argument(names[0], **kwargs)
    hidden = {**kwargs, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
    for alias in names[1:]:
        group.add_argument(alias, **hidden)


def _help(meta: dict) -> str:
    """The field's help ('%' escaped for argparse), with its default in words where it is not a value."""
    text = meta["help"] if meta.get("shown") is None else f"{meta['help']} (default: {meta['shown']})"
    return text.replace("%", "%%")


def _flag_kwargs(f: dataclasses.Field, kind) -> dict:
    meta = f.metadata
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    kwargs = {"dest": f.name, "help": _help(meta)}
    if kind is bool:
        return {**kwargs, "action": "store_true", "default": default}
    kwargs.update(default=default, metavar=meta.get("metavar"), choices=meta.get("choices"))
    if kind == tuple[str, ...]:
        return {**kwargs, "action": "append", "default": None}
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    base = args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind
    return {**kwargs, "type": json_object if base is dict else base}


def make_parser() -> argparse.ArgumentParser:
    """The flags of RunConfig's fields, grouped by concern, each default said once."""
    p = new_parser("python -m trace_gen", __doc__.split("\n")[0])
    p.usage = "python -m trace_gen --output-dir DIR [--teacher MODEL] [--dataset DATA] [--n N] [flags]"
    p.epilog = (
        "subcommands: `python -m trace_gen merge --help`, `python -m trace_gen filter --help`\n"
        "exit codes: 0 done; 2 bad input or a failing teacher (one line); 3 fewer than --n kept\n"
        "(--allow-short: 0); 1 unexpected. Every flag also takes its underscore spelling."
    )
    hints = typing.get_type_hints(RunConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(RunConfig):
        group_name = f.metadata.get("group")
        if group_name is None:
            continue
        if group_name not in groups:
            groups[group_name] = p.add_argument_group(group_name)
            if group_name == "generation backend":
                add_openai_arguments(p)  # the shared group (also eval_harness's), after the backend's
        names = f.metadata["flags"] or ("--" + f.name.replace("_", "-"),)
        # --output-dir is required, checked by `generate` (argparse's check would not see its alias)
        add_flag(groups[group_name], names, **_flag_kwargs(f, hints[f.name]))
    add_flag(p.add_argument_group("debugging"), ("--debug",), action="store_true",
             help="print the full traceback instead of the one-line error")  # fmt: skip
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig) if f.name != "openai"}
    return RunConfig(**fields, openai=OpenAIOptions.from_args(args))


def next_command(stats: dict, config: RunConfig) -> str:
    """The `python -m sft run` that trains a student on these traces."""
    recipe = "toy_student.yaml" if config.teacher == str(TOY_TEACHER) else "r1_distill_qwen2.5_1.5b_lora.yaml"
    path = REPO / "configs" / "sft" / recipe
    shown = os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    return f"python -m sft run --config {shown} --traces {stats['output_dir']} --output_dir runs/student"


def report(stats: dict, config: RunConfig) -> int:
    """Print the summary lines (stderr) and return the exit code: EXIT_SHORT when fewer than --n were
    kept, unless --allow-short."""
    reasons = stats.get("reasons", {})
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])
                         if k not in ("kept", "over_target") and not k.startswith("skipped:"))  # fmt: skip
    skipped = ", ".join(
        f"{k.removeprefix('skipped:')} {v}" for k, v in reasons.items() if k.startswith("skipped:")
    )
    print(
        f"kept {stats['kept']} of --n {config.n} in {stats['output_dir']}; verified {stats['verified']} of "
        f"{stats['sampled']} samples (acceptance {stats['acceptance']:.3f}); rejected {stats['rejected']}"
        + (f" ({rejected})" if rejected else "")
        + (f"; prompts skipped: {skipped}" if skipped else ""),
        file=sys.stderr,
    )
    code = 0
    if stats["kept"] < config.n:
        print(
            f"warning: kept {stats['kept']} of --n {config.n}: the {stats['prompts']} prompts ran out "
            f"({stats['verified']} of {stats['sampled']} samples verified"
            + (f"; skipped: {skipped}" if skipped else "")
            + "); give more problems, raise --samples-per-prompt, or lower --n"
            + ("" if config.allow_short else f" (--allow-short accepts this; exit {EXIT_SHORT})"),
            file=sys.stderr,
        )
        code = 0 if config.allow_short else EXIT_SHORT
    if code == 0:
        print(f"next: {next_command(stats, config)}", file=sys.stderr)
    return code


def _run(argv: list[str]) -> tuple[dict, int]:
    """(stats, exit code) of the command line."""
    if argv and argv[0] == "merge":
        from trace_gen.merge import make_parser as merge_parser
        from trace_gen.merge import merge
        from trace_gen.run import pushed

        margs = merge_parser().parse_args(argv[1:])
        if margs.push_to_hub:
            from trace_gen.dataset import check_push

            check_push(margs.push_to_hub)
        return pushed({**merge(margs.out, margs.shards), "output_dir": str(margs.out)}, margs.push_to_hub), 0
    if argv and argv[0] == "filter":
        from trace_gen.filter_cli import make_parser as filter_parser
        from trace_gen.filter_cli import run_filter

        return run_filter(filter_parser().parse_args(argv[1:])), 0
    from trace_gen.run import generate

    args = make_parser().parse_args(argv)
    for old, new in DEPRECATED.items():
        if any(a == old or a.startswith(old + "=") for a in argv):
            print(
                f"note: {old} is now {new} (the old spelling works until the next release)", file=sys.stderr
            )
    config = config_from_args(args)
    stats = generate(config)
    return stats, report(stats, config)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        stats, code = _run(argv)
    except SystemExit as done:  # argparse: --help (0) or a bad flag (2, its one line already printed)
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, BackendError) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; committed batches are kept: rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as err:  # a library error that got past the checks: one line, the traceback on --debug
        if debug:
            raise
        print(unexpected_error_line(err), file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return code
