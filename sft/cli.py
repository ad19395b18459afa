"""`python -m sft run|on-policy [--config configs/sft/NAME.yaml] [--field value ...]`.

Without --config only the toy demo runs (configs/sft/toy_student.yaml: the toy student on runs/demo/traces).
Naming a model or traces needs a recipe: the toy one is sized for a 0.17M-parameter model (max_length 256,
lr 3e-3, trains the embedding) and must never reach a real model silently.

Usage:
    python -m sft run                                   # the toy demo (configs/sft/toy_student.yaml)
    python -m sft run --config configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml --traces runs/r1/traces
    python -m sft run --config configs/sft/toy_student.yaml --traces runs/demo/traces --output_dir runs/s
    python -m sft on-policy --config configs/sft/toy_on_policy.yaml   # after `sft run`: sft/on_policy.py
    python -m sft init-student --teacher DIR --keep-every 2 --output-dir runs/student_init   # sft/init_student.py
"""

import difflib
import re
import sys
from pathlib import Path

import yaml
from trl import DistillationConfig, ModelConfig, SFTConfig, TrlParser

from sft.config import DEFAULT_CONFIG, DistillArguments
from sft.errors import UsageError
from sft.on_policy_config import OnPolicyArguments

DATACLASSES = (DistillArguments, SFTConfig, ModelConfig)
ON_POLICY_DATACLASSES = (OnPolicyArguments, DistillationConfig, ModelConfig)
ON_POLICY_CONFIG = DEFAULT_CONFIG.parent / "toy_on_policy.yaml"


NEEDS_RECIPE = ("--model_name_or_path", "--traces")  # naming either means "not the toy demo"
RECIPE = "configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml"
ON_POLICY_NEEDS_RECIPE = ("--model_name_or_path", "--teacher_model_name_or_path", "--teachers", "--prompts")
ON_POLICY_RECIPE = "configs/sft/r1_distill_qwen_1.5b_from_7b_on_policy.yaml"


def _given(argv: list[str], flag: str) -> bool:
    return flag in argv or any(a.startswith(flag + "=") for a in argv)


def make_parser(subparsers=None) -> TrlParser:
    if subparsers is not None:
        return subparsers.add_parser("run", help="Fine-tune a student on traces", dataclass_types=DATACLASSES)
    return TrlParser(DATACLASSES, prog="python -m sft run")


def make_on_policy_parser() -> TrlParser:
    return TrlParser(ON_POLICY_DATACLASSES, prog="python -m sft on-policy")


def _unknown_key_message(err: Exception, parser: TrlParser) -> str:
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


def _check_config_keys(argv: list[str], parser: TrlParser) -> dict:
    """The --config YAML as a dict; raises the parser's unknown-key error for keys no dataclass has."""
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if path is None and "--config" in argv and argv.index("--config") + 1 < len(argv):
        path = argv[argv.index("--config") + 1]
    if path is None or not Path(path).is_file():
        return {}
    config = yaml.safe_load(Path(path).read_text()) or {}
    valid = {a.dest for a in parser._actions}
    unknown = [k for k in config if k not in valid]
    if unknown:
        raise ValueError(f"Unknown arguments from config file {path}: {unknown}")
    return config


def _cpu_defaults(argv: list[str], config: dict) -> list[str]:
    """TRL defaults to bf16, which TrainingArguments refuses without a GPU: default it off on CPU."""
    import torch

    if torch.cuda.is_available() or "bf16" in config or any(a.startswith("--bf16") for a in argv):
        return argv
    return [*argv, "--bf16", "false"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nsubcommands:\n  run    fine-tune a student on traces (see `python -m sft run --help`)")
        print("  on-policy  distil the student on its own samples (see `python -m sft on-policy --help`)")
        print("  init-student  a student from teacher layers (see `python -m sft init-student --help`)")
        return 0
    if argv[0] == "init-student":
        from sft.init_student import main as init_student

        return init_student(argv[1:])
    if argv[0] not in ("run", "on-policy"):
        print(
            f"error: unknown subcommand {argv[0]!r}; use `python -m sft run|on-policy ...`", file=sys.stderr
        )
        return 2
    command, argv = argv[0], argv[1:]
    run = command == "run"
    if not _given(argv, "--config") and "-h" not in argv and "--help" not in argv:
        named = [flag for flag in (NEEDS_RECIPE if run else ON_POLICY_NEEDS_RECIPE) if _given(argv, flag)]
        if named:
            toy = DEFAULT_CONFIG if run else ON_POLICY_CONFIG
            print(
                f"error: {' and '.join(named)} without --config: pick a recipe sized for it, e.g. --config "
                f"{RECIPE if run else ON_POLICY_RECIPE} (all recipes: configs/sft/; the toy demo: --config "
                f"configs/sft/{toy.name})",
                file=sys.stderr,
            )
            return 2
        argv = ["--config", str(DEFAULT_CONFIG if run else ON_POLICY_CONFIG), *argv]
    parser = make_parser() if run else make_on_policy_parser()
    try:
        config = _check_config_keys(argv, parser)  # before the dataclasses validate values (e.g. bf16 on CPU)
        argv = _cpu_defaults(argv, config)
        args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as err:
        print(f"error: {_unknown_key_message(err, parser)}", file=sys.stderr)
        return 2
    if run:  # heavy imports only after arguments are valid
        from sft.train import run as train
    else:
        from sft.on_policy import run as train

    try:
        train(args, training_args, model_args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
