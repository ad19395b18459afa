"""`python -m sft run [--config configs/sft/NAME.yaml] [--field value ...]`.

Usage:
    python -m sft run                                   # embedded toy default (configs/sft/toy_student.yaml)
    python -m sft run --config configs/sft/toy_student.yaml --traces runs/demo/traces --output_dir runs/s
"""

import difflib
import sys

import yaml
from trl import ModelConfig, SFTConfig, TrlParser

from sft.config import DEFAULT_CONFIG, DistillArguments
from sft.errors import UsageError

DATACLASSES = (DistillArguments, SFTConfig, ModelConfig)


def make_parser(subparsers=None) -> TrlParser:
    if subparsers is not None:
        return subparsers.add_parser("run", help="Fine-tune a student on traces", dataclass_types=DATACLASSES)
    return TrlParser(DATACLASSES, prog="python -m sft run")


def _unknown_key_message(err: Exception, parser: TrlParser) -> str:
    valid = sorted({a.dest for a in parser._actions if a.dest != "help"})
    text = str(err)
    hints = []
    for word in text.replace("[", " ").replace("]", " ").replace("'", " ").replace(",", " ").split():
        word = word.lstrip("-")
        close = difflib.get_close_matches(word, valid, n=1)
        if close and word not in valid:
            hints.append(f"{word} → did you mean {close[0]}?")
    return f"{text.splitlines()[0]} {'; '.join(hints)} (valid keys: {', '.join(valid)})"


def _config_path(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _check_config(argv: list[str], parser: TrlParser) -> dict:
    """Read the YAML first, so an unknown key is reported before any dataclass validation runs."""
    path = _config_path(argv)
    if path is None:
        return {}
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except OSError as err:
        raise ValueError(f"cannot read config {path}: {err.strerror}") from err
    valid = {a.dest for a in parser._actions}
    unknown = [k for k in config if k not in valid]
    if unknown:
        raise ValueError(f"Unknown keys in {path}: {unknown}")
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
        return 0
    if argv[0] != "run":
        print(f"error: unknown subcommand {argv[0]!r}; use `python -m sft run ...`", file=sys.stderr)
        return 2
    argv = argv[1:]
    if (
        "--config" not in argv
        and not any(a.startswith("--config=") for a in argv)
        and "-h" not in argv
        and "--help" not in argv
    ):
        argv = ["--config", str(DEFAULT_CONFIG), *argv]
    parser = make_parser()
    try:
        argv = _cpu_defaults(argv, _check_config(argv, parser))
        args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as err:
        print(f"error: {_unknown_key_message(err, parser)}", file=sys.stderr)
        return 2
    from sft.train import run  # heavy imports only after arguments are valid

    try:
        run(args, training_args, model_args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
