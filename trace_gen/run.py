"""trace_gen as a library: `generate(RunConfig)` runs (or resumes) one run and returns its statistics.

The CLI and the Ray workers both call it. Every input is checked before any heavy work, each failure
one `UsageError` line naming the problem and the fix: the output directory (writable, holding this
run or nothing), the hub (--push-to-hub), the teacher's files (config, tokenizer, chat template; a hub
id must be in the local cache when offline), the dataset (parses, has the columns, not empty), the
backend (installed, --logprobs within vLLM's limit) and whether --n can be reached at all. Only then
the teacher loads; a rerun with nothing left to do does not load it.

Usage:
    from trace_gen import RunConfig, generate
    stats = generate(RunConfig(dataset="data.jsonl", teacher="Qwen/QwQ-32B", backend="vllm",
                               n=1000, output_dir="runs/traces"))
    stats["kept"], stats["acceptance"]    # kept toward --n; verified / sampled
"""

import dataclasses
import json
import os
import sys
from pathlib import Path

from trace_gen.config import TOY_TEACHER, RunConfig
from trace_gen.errors import BackendError, UsageError
from trace_gen.outdir import check_writable
from trace_gen.prompts import R1_INSTRUCTION, PromptRecord, dataset_prompts, toy_prompts

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
VLLM_MAX_LOGPROBS = 20  # vLLM's default EngineArgs.max_logprobs


def generate(config: RunConfig, backend=None) -> dict:
    """Run or resume `config`; returns the stats of OUT/stats.json plus `output_dir`. `backend`: an
    already loaded teacher (Ray workers load theirs once for all the shards they run)."""
    config, prompts, notes = prepare(config)
    if config.ray:
        from trace_gen.ray_mode import run_ray

        stats = run_ray(config, prompts, notes)
    else:
        stats = run_shard(config, prompts, notes, backend)
    return pushed(stats, config.push_to_hub)


def prepare(config: RunConfig) -> tuple[RunConfig, list[PromptRecord], list[str]]:
    """(config with its backend chosen, the prompts, notes to print) after every check that needs
    no model; raises UsageError on the first problem."""
    if config.output_dir is None:
        raise UsageError("--output-dir is required: the directory the traces go to")
    check_writable(config.output_dir, "--output-dir")
    if config.push_to_hub:
        from trace_gen.dataset import check_push

        check_push(config.push_to_hub)
    check_teacher(config)
    prompts = load_prompts(config)
    config, note = resolve_backend(config)
    check_backend(config)
    if config.allow_unisolated:
        from trace_gen.verify.sandbox import ALLOW_UNISOLATED_ENV

        os.environ[ALLOW_UNISOLATED_ENV] = "1"  # read by the code sandbox (Ray workers call generate too)
    if any(p.tests for p in prompts):
        from trace_gen.verify.sandbox import require_sandbox

        require_sandbox()  # no namespaces (and no --allow-unisolated): one line, before the teacher loads
    notes = [note] if note else []
    if config.teacher == str(TOY_TEACHER) and not config.toy:
        notes.append(
            f"warning: --teacher is the built-in toy teacher (0.8M parameters, trained on the toy counting "
            f"task only) but --dataset is {config.dataset}: its traces will be noise; pass --teacher MODEL"
        )
    return config, prompts, notes


def run_shard(config: RunConfig, prompts: list[PromptRecord], notes: list[str], backend=None) -> dict:
    """One run (one shard) into config.output_dir; the teacher is loaded only if there is work left."""
    from trace_gen.pipeline import finish, num_batches, run, shard
    from trace_gen.writer import TraceWriter

    prompts = shard(prompts, config.num_shards, config.shard_index or 0)
    check_reachable(
        config, prompts, "the dataset" if config.num_shards == 1 else f"shard {config.shard_index}"
    )
    writer = TraceWriter(config.output_dir, config.identity(), config.keep_rejected, config.n)
    for note in notes:
        print(note, file=sys.stderr)
    if writer.complete(num_batches(prompts, config.batch_size)):
        return {**finish(writer), "output_dir": str(config.output_dir)}
    own = backend is None
    backend = load_backend(config) if own else backend
    try:
        stats = run(backend, prompts, config, writer)
    finally:
        if own:
            backend.close()
    return {**stats, "output_dir": str(config.output_dir)}


def check_reachable(config: RunConfig, prompts: list[PromptRecord], where: str) -> None:
    """UsageError (unless --allow-short) when the prompts cannot give --n samples even if all passed."""
    from trace_gen.pipeline import usable_prompts

    usable = usable_prompts(prompts)
    most = usable * config.samples_per_prompt
    if most >= config.n or config.allow_short:
        return
    raise UsageError(
        f"--n {config.n} cannot be reached: {where} has {usable} usable prompts x "
        f"--samples-per-prompt {config.samples_per_prompt} = {most} samples at most; lower --n, raise "
        "--samples-per-prompt, give more problems, or pass --allow-short"
    )


def load_prompts(config: RunConfig) -> list[PromptRecord]:
    if config.toy:
        return toy_prompts(config.split, config.system_prompt)
    # code data is checked by its tests: the answer column is needed only when named explicitly
    explicit_answer = config.tests_column is None or config.answer_column != "answer"
    return dataset_prompts(
        config.dataset,
        config.split,
        config.problem_column,
        config.answer_column if explicit_answer else None,
        config.id_column,
        config.system_prompt,
        R1_INSTRUCTION if config.instruction is None else config.instruction,
        config.tests_column,
    )


def _model_files_problem(directory: Path) -> str | None:
    """What a model directory lacks for trace_gen (config, tokenizer, chat template), or None."""
    if not (directory / "config.json").is_file():
        return "has no config.json"
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return f"has no tokenizer (none of {', '.join(TOKENIZER_FILES)})"
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json").is_file():
        return None
    config_file = directory / "tokenizer_config.json"
    try:
        tokenizer_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"has a tokenizer_config.json that is not valid JSON ({err})"
    if tokenizer_config.get("chat_template"):
        return None
    return (
        "has no chat template (no chat_template.jinja, none in tokenizer_config.json); trace_gen renders "
        "every prompt with it: use the chat/instruct checkpoint, or set tokenizer.chat_template and "
        "save_pretrained"
    )


def check_teacher(config: RunConfig) -> None:
    """The teacher's files, without loading anything (--backend openai: a served name, not checked)."""
    if config.backend == "openai":
        return
    teacher = config.teacher
    path = Path(teacher).expanduser()
    if teacher.startswith((".", "/", "~")) or path.exists():
        if not path.is_dir():
            raise UsageError(f"teacher not found: {path} is not a model directory; pass --teacher a "
                             "model directory or a hub id")  # fmt: skip
        if problem := _model_files_problem(path):
            raise UsageError(f"--teacher {path} {problem}")
        return
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(teacher)
    except HFValidationError:
        raise UsageError(
            f"teacher not found: {teacher!r} is neither a local directory nor a hub id like 'org/name'"
        ) from None
    cached = try_to_load_from_cache(teacher, "config.json")
    if isinstance(cached, str):
        problem = _model_files_problem(Path(cached).parent)
        if problem and constants.HF_HUB_OFFLINE:  # online, the missing files may still be downloaded
            raise UsageError(f"--teacher {teacher} (local hub cache) {problem}")
    elif constants.HF_HUB_OFFLINE:
        raise UsageError(
            f"--teacher {teacher} is not in the local hub cache and HF_HUB_OFFLINE is set; download it "
            f"first (`hf download {teacher}`), unset HF_HUB_OFFLINE, or pass a local directory"
        )


def resolve_backend(config: RunConfig) -> tuple[RunConfig, str | None]:
    """The config with its backend chosen (when --backend was not given) and the note saying why."""
    if config.backend is not None:
        return config, None
    import importlib.util

    import torch

    from trace_gen.backends.base import pick_backend

    kind, why = pick_backend(importlib.util.find_spec("vllm") is not None, torch.cuda.device_count())
    if config.logprobs is not None and kind != "vllm":
        raise UsageError(
            f"--logprobs needs --backend vllm; the automatic pick here is {kind} ({why}; --backend chooses)"
        )
    return dataclasses.replace(config, backend=kind), f"backend: {kind} ({why}; --backend chooses)"


def check_backend(config: RunConfig) -> None:
    if config.backend != "vllm":
        return
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise UsageError(
            "--backend vllm, but vLLM is not installed in this environment: pip install vllm (GPU "
            "machines), or use --backend hf"
        )
    most = config.engine_args.get("max_logprobs", VLLM_MAX_LOGPROBS)
    if config.logprobs is not None and config.logprobs > most:
        raise UsageError(
            f"--logprobs {config.logprobs} is above vLLM's max_logprobs ({most}); add "
            f"'\"max_logprobs\": {config.logprobs}' to --engine-args"
        )


def backend_options(config: RunConfig) -> dict:
    """The keyword arguments of `make_backend` for this config's backend."""
    if config.backend == "hf":
        return {"device": config.device, "dtype": config.dtype}
    if config.backend == "vllm":
        return {"engine_args": config.engine_args}
    return config.openai.as_kwargs()


def load_backend(config: RunConfig):
    """The teacher, loaded; a library failure to load it is one UsageError line (--debug: traceback)."""
    from trace_gen.backends import make_backend

    try:
        return make_backend(
            config.backend,
            config.teacher,
            config.batch_size,
            config.trust_remote_code,
            **backend_options(config),
        )
    except (UsageError, BackendError):
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise UsageError(
            f"could not load teacher {config.teacher} with --backend {config.backend} ({type(err).__name__}: "
            f"{first}); check --teacher, --engine-args / --device / --dtype, or rerun with --debug"
        ) from err


def pushed(stats: dict, repo: str | None) -> dict:
    """`stats` after uploading stats["output_dir"] to the hub as `repo` (when given), with its URL."""
    if repo is None:
        return stats
    from trace_gen.dataset import push_to_hub

    return {**stats, "pushed_to": push_to_hub(Path(stats["output_dir"]), repo)}
