"""`python -m sft run|on-policy [--config configs/sft/NAME.yaml] [--field value ...]`.

Usage:
    python -m sft run                                   # embedded toy default (configs/sft/toy_student.yaml)
    python -m sft run --config configs/sft/toy_student.yaml --traces runs/demo/traces --output_dir runs/s
    python -m sft on-policy --config configs/sft/toy_on_policy.yaml   # after `sft run`: sft/on_policy.py
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
        return 0
    if argv[0] not in ("run", "on-policy"):
        print(
            f"error: unknown subcommand {argv[0]!r}; use `python -m sft run|on-policy ...`", file=sys.stderr
        )
        return 2
    command, argv = argv[0], argv[1:]
    if (
        "--config" not in argv
        and not any(a.startswith("--config=") for a in argv)
        and "-h" not in argv
        and "--help" not in argv
    ):
        argv = ["--config", str(DEFAULT_CONFIG if command == "run" else ON_POLICY_CONFIG), *argv]
    parser = make_parser() if command == "run" else make_on_policy_parser()
    try:
        config = _check_config_keys(argv, parser)  # before the dataclasses validate values (e.g. bf16 on CPU)
        argv = _cpu_defaults(argv, config)
        args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as err:
        print(f"error: {_unknown_key_message(err, parser)}", file=sys.stderr)
        return 2
    if command == "run":
        from sft.train import run  # heavy imports only after arguments are valid
    else:
        from sft.on_policy import run

    try:
        run(args, training_args, model_args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
