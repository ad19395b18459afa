"""The README's "Using it on real models" commands, run as written with tiny real-shape models in place of the hub
checkpoints, so the section cannot rot.

Every fenced ```bash block of that section (its subsections included) is read; `\\`-continued lines are joined,
comments dropped. A block whose first line is `# gpu-only: <why>` needs hardware a test machine lacks (several
GPUs, a Ray cluster): its commands are only parsed by their CLI's own parser, so a renamed flag or recipe key still
fails here. Every other block is run, command after command, each a subprocess in one scratch directory that looks
like a checkout (`configs/` linked in). The only changes made to a command (all in `for_cpu`):
- `python` -> this interpreter; hub ids -> local tiny checkpoints (HUB_MODELS, an explicit table: a model the
  README names that is not in it fails the test);
- `--engine-args`: the README's JSON plus CPU_ENGINE (float32, no CUDA graphs); max_model_len stays as written,
  and the tiny checkpoints carry their real models' context lengths, so a length a model cannot hold fails;
- appended overrides: trace_gen gets `--allow-short` (the README's --n from DATA_FILES' few problems); `sft run` gets the recipe's model through HUB_MODELS and CPU_SFT (no bf16, flash-attention
  or Liger; one step; short rows); eval_harness gets EVAL_CPU (2 items, 16 new tokens).
Data files the README names are written first (DATA_FILES). A block that cannot run on a CPU and is not marked
`# gpu-only` fails. The run needs vLLM when a command says `--backend vllm`: it is skipped without vLLM and runs
in the vLLM environment (`make test-vllm`); the parse check runs everywhere.
"""

import importlib.util
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_real_e2e import (
    CPU_SFT,
    QWEN25_1_5B_CONTEXT,
    problems,  # noqa: F401 (fixture)
    rig_teacher,
    teacher,  # noqa: F401 (fixture)
    traces,  # noqa: F401 (fixture): trace_gen's hf run with --keep-rejected
    with_context,
    write_problems,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Using it on real models"
GPU_ONLY = "# gpu-only:"
MODULES = ("trace_gen", "sft", "eval_harness")
MODEL_FLAGS = ("--teacher", "--model", "--model_name_or_path", "--models")
OUTPUT_FLAGS = ("--out", "--output-dir", "--output_dir")
CPU_ENGINE = {"dtype": "float32", "enforce_eager": True}
EVAL_CPU = ["--limit", "2", "--max-new-tokens", "16"]
DATA_FILES = {"data.jsonl": write_problems}  # the rigged teacher answers 5: right for 4 of its 5 problems


@dataclass
class Block:
    commands: list[list[str]]  # argv of each command, as written
    gpu_only: str | None  # the reason given after `# gpu-only:`, or None: the block is run


def real_model_blocks(readme: str) -> list[Block]:
    """The fenced bash blocks of the README's real-model section, in order."""
    assert SECTION in readme, f"README.md has no {SECTION!r} section"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    untagged = [body for lang, body in fenced if lang != "bash" and "python -m" in body]
    assert not untagged, f"a block of commands in {SECTION!r} is not tagged ```bash: {untagged[0][:80]!r}"
    blocks = []
    for lang, body in fenced:
        if lang != "bash":
            continue
        first = body.lstrip().splitlines()[0]
        reason = first[len(GPU_ONLY) :].strip() if first.startswith(GPU_ONLY) else None
        assert reason != "", f"say why after {GPU_ONLY!r}: {first!r}"
        lines = body.replace("\\\n", " ").splitlines()
        commands = [shlex.split(line, comments=True) for line in lines]
        blocks.append(Block([argv for argv in commands if argv], reason))
    return blocks


BLOCKS = real_model_blocks((REPO / "README.md").read_text(encoding="utf-8"))


def module_and_args(argv: list[str]) -> tuple[str, list[str]]:
    """("trace_gen" | "sft run" | "eval_harness" | "eval_harness compare", the arguments after it)."""
    assert argv[:2] == ["python", "-m"] and argv[2] in MODULES, (
        f"not a `python -m` command of {MODULES}: {argv}"
    )
    name, rest = argv[2], argv[3:]
    if (name, rest[:1]) in (("sft", ["run"]), ("eval_harness", ["compare"])):
        return f"{name} {rest[0]}", rest[1:]
    return name, rest


def test_the_section_has_commands_and_runs_some():
    assert BLOCKS and any(b.gpu_only is None for b in BLOCKS), f"{SECTION!r}: no bash block is run by a test"


@pytest.mark.parametrize("argv", [c for b in BLOCKS for c in b.commands], ids=lambda a: " ".join(a[2:4]))
def test_every_command_parses(argv):
    """Each command's flags are known to its CLI, and a recipe's keys to its dataclasses (nothing is run)."""
    name, args = module_and_args(argv)
    try:
        if name == "trace_gen":
            from trace_gen.cli import make_parser

            make_parser().parse_args(args)
        elif name.startswith("eval_harness"):
            from eval_harness.cli import make_parser

            make_parser(compare=name.endswith("compare")).parse_args(args)
        else:
            assert name == "sft run", argv
            from sft.cli import make_parser

            parser = make_parser()
            if "--config" in args:
                i = args.index("--config")
                config = yaml.safe_load((REPO / args[i + 1]).read_text())
                assert not parser.set_defaults_with_config(**config), f"unknown keys in {args[i + 1]}"
                args = args[:i] + args[i + 2 :]
            _, unknown = parser.parse_known_args(args)
            assert not unknown, f"unknown flags {unknown} in {argv}"
    except SystemExit:
        pytest.fail(f"the README's command does not parse (see the usage error above): {shlex.join(argv)}")


def test_the_trace_directory_holds_what_the_readme_lists(traces):  # noqa: F811
    """The file listing under "The trace directory is a dataset" (paths under runs/traces/) matches a real run."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listing = readme.split("### The trace directory is a dataset", 1)[1].split("```", 2)[1]
    names = []
    for line in listing.strip().splitlines():
        first, *rest = line.split("  ", 1)[0].split(", ")
        assert first.startswith("runs/traces/"), line
        first = first.removeprefix("runs/traces/")
        names += [first, *(str(Path(first).parent / name) for name in rest)]
    assert len(names) >= 5, listing
    for name in names:
        assert list(traces.glob(name)), (
            f"README lists runs/traces/{name}; a run wrote {sorted(traces.rglob('*'))}"
        )


# --- running the blocks ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_models(real_model, tmp_path_factory) -> dict[str, Path]:
    """Hub id -> tiny local checkpoint of the same family, embedding rows and context length."""
    root = tmp_path_factory.mktemp("hub")
    return {
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": rig_teacher(
            real_model("qwen2", "r1-distill", 152_064), root / "r1-distill-qwen-7b"
        ),
        "Qwen/Qwen2.5-1.5B-Instruct": with_context(
            real_model("qwen2", "qwen2.5"), root / "qwen2.5-1.5b-instruct", QWEN25_1_5B_CONTEXT
        ),
    }


def _local(item: str, hub_models: dict[str, Path]) -> str:
    """`NAME=ID` or `ID` with a hub id replaced by its tiny local stand-in."""
    key, eq, value = item.rpartition("=")
    return f"{key}{eq}{hub_models[value]}" if value in hub_models else item


def for_cpu(argv: list[str], hub_models: dict[str, Path], cwd: Path) -> list[str]:
    """The README's command as this machine runs it (the module docstring lists every change)."""
    name, args = module_and_args(argv)
    out = []
    for i, arg in enumerate(args):
        if i and args[i - 1] == "--engine-args":
            arg = json.dumps({**json.loads(arg), **CPU_ENGINE})
        else:  # `--models NAME=ID,NAME=ID` lists; a plain value has no "=" and no ","
            arg = ",".join(_local(item, hub_models) for item in arg.split(","))
        out.append(arg)
    if name == "sft run":
        if "--model_name_or_path" not in out:
            recipe = yaml.safe_load((cwd / out[out.index("--config") + 1]).read_text())
            model = recipe["model_name_or_path"]
            assert model in hub_models, (
                f"the recipe's model {model} is not in hub_models: add a tiny stand-in"
            )
            out += ["--model_name_or_path", str(hub_models[model])]
        out += CPU_SFT
    elif name.startswith("eval_harness"):
        out += EVAL_CPU
    elif name == "trace_gen":
        out += ["--allow-short"]  # the README's --n 800000 from a 5-problem file: short is expected here
    for i, arg in enumerate(out[:-1]):
        if arg in MODEL_FLAGS:
            for model in out[i + 1 :]:
                if model.startswith("--"):
                    break
                for item in model.split(","):
                    path = item.split("=", 1)[-1]
                    assert (cwd / path).exists(), (
                        f"{arg} {path}: not a local path; map the hub id in hub_models"
                    )
    return [sys.executable, "-m", *name.split(), *out]


def uses_vllm(block: Block) -> bool:
    return any(a == "--backend" and b == "vllm" for c in block.commands for a, b in itertools.pairwise(c))


RUN = [
    pytest.param(
        b,
        id=" | ".join(" ".join(c[2:4]) for c in b.commands),
        marks=pytest.mark.skipif(
            uses_vllm(b) and importlib.util.find_spec("vllm") is None,
            reason="the block uses --backend vllm: it runs in the vLLM environment (make test-vllm)",
        ),
    )
    for b in BLOCKS
    if b.gpu_only is None
]


@pytest.mark.parametrize("block", RUN)
def test_block_runs_on_tiny_models(block, hub_models, tmp_path):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    for name, write in DATA_FILES.items():
        write(tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    for argv in block.commands:
        cmd = for_cpu(argv, hub_models, tmp_path)
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            pytest.fail(
                f"README command failed (rc {done.returncode}): {shlex.join(argv)}\nran: {shlex.join(cmd)}\n"
                f"stderr tail:\n{done.stderr[-4000:]}"
            )
        outputs = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a in OUTPUT_FLAGS]
        for output in outputs:
            assert any((tmp_path / output).iterdir()), f"{shlex.join(argv)} wrote nothing to {output}"
