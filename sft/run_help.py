"""`python -m sft run --help` (and `sft on-policy --help`): grouped, with defaults, fast (no torch/trl import).

DistillArguments (sft/config.py, a plain dataclass) is read directly. TRL's fields (SFTConfig, ModelConfig,
ScriptArguments, DatasetMixtureConfig; DistillationConfig for on-policy) come from TRL_FIELDS / ON_POLICY_TRL_FIELDS: a committed copy of the common fields' defaults and
first help sentence, which tests/test_cli.py compares with the installed TRL so it cannot go stale.
`--help-all` prints TrlParser's full help (every field, slow).
"""

import dataclasses
import textwrap

from sft.config import DistillArguments

GROUPS = {
    "data": "data (--traces; or TRL's --dataset_name; or a mixture, recipe only: `datasets: [{path, name, split, "
    "columns, fraction}]`, fraction = the dataset's share of the rows; eval rows)",
    "model": "model",
    "mode": "fine-tuning mode: LoRA (--use_peft), QLoRA (--use_peft + --load_in_4bit), or full (neither)",
    "distillation": "distillation (KD, feature terms, strategies)",
    "training": "training (TRL SFTConfig; every other field: --help-all)",
    "output": "output and checks",
}
DATA_FIELDS = (  # DistillArguments fields shown under "data"
    "traces",
    "eval_traces",
    "eval_split_ratio",
    "keep_verdicts",
    "include_rejected",
    "max_samples",
    "trace_teacher_weights",
)
OUTPUT_FIELDS = ("merge_adapter", "export_4bit", "lint", "lint_only", "lint_samples")
# every other DistillArguments field is a distillation setting

# name: (group, TRL dataclass, default of the dataclass field, first sentence of its help)
TRL_FIELDS = {
    # --- data ---
    "dataset_name": ("data", "ScriptArguments", None, "Path or name of the dataset to load."),
    "dataset_config": ("data", "ScriptArguments", None, "Dataset configuration name."),
    "dataset_train_split": ("data", "ScriptArguments", "train", "Dataset split to use for training."),
    "dataset_test_split": ("data", "ScriptArguments", "test", "Dataset split to use for evaluation."),
    "datasets": (
        "data",
        "DatasetMixtureConfig",
        [],
        "List of dataset configurations to include in the mixture.",
    ),
    "chat_template_path": ("data", "SFTConfig", None, "If specified, sets the model's chat template."),
    "eos_token": ("data", "SFTConfig", None, "Token used to indicate the end of a turn or sequence."),
    # --- model ---
    "model_name_or_path": ("model", "ModelConfig", None, "Model checkpoint for weights initialization."),
    "model_revision": ("model", "ModelConfig", "main", "Specific model version to use."),
    "dtype": (
        "model",
        "ModelConfig",
        "float32",
        "Override the default `torch.dtype` and load the model under this dtype.",
    ),
    "attn_implementation": ("model", "ModelConfig", None, "Which attention implementation to use."),
    "trust_remote_code": (
        "model",
        "SFTConfig",
        False,
        "Whether to allow loading models and tokenizers that ship custom Python code from the Hub.",
    ),
    # --- mode ---
    "use_peft": ("mode", "ModelConfig", False, "Whether to use PEFT for training."),
    "lora_r": ("mode", "ModelConfig", 16, "LoRA R value."),
    "lora_alpha": ("mode", "ModelConfig", 32, "LoRA alpha."),
    "lora_dropout": ("mode", "ModelConfig", 0.05, "LoRA dropout."),
    "lora_target_modules": ("mode", "ModelConfig", None, "LoRA target modules."),
    "lora_modules_to_save": ("mode", "ModelConfig", None, "Model layers to unfreeze & train."),
    "load_in_4bit": ("mode", "ModelConfig", False, "Whether to use 4 bit precision for the base model."),
    "load_in_8bit": ("mode", "ModelConfig", False, "Whether to use 8 bit precision for the base model."),
    "bnb_4bit_quant_type": ("mode", "ModelConfig", "nf4", "Quantization type."),
    "use_bnb_nested_quant": ("mode", "ModelConfig", False, "Whether to use nested quantization."),
    # --- training ---
    "output_dir": (
        "training",
        "SFTConfig",
        None,
        "The output directory where the model predictions and checkpoints will be written.",
    ),
    "learning_rate": ("training", "SFTConfig", 2e-05, "The initial learning rate for AdamW."),
    "lr_scheduler_type": ("training", "SFTConfig", "linear", "The learning rate scheduler type to use."),
    "warmup_steps": (
        "training",
        "SFTConfig",
        0,
        "Number of steps for a linear warmup from 0 to `learning_rate`.",
    ),
    "weight_decay": ("training", "SFTConfig", 0.0, "Weight decay coefficient applied by the optimizer."),
    "max_steps": ("training", "SFTConfig", -1, "Overrides `num_train_epochs`."),
    "num_train_epochs": ("training", "SFTConfig", 3.0, "Total number of training epochs to perform."),
    "per_device_train_batch_size": ("training", "SFTConfig", 8, "The batch size per device for training."),
    "gradient_accumulation_steps": (
        "training",
        "SFTConfig",
        1,
        "Number of update steps to accumulate gradients before performing a backward/update pass.",
    ),
    "max_length": ("training", "SFTConfig", 1024, "Maximum length of the tokenized sequence."),
    "packing": (
        "training",
        "SFTConfig",
        False,
        "Whether to group multiple sequences into fixed-length blocks to improve computational efficiency and reduce padding.",
    ),
    "padding_free": (
        "training",
        "SFTConfig",
        False,
        "Whether to perform forward passes without padding by flattening all sequences in the batch into a single continuous sequence.",
    ),
    "assistant_only_loss": (
        "training",
        "SFTConfig",
        False,
        "Whether to compute loss only on the assistant part of the sequence.",
    ),
    "gradient_checkpointing": (
        "training",
        "SFTConfig",
        True,
        "Enable gradient checkpointing to trade compute for memory.",
    ),
    "eval_strategy": ("training", "SFTConfig", "no", "When to run evaluation."),
    "eval_steps": (
        "training",
        "SFTConfig",
        None,
        "Number of update steps between evaluations if `eval_strategy='steps'`.",
    ),
    "per_device_eval_batch_size": (
        "training",
        "SFTConfig",
        8,
        "The batch size per device (GPU/TPU core/CPU) for evaluation.",
    ),
    "logging_steps": ("training", "SFTConfig", 10, "Log every X updates steps."),
    "save_strategy": (
        "training",
        "SFTConfig",
        "steps",
        "The checkpoint save strategy to adopt during training.",
    ),
    "save_steps": ("training", "SFTConfig", 500, "Save checkpoint every X updates steps."),
    "save_total_limit": ("training", "SFTConfig", None, "Maximum number of checkpoints to keep."),
    "resume_from_checkpoint": (
        "training",
        "SFTConfig",
        None,
        "Path to a folder with a valid checkpoint for your model.",
    ),
    "report_to": (
        "training",
        "SFTConfig",
        "none",
        "The list of integrations to report the results and logs to.",
    ),
    "run_name": ("training", "SFTConfig", None, "An optional descriptor for the run."),
    "seed": ("training", "SFTConfig", 42, "Random seed that will be set at the beginning of training."),
    "data_seed": ("training", "SFTConfig", None, "Random seed to be used with data samplers."),
    "bf16": ("training", "SFTConfig", None, "Whether to use bf16 (mixed) precision instead of 32-bit."),
}


ON_POLICY_GROUPS = {
    "data": "data (prompts the student samples on)",
    "model": "model (the student; the teacher: --teacher, --teachers, or a server)",
    "mode": GROUPS["mode"],
    "distillation": "distillation (divergence, sampling, the teacher, GKD's lmbda)",
    "training": "training (TRL DistillationConfig; every other field: --help-all)",
    "output": GROUPS["output"],
}
ON_POLICY_DATA_FIELDS = (
    "prompts",
    "split",
    "problem_column",
    "system_prompt",
    "instruction",
    "keep_verdicts",
    "max_prompts",
)
# the student's ModelConfig fields as in `sft run`, then DistillationConfig's common fields
ON_POLICY_TRL_FIELDS = {
    **{name: entry for name, entry in TRL_FIELDS.items() if entry[1] == "ModelConfig"},
    # --- model ---
    "teacher_model_name_or_path": (
        "model",
        "DistillationConfig",
        None,
        "Model name or path for the teacher model.",
    ),
    "trust_remote_code": (
        "model",
        "DistillationConfig",
        False,
        "Whether to allow loading models and tokenizers that ship custom Python code from the Hub.",
    ),
    # --- distillation ---
    "beta": (
        "distillation",
        "DistillationConfig",
        1.0,
        "Interpolation coefficient for the Generalized JSD loss.",
    ),
    "temperature": (
        "distillation",
        "DistillationConfig",
        1.0,
        "Temperature for sampling and loss computation.",
    ),
    "top_p": (
        "distillation",
        "DistillationConfig",
        1.0,
        "Top-p (nucleus) sampling parameter for on-policy generation.",
    ),
    "top_k": ("distillation", "DistillationConfig", 0, "Top-k sampling parameter for on-policy generation."),
    "max_completion_length": (
        "distillation",
        "DistillationConfig",
        512,
        "Maximum number of tokens to generate per completion.",
    ),
    "use_vllm": (
        "distillation",
        "DistillationConfig",
        False,
        "Whether to use vLLM for generating on-policy completions from the student model.",
    ),
    "vllm_mode": ("distillation", "DistillationConfig", "colocate", "Mode for student vLLM integration."),
    "vllm_server_base_url": (
        "distillation",
        "DistillationConfig",
        None,
        "Base URL for the student vLLM server.",
    ),
    "vllm_gpu_memory_utilization": (
        "distillation",
        "DistillationConfig",
        0.3,
        "GPU memory utilization for the colocated student vLLM engine.",
    ),
    # --- training ---
    "output_dir": (
        "training",
        "DistillationConfig",
        None,
        "The output directory where the model predictions and checkpoints will be written.",
    ),
    "learning_rate": ("training", "DistillationConfig", 1e-06, "The initial learning rate for AdamW."),
    "lr_scheduler_type": (
        "training",
        "DistillationConfig",
        "linear",
        "The learning rate scheduler type to use.",
    ),
    "warmup_steps": (
        "training",
        "DistillationConfig",
        0,
        "Number of steps for a linear warmup from 0 to `learning_rate`.",
    ),
    "weight_decay": (
        "training",
        "DistillationConfig",
        0.0,
        "Weight decay coefficient applied by the optimizer.",
    ),
    "max_steps": ("training", "DistillationConfig", -1, "Overrides `num_train_epochs`."),
    "num_train_epochs": (
        "training",
        "DistillationConfig",
        3.0,
        "Total number of training epochs to perform.",
    ),
    "per_device_train_batch_size": (
        "training",
        "DistillationConfig",
        8,
        "The batch size per device for training.",
    ),
    "gradient_accumulation_steps": (
        "training",
        "DistillationConfig",
        1,
        "Number of update steps to accumulate gradients before performing a backward/update pass.",
    ),
    "gradient_checkpointing": (
        "training",
        "DistillationConfig",
        True,
        "Enable gradient checkpointing to trade compute for memory.",
    ),
    "logging_steps": ("training", "DistillationConfig", 10, "Log every X updates steps."),
    "save_strategy": (
        "training",
        "DistillationConfig",
        "steps",
        "The checkpoint save strategy to adopt during training.",
    ),
    "save_steps": ("training", "DistillationConfig", 500, "Save checkpoint every X updates steps."),
    "save_total_limit": ("training", "DistillationConfig", None, "Maximum number of checkpoints to keep."),
    "resume_from_checkpoint": (
        "training",
        "DistillationConfig",
        None,
        "Path to a folder with a valid checkpoint for your model.",
    ),
    "report_to": (
        "training",
        "DistillationConfig",
        "none",
        "The list of integrations to report the results and logs to.",
    ),
    "run_name": ("training", "DistillationConfig", None, "An optional descriptor for the run."),
    "seed": (
        "training",
        "DistillationConfig",
        42,
        "Random seed that will be set at the beginning of training.",
    ),
    "bf16": (
        "training",
        "DistillationConfig",
        None,
        "Whether to use bf16 (mixed) precision instead of 32-bit.",
    ),
}


def _field_default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def help_rows(ours, data_fields, trl_fields, groups) -> list[tuple[str, str, object, str, list | None]]:
    """(group, field, default, help, choices) for every field the grouped help shows, in display order: the
    fields of our dataclass `ours` (data_fields / OUTPUT_FIELDS by name, the rest distillation), then
    `trl_fields`."""
    rows = []
    for f in dataclasses.fields(ours):
        group = "data" if f.name in data_fields else "output" if f.name in OUTPUT_FIELDS else "distillation"
        rows.append((group, f.name, _field_default(f), f.metadata.get("help", ""), f.metadata.get("choices")))
    rows += [(group, name, default, text, None) for name, (group, _, default, text) in trl_fields.items()]
    order = list(groups)
    return sorted(rows, key=lambda row: order.index(row[0]))  # stable: field order kept within a group


def format_help(aliases: dict[str, str], on_policy: bool = False, width: int = 100) -> str:
    """The grouped help of `sft run` (or `sft on-policy`); `aliases` maps a shared flag (`--model`) to the
    field flag it stands for."""
    if on_policy:
        from sft.on_policy_config import OnPolicyArguments

        prog, recipe, trainer = "python -m sft on-policy", "toy_on_policy.yaml", "the student's own samples"
        rows = help_rows(OnPolicyArguments, ON_POLICY_DATA_FIELDS, ON_POLICY_TRL_FIELDS, ON_POLICY_GROUPS)
        groups = ON_POLICY_GROUPS
    else:
        prog, recipe, trainer = "python -m sft run", "toy_student.yaml", "traces, with TRL's SFTTrainer"
        rows, groups = help_rows(DistillArguments, DATA_FIELDS, TRL_FIELDS, GROUPS), GROUPS
    shared = {field: alias for alias, field in aliases.items()}
    lines = [
        f"usage: {prog} [--config RECIPE.yaml] [--FIELD VALUE ...]",
        "",
        *textwrap.wrap(
            f"Fine-tune a student on {trainer}. Flags override the recipe (--config, a YAML of the same fields); "
            f"without --config the toy demo recipe configs/sft/{recipe} is used. The defaults shown are the fields' "
            "own; a recipe replaces them. Every flag also takes its dash spelling (--max-steps). --help-all prints "
            "every TRL field (slow). Bad input stops with one `error:` line (exit 2), an unexpected library error "
            "with one line too (exit 1); --debug prints the traceback instead.",
            width,
            break_on_hyphens=False,
        ),
    ]
    current = None
    for group, name, default, text, choices in rows:
        if group != current:
            lines += [
                "",
                *textwrap.wrap(f"{groups[group]}:", width, subsequent_indent="  ", break_on_hyphens=False),
            ]
            current = group
        flag = f"--{name}"
        names = f"{shared[flag]}, {flag}" if flag in shared else flag
        values = f" {{{','.join(choices)}}}" if choices else ""
        lines.append(f"  {names}{values}  (default: {default!r})")
        lines += textwrap.wrap(
            text, width, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False
        )
    return "\n".join(lines)
