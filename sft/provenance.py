"""What a run records beside its outputs: the resolved configuration, library versions, git commit and seeds.

`<output_dir>/run_config.yaml`  every value that differs from the defaults, after YAML + CLI are merged;
                                `python -m sft run --config <output_dir>/run_config.yaml` repeats the run.
`<output_dir>/run_info.json`    command line, versions, git commit (and whether the tree had local changes),
                                seed / data_seed, host.
"""

import dataclasses
import enum
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml
from transformers import TrainingArguments

from sft.config import REPO_ROOT

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "liger-kernel")


def _plain(value):
    """YAML-safe: enums as their values, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def resolved_config(*configs) -> dict:
    """Fields (of the argument dataclasses) whose resolved value differs from the field's default."""
    out = {}
    for config in configs:
        values = config.to_dict() if isinstance(config, TrainingArguments) else dataclasses.asdict(config)
        for f in dataclasses.fields(config):
            if not f.init or f.name not in values:
                continue
            value = _plain(values[f.name])
            if value != _plain(_default(f)):
                out[f.name] = value
    return out


def _git() -> dict:
    def git(*cmd):
        proc = subprocess.run(["git", "-C", str(REPO_ROOT), *cmd], capture_output=True, text=True, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha, "local_changes": bool(dirty) if sha else None}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_info(out: Path, config: dict, training_args) -> None:
    """Write run_config.yaml (`config`: resolved_config of the run's dataclasses) and run_info.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    header = "# Resolved configuration of this run (YAML + command line); rerun: python -m sft run --config THIS_FILE\n"
    (out / "run_config.yaml").write_text(header + yaml.safe_dump(config, sort_keys=True, allow_unicode=True))
    info = {
        "command": [sys.executable, *sys.argv],
        "seed": training_args.seed,
        "data_seed": training_args.data_seed,
        "git": _git(),
        "versions": versions(),
        "host": platform.node(),
        "config": "run_config.yaml",
    }
    (out / "run_info.json").write_text(json.dumps(info, indent=2))
