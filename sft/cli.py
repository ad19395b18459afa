"""`python -m sft run|on-policy [--config configs/sft/NAME.yaml] [--field value ...]`.

Without --config only the toy demo runs (configs/sft/toy_student.yaml: the toy student on runs/demo/traces).
Naming a model or traces needs a recipe: the toy one is sized for a 0.17M-parameter model (max_length 256,
lr 3e-3, trains the embedding) and must never reach a real model silently.

Usage:
    python -m sft run                                   # the toy demo (configs/sft/toy_student.yaml)
    python -m sft run --config configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml --traces runs/r1/traces
    python -m sft run --config configs/sft/toy_student.yaml --traces runs/demo/traces --output_dir runs/s
    python -m sft run --config configs/sft/toy_student.yaml --dataset DIR --eval_split_ratio 0.05 --eval-strategy steps
    python -m sft on-policy --config configs/sft/toy_on_policy.yaml   # after `sft run`: sft/on_policy.py
    python -m sft init-student --teacher DIR --keep-every 2 --output-dir runs/student_init   # sft/init_student.py
    python -m sft card runs/s --eval runs/eval/summary.json   # re-render the model card with eval numbers

Flags follow the vocabulary of trace_gen and eval_harness (FLAG_ALIASES): `--model`, `--teacher`, `--output-dir`,
`--dataset`, and every flag also in its dash spelling (`--max-steps`).
"""

import difflib
import re
import sys

from sft.config import DEFAULT_CONFIG, DistillArguments
from sft.errors import UsageError
from sft.on_policy_config import OnPolicyArguments

# trl's configs import torch (seconds): imported where a parser is built, so `python -m sft --help` and a wrong
# subcommand answer at once
ON_POLICY_CONFIG = DEFAULT_CONFIG.parent / "toy_on_policy.yaml"


NEEDS_RECIPE = (
    "--model_name_or_path",
    "--traces",
    "--dataset_name",
)  # naming either means "not the toy demo"
RECIPE = "configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml"
ON_POLICY_NEEDS_RECIPE = ("--model_name_or_path", "--teacher_model_name_or_path", "--teachers", "--prompts")
ON_POLICY_RECIPE = "configs/sft/r1_distill_qwen_1.5b_from_7b_on_policy.yaml"


# the shared vocabulary (README "Vocabulary") -> the dataclass field it names
FLAG_ALIASES = {
    "--model": "--model_name_or_path",
    "--teacher": "--teacher_model_name_or_path",
    "--dataset": "--dataset_name",
}


def canonical_flags(argv: list[str]) -> list[str]:
    """Rewrite the shared vocabulary and dash spellings to the field names (`--max-steps=3` -> `--max_steps=3`).

    HfArgumentParser also accepts the dash spellings; rewriting them first lets the checks below look for one name.
    """
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            flag, eq, value = arg.partition("=")
            flag = FLAG_ALIASES.get(flag, flag)
            arg = "--" + flag[2:].replace("-", "_") + eq + value
        out.append(arg)
    return out


def _given(argv: list[str], flag: str) -> bool:
    return flag in argv or any(a.startswith(flag + "=") for a in argv)


def make_parser(subparsers=None):
    """The TrlParser of `sft run`: DistillArguments, SFTConfig, ModelConfig, and TRL's dataset options
    (ScriptArguments: --dataset_name ...; DatasetMixtureConfig: a `datasets:` mixture in the recipe)."""
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser

    dataclasses = (DistillArguments, SFTConfig, ModelConfig, ScriptArguments, DatasetMixtureConfig)
    if subparsers is not None:
        return subparsers.add_parser("run", help="Fine-tune a student on traces", dataclass_types=dataclasses)
    return TrlParser(dataclasses, prog="python -m sft run")


def make_on_policy_parser():
    """The TrlParser of `sft on-policy`: OnPolicyArguments, DistillationConfig, ModelConfig."""
    from trl import DistillationConfig, ModelConfig, TrlParser

    return TrlParser((OnPolicyArguments, DistillationConfig, ModelConfig), prog="python -m sft on-policy")


def _unknown_key_message(err: Exception, parser) -> str:
    """One line: the parser's complaint; for unknown keys, close matches and every valid key."""
    text = str(err).splitlines()[0]
    if "not used by the HfArgumentParser" not in text and "Unknown arguments" not in text:
        return text  # a field's own validation (e.g. DistillArguments.__post_init__)
    valid = sorted({a.dest for a in parser._actions if a.dest != "help"})
    unknown = [w.lstrip("-") for w in re.findall(r"'([^']+)'", text) if w.lstrip("-") not in valid]
    hints = [
        f"{word} → did you mean {close[0]}?"
        for word in unknown
        if (close := difflib.get_close_matches(word, valid, n=1))
    ]
    return f"{text} {'; '.join(hints)} (valid keys: {', '.join(valid)})"


def _config_path(argv: list[str]) -> str | None:
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if path is None and "--config" in argv and argv.index("--config") + 1 < len(argv):
        path = argv[argv.index("--config") + 1]
    return path


def _check_config_keys(argv: list[str], parser, run: bool) -> dict:
    """The --config YAML as a dict; raises the parser's unknown-key error for keys no dataclass has."""
    path = _config_path(argv)
    if path is None:
        return {}
    from sft.checks import load_config

    config = load_config(path)  # UsageError: missing file, YAML syntax, not a mapping
    if run:
        check_one_data_source(argv, config)
    valid = {a.dest for a in parser._actions}
    unknown = [k for k in config if k not in valid]
    if unknown:
        raise ValueError(f"Unknown arguments from config file {path}: {unknown}")
    return config


def check_one_data_source(argv: list[str], config: dict) -> None:
    """--traces (trace_gen output, the default) or TRL's dataset options (--dataset_name / a `datasets:` mixture)."""
    if "dataset_mixture" in config:
        raise UsageError(
            "`dataset_mixture:` is open-r1's block (its `weight` subsamples each dataset); write TRL's `datasets:` "
            "list instead: `datasets: [{path: ID_OR_DIR, name: CONFIG, split: train, columns: [messages], fraction: "
            "W}]` (fraction = the dataset's share of the mixture's rows)"
        )
    dataset_in_config = "dataset_name" in config or bool(config.get("datasets"))
    dataset = _given(argv, "--dataset_name") or dataset_in_config
    if dataset and (_given(argv, "--traces") or ("traces" in config and dataset_in_config)):
        raise UsageError(
            "--traces and --dataset_name (or a `datasets:` mixture) both name the training rows: give one"
        )


def _cpu_defaults(argv: list[str], config: dict) -> list[str]:
    """TRL defaults to bf16, which TrainingArguments refuses without a GPU: default it off on CPU."""
    import torch

    if torch.cuda.is_available() or "bf16" in config or any(a.startswith("--bf16") for a in argv):
        return argv
    return [*argv, "--bf16", "false"]


def _with_recipe(argv: list[str], run: bool) -> list[str]:
    """argv with the toy recipe's --config when none is given; naming a model or data without one is refused."""
    if _given(argv, "--config"):
        return argv
    named = [flag for flag in (NEEDS_RECIPE if run else ON_POLICY_NEEDS_RECIPE) if _given(argv, flag)]
    toy = DEFAULT_CONFIG if run else ON_POLICY_CONFIG
    if named:
        raise UsageError(
            f"{' and '.join(named)} without --config: pick a recipe sized for it, e.g. --config "
            f"{RECIPE if run else ON_POLICY_RECIPE} (all recipes: configs/sft/; the toy demo: --config "
            f"configs/sft/{toy.name})"
        )
    return ["--config", str(toy), *argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nsubcommands:\n  run    fine-tune a student on traces (see `python -m sft run --help`)")
        print("  on-policy  distil the student on its own samples (see `python -m sft on-policy --help`)")
        print("  init-student  a student from teacher layers (see `python -m sft init-student --help`)")
        print("  card   re-render a run's model card with eval numbers (see `python -m sft card --help`)")
        return 0
    if argv[0] == "init-student":
        from sft.init_student import main as init_student

        return init_student(argv[1:])
    if argv[0] == "card":
        from sft.model_card import main as card

        return card(argv[1:])
    if argv[0] not in ("run", "on-policy"):
        print(
            f"error: unknown subcommand {argv[0]!r}; use `python -m sft run|on-policy|init-student|card ...`",
            file=sys.stderr,
        )
        return 2
    command, argv = argv[0], canonical_flags(argv[1:])
    debug = "--debug" in argv  # ours, not a dataclass field: the traceback instead of one line
    argv = [a for a in argv if a != "--debug"]
    if "-h" in argv or "--help" in argv:
        from sft.run_help import format_help

        print(format_help(FLAG_ALIASES, on_policy=command == "on-policy"))  # fast: no torch/trl import
        return 0
    run = command == "run"
    if "--help_all" in argv:  # `--help-all`, as canonical_flags spells it: TrlParser's full help (slow)
        argv = ["--help"]
    else:
        try:
            argv = _with_recipe(argv, run)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    parser = make_parser() if run else make_on_policy_parser()
    try:
        # before the dataclasses validate values (e.g. bf16 on CPU)
        config = _check_config_keys(argv, parser, run)
        argv = _cpu_defaults(argv, config)
        args, training_args, model_args, *data_args = parser.parse_args_and_config(argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {_unknown_key_message(err, parser)}", file=sys.stderr)
        return 2
    if run:  # heavy imports only after arguments are valid
        from sft.train import run as train
    else:
        from sft.on_policy import run as train

    try:
        train(args, training_args, model_args, *data_args)
    except UsageError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; rerun the same command to resume from the last complete checkpoint",
            file=sys.stderr,
        )
        return 130
    except Exception as err:  # a library error that got past the checks: one line, the traceback with --debug
        if debug:
            raise
        from trace_gen.errors import (
            unexpected_error_line,
        )  # here: importing trace_gen at start-up would slow --help

        print(unexpected_error_line(err), file=sys.stderr)
        return 1
    return 0
