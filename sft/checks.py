"""Checks that run before any model loads: settings SFTTrainer would refuse late, paths, teacher/student pairs.

Each raises sft.errors.UsageError with one line naming the problem and the fix.
"""

from pathlib import Path

import pyarrow.compute as pc
import yaml
from huggingface_hub import constants, try_to_load_from_cache
from trl import ModelConfig, SFTConfig

from sft.config import REPO_ROOT, DistillArguments
from sft.data import trace_files
from sft.errors import UsageError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_config(path: str) -> dict:
    """The --config YAML as a mapping of field: value."""
    if not Path(path).is_file():
        raise UsageError(f"--config {path} not found: pass a recipe file, e.g. one of configs/sft/*.yaml")
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"--config {path} is not valid YAML ({problem}{at}): fix the file") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise UsageError(
            f"--config {path} holds a YAML {type(config).__name__} at the top level: it must be a mapping of "
            "`field: value` lines (e.g. `learning_rate: 2.0e-4`)"
        )
    return config


def check_model_dir(path: str | None, flag: str, revision: str | None = None) -> str:
    """A local model directory with config.json and a tokenizer, or a hub id (in the local cache when offline)."""
    if path is None:
        raise UsageError(f"no model given: pass {flag} PATH_OR_HUB_ID")
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise UsageError(f"{path} exists but has no config.json: point {flag} at a model directory")
        if not any((local / name).is_file() for name in TOKENIZER_FILES):
            raise UsageError(
                f"{flag} {path} has a config.json but no tokenizer ({', '.join(TOKENIZER_FILES)}): copy its base "
                f"model's tokenizer files into it, or point {flag} at a model directory that has them"
            )
        return path
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise UsageError(
            f"{flag} {path}: no such directory (a hub id reads ORG/NAME): pass a model directory"
        )
    if constants.HF_HUB_OFFLINE and not isinstance(
        try_to_load_from_cache(path, "config.json", revision), str
    ):
        raise UsageError(
            f"{flag} {path} is not in the local cache and HF_HUB_OFFLINE=1: download it first "
            f"(huggingface-cli download {path}) or pass a local directory"
        )
    return path


def check_chat_template(tokenizer, dataset, model: str) -> None:
    """Chat rows need a chat template (the template lint, when on, also names one that renders these rows)."""
    if tokenizer.chat_template is None and "messages" in dataset.column_names:
        shipped = ", ".join(sorted(p.name for p in (REPO_ROOT / "configs" / "templates").glob("*.jinja")))
        raise UsageError(
            f"{model} has no chat template and the traces are chat rows: pass --chat_template_path "
            f"configs/templates/NAME.jinja ({shipped}), or a model that has one (--lint true suggests a template)"
        )


def check_output_dir(output_dir: str) -> None:
    """Nothing is written until the model has loaded: refuse an output_dir the run cannot use before that. (What a
    rerun into a directory holding a run does is sft.saving.plan's: resume, return the finished model, or refuse.)"""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output_dir {output_dir} is a file: pass a directory path")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise UsageError(f"--output_dir {output_dir}: {parent} is a file, so the directory cannot be created")


def check_numbers(training_args: SFTConfig, model_args: ModelConfig) -> None:
    """Values TrainingArguments and peft accept at parse time but fail on (or silently misuse) later."""
    positive = {
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "learning_rate": training_args.learning_rate,
    }
    if model_args.use_peft:
        positive["lora_r"] = model_args.lora_r
    for name, value in positive.items():
        if value <= 0:
            raise UsageError(f"--{name} {value}: must be > 0")
    if training_args.max_length is not None and training_args.max_length <= 0:
        raise UsageError(f"--max_length {training_args.max_length}: must be > 0, or null for no truncation")
    if training_args.max_steps == 0:
        raise UsageError(
            "--max_steps 0 trains nothing: pass a positive --max_steps, or -1 to use num_train_epochs"
        )
    if training_args.max_steps < 0 and training_args.num_train_epochs <= 0:
        raise UsageError(
            f"--num_train_epochs {training_args.num_train_epochs} with --max_steps -1 trains nothing: pass "
            "--num_train_epochs > 0 or a positive --max_steps"
        )
    if (model_args.load_in_4bit or model_args.load_in_8bit) and not model_args.use_peft:
        bits = 4 if model_args.load_in_4bit else 8
        raise UsageError(
            f"--load_in_{bits}bit without --use_peft: quantized weights cannot be fully fine-tuned; add "
            f"--use_peft true (QLoRA), or drop --load_in_{bits}bit for full fine-tuning"
        )


def check_inputs(args: DistillArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    """Everything checkable from the arguments and the file system alone: the first thing `sft run` does."""
    check_settings(args, training_args)
    check_numbers(training_args, model_args)
    check_output_dir(training_args.output_dir)
    check_model_dir(model_args.model_name_or_path, "--model_name_or_path", model_args.model_revision)
    flag = "--teachers" if args.teachers else "--teacher_model_name_or_path"
    for path in args.teacher_paths().values():  # none for --kd_self ema (the teacher is the student's EMA)
        check_model_dir(path, flag)


def check_settings(args: DistillArguments, training_args: SFTConfig) -> None:
    """Combinations SFTTrainer would refuse only after the model has loaded."""
    if args.kd_source == "offline" and training_args.packing:
        raise UsageError(
            "kd_source=offline cannot pack sequences (the teacher's top-k follow each row): use --packing false "
            "(with --padding_free true for padding-free batches)"
        )
    # offline KD rows are truncated while the top-k are aligned, so padding-free batches need no max_length there
    unbounded = (
        training_args.padding_free and not training_args.packing and training_args.max_length is not None
    )
    if unbounded and args.kd_source != "offline":
        raise UsageError(
            "padding_free without packing does not truncate to max_length (SFTTrainer refuses it): add "
            "--packing true (best-fit packing, padding-free), or set --max_length null"
        )


def check_kd_pair(student_config, teacher_config, student_tokenizer, teacher_tokenizer) -> None:
    """Token-level KD compares the two distributions id by id: every token of the smaller tokenizer must have
    the same id in the larger one (Qwen2.5 and Qwen3 qualify; R1-Distill-Qwen does not), and both models the
    same number of embedding rows."""
    s_rows = student_config.get_text_config().vocab_size
    t_rows = teacher_config.get_text_config().vocab_size
    small, large = sorted((student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()), key=len)
    if any(large.get(token) != i for token, i in small.items()):
        raise UsageError(
            f"student and teacher tokenizers differ (student {len(student_tokenizer):,} tokens, {s_rows:,} "
            f"embedding rows; teacher {len(teacher_tokenizer):,} tokens, {t_rows:,} rows): token-level KD needs "
            "one tokenizer; train on the teacher's traces with --kd_source none, or use a teacher of the student's family"
        )
    if s_rows != t_rows:
        raise UsageError(
            f"student and teacher share a tokenizer but not the embedding size (student {s_rows:,} rows, teacher "
            f"{t_rows:,}): online KD compares whole rows; use --kd_source offline with the teacher's top-k traces "
            f"(token ids fit both), or a teacher with {s_rows:,} rows"
        )


def check_topk_ids(dataset, student_config) -> None:
    """The teacher's stored top-k ids index the student's logits: they must be present and below its embedding
    rows (a 152,064-row teacher's top-k from a trained model lie in the 151,665 shared tokens; padding rows may
    not)."""
    if "topk_ids" not in dataset.column_names:
        return  # prepare_offline_kd names the missing columns
    ids = dataset.data.column("topk_ids")
    if pc.max(pc.list_value_length(ids)).as_py() in (None, 0):
        raise UsageError(
            f"kd_source=offline: the traces' top-k lists are empty in all {len(dataset):,} rows (written without "
            "top-k logprobs): regenerate them with `python -m trace_gen --logprobs K`, or use --kd_source none"
        )
    rows = student_config.get_text_config().vocab_size
    top = pc.max(pc.list_flatten(ids)).as_py()
    if top is not None and top >= rows:
        raise UsageError(
            f"the traces' teacher top-k hold token id {top:,} but the student has {rows:,} embedding rows: "
            "regenerate them with a teacher of the student's vocabulary, or use --kd_source none"
        )


def check_online_kd(args: DistillArguments, training_args: SFTConfig, student_config, teacher_config) -> list:
    """Feature terms and routed teachers against the models' shapes and the batch layout; returns the
    (student, teacher) layer pairs of the hidden / attention terms ([] when both are off)."""
    from sft.config import layer_map_kind
    from sft.feature_losses import layer_map

    packed = training_args.packing or training_args.padding_free
    if args.teacher_column and packed:
        raise UsageError(
            "routing teachers per row (--teacher_column) needs one row per batch row: add --packing false "
            "--padding_free false (or mix them with --teacher_weights)"
        )
    if (args.kd_attn_weight > 0 or args.kd_rel_weight > 0) and packed:
        raise UsageError(
            "attention KD (per-sequence T x T maps) and relational KD (one pooled vector per sequence) need one "
            "sequence per batch row, which packed / padding-free batches do not have: add --packing false "
            "--padding_free false"
        )
    s_text, t_text = student_config.get_text_config(), teacher_config.get_text_config()
    if (
        args.kd_hidden_weight > 0
        and args.kd_hidden_loss == "cosine"
        and s_text.hidden_size != t_text.hidden_size
    ):
        raise UsageError(
            f"kd_hidden_loss cosine needs equal widths, student {s_text.hidden_size} vs teacher "
            f"{t_text.hidden_size}: use --kd_hidden_loss mse (FitNets: trains a projection)"
        )
    if not (args.kd_hidden_weight > 0 or args.kd_attn_weight > 0):
        return []
    kind, layers = layer_map_kind(args.kd_layer_map)
    try:
        return layer_map(kind, s_text.num_hidden_layers, t_text.num_hidden_layers, layers)
    except ValueError as err:
        raise UsageError(f"kd_layer_map {args.kd_layer_map!r}: {err}") from None


def check_data_source(
    args: DistillArguments, training_args: SFTConfig, script_args=None, mixture=None
) -> None:
    """The dataset options (TRL's ScriptArguments / DatasetMixtureConfig, None: --traces) and the eval source."""
    named = script_args is not None and script_args.dataset_name
    mixed = mixture is not None and mixture.datasets
    if named and mixed:
        raise UsageError(
            "give one dataset source: --dataset_name or a `datasets:` mixture in the recipe, not both"
        )
    if (script_args is not None and script_args.dataset_streaming) or (
        mixture is not None and mixture.streaming
    ):
        raise UsageError(
            "streaming datasets are not supported (the lint, teacher shares and row counts read the rows): set "
            "dataset_streaming / streaming to false"
        )
    if mixture is not None and mixture.test_split_size is not None:
        raise UsageError(
            "test_split_size splits without a seed: use --eval_split_ratio R (seeded by data_seed/seed) instead"
        )
    evaluate = training_args.eval_strategy != "no"
    if not evaluate and (args.eval_traces or args.eval_split_ratio):
        flag = "--eval_traces" if args.eval_traces else "--eval_split_ratio"
        raise UsageError(
            f"{flag} without --eval_strategy: nothing would evaluate them; add --eval_strategy steps --eval_steps N"
        )
    if evaluate and not (args.eval_traces or args.eval_split_ratio or named):
        raise UsageError(
            f"--eval_strategy {training_args.eval_strategy.value} has no eval data: pass --eval_traces DIR, "
            "--eval_split_ratio 0.05, or --dataset_name with a --dataset_test_split (or --eval_strategy no)"
        )
    if args.eval_traces:
        trace_files(args.eval_traces, False)  # UsageError: not found / no Parquet parts
