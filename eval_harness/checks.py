"""Checks that run before any model loads: each failure is one UsageError line naming the problem and
the fix, so a wrong path never costs a model load (or a vLLM start) first.

- `model_dir_problem(path)`: THE rule for "is this a complete model directory" (one function, so the
  completion marker the trainer writes can change in one place);
- `check_model(model, backend)`: a local directory (complete, with a tokenizer and a chat template)
  or, for a hub id, one that can be had (cached when HF_HUB_OFFLINE=1);
- `check_backend(backend)`: the backend's package is installed;
- `check_output_dir(path)`: the output directory is, or can be created as, a writable directory.
"""

import importlib.util
import json
import os
from pathlib import Path

from trace_gen.errors import UsageError

# Written last by a trainer that finished saving (sft/saving.py). Hub checkpoints have none, so it is required
# only of a directory an sft run wrote: one holding, or inside one holding, the run's provenance files.
COMPLETION_MARKERS = ("COMPLETE", ".complete")
SFT_RUN_FILES = ("run_info.json", "run_config.yaml")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tekken.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def model_dir_problem(path: Path) -> str | None:
    """Why `path` is not a complete model directory, or None when it is.

    Complete: config.json, and either a completion marker (`COMPLETE` or `.complete`, written last by
    the trainer) or weights that look whole: at least one *.safetensors or *.bin file, every shard a
    weight index names, no empty file, safetensors headers that cover their files. A directory an sft
    run wrote (sft's run_info.json / run_config.yaml in it or its parent) needs the marker. A 0-byte
    tokenizer_config.json (a save cut short) is refused either way."""
    config = path / "config.json"
    if not config.is_file():
        if (path / "adapter_config.json").is_file():
            return f"{path} is a LoRA adapter, not a model; evaluate the merged model (sft writes OUTPUT_DIR/merged)"
        return f"{path} has no config.json; pass a model directory (or a hub id)"
    tokenizer_config = path / "tokenizer_config.json"
    for f in (config, tokenizer_config):
        if f.is_file() and f.stat().st_size == 0:
            return f"{f} is empty (a save that was cut short?); save the model again"
    if any((path / m).exists() for m in COMPLETION_MARKERS):
        return None
    run_dir = next((d for d in (path, path.parent) if any((d / f).is_file() for f in SFT_RUN_FILES)), None)
    if run_dir is not None:
        return (
            f"{path} was not finished (an sft save without its COMPLETE marker): rerun "
            f"`python -m sft run --config {run_dir / 'run_config.yaml'}` to resume"
        )
    weights = sorted(
        f for f in path.iterdir() if f.suffix in (".safetensors", ".bin") and f.name != "training_args.bin"
    )
    if not weights:
        return (
            f"{path} has config.json but no weight files (*.safetensors or *.bin): the save did not "
            f"finish, or the weights live elsewhere; save the model again"
        )
    for index in WEIGHT_INDEXES:
        if (path / index).is_file():
            shards = set(json.loads((path / index).read_text()).get("weight_map", {}).values())
            missing = sorted(s for s in shards if not (path / s).is_file())
            if missing:
                return f"{path} lacks {len(missing)} of the {len(shards)} weight shards {index} names (e.g. {missing[0]}); finish the download or save"
    for f in weights:
        if f.stat().st_size == 0:
            return f"{f} is empty (a save that was cut short?); save the model again"
        if f.suffix == ".safetensors":
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(f), "pt"):
                    pass
            except SafetensorError as err:
                return f"{f} is truncated or corrupt ({err}); save or download the model again"
    return None


def tokenizer_problem(path: Path) -> str | None:
    """Why the model directory cannot render the benchmarks' chat prompts, or None."""
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        return (
            f"{path} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...); save the tokenizer beside "
            f"the model (tokenizer.save_pretrained(DIR))"
        )
    config = path / "tokenizer_config.json"
    template = (
        any((path / f).is_file() for f in CHAT_TEMPLATE_FILES)
        or (path / "additional_chat_templates").is_dir()
    )
    if not template and config.is_file():
        try:
            template = bool(json.loads(config.read_text()).get("chat_template"))
        except json.JSONDecodeError as err:
            return f"{config} is not valid JSON ({err.msg}); save the tokenizer again"
    if not template:
        return (
            f"{path} has no chat template (benchmarks prompt in chat form); copy chat_template.jinja or "
            f"the tokenizer_config.json of the model it was trained from, or set tokenizer.chat_template and save"
        )
    return None


def is_local(model: str) -> bool:
    """A path rather than a hub id: it exists, or it is written like a path."""
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def check_model(model: str, backend: str) -> None:
    """UsageError when `model` cannot be loaded by `backend` (see the module docstring). For the openai
    backend `model` is the served name: the server checks it. backend None: not picked yet (hf or vllm)."""
    if backend == "openai":
        return
    if is_local(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise UsageError(f"model not found: {path} is not a directory; pass a model directory or hub id")
        problem = model_dir_problem(path) or tokenizer_problem(path)
        if problem:
            raise UsageError(problem)
        return
    from huggingface_hub import is_offline_mode, try_to_load_from_cache

    if not is_offline_mode():
        return  # the hub answers for it at load time
    cached = try_to_load_from_cache(model, "config.json")
    if not isinstance(cached, str):
        raise UsageError(
            f"model {model!r} is not a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
            f"forbids downloading it; run `hf download {model}` where the hub is reachable, or pass a directory"
        )
    problem = tokenizer_problem(Path(cached).parent)
    if problem:
        raise UsageError(f"{model} (cached): {problem}")


def check_backend(backend: str) -> None:
    """UsageError when the backend's package is missing (vllm is an optional dependency)."""
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UsageError(
            "--backend vllm but vLLM is not installed here; pip install 'distill-kit[vllm]' (GPU machines), "
            "or use --backend hf"
        )


def check_output_dir(path: Path) -> None:
    """UsageError unless `path` is a writable directory or can be created as one (nothing is created)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output-dir {path} is a file; pass a directory (it is created if missing)")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--output-dir {path} cannot be created: {parent} is a file; pass another directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {path} cannot be written: no write permission in {parent}")
