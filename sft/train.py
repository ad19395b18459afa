"""Fine-tune a student on traces with TRL's SFTTrainer: LoRA, QLoRA or full fine-tuning, optional KD term.

Order: load traces -> template lint (sft/lint.py; errors stop here) -> load student (and teacher) ->
train (SFTTrainer, or DistillSFTTrainer when --kd_source is set) -> save -> merge the adapter into
`<output_dir>/merged` -> optional 4-bit export -> `run_summary.json`.
"""

import json
import logging
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config, get_quantization_config
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from sft.config import DistillArguments
from sft.data import load_traces
from sft.errors import UsageError
from sft.kd_data import KD_COLUMNS, OfflineKDCollator, format_alignment, prepare_offline_kd
from sft.kd_trainer import DistillSFTTrainer
from sft.lint import lint, training_template

log = logging.getLogger(__name__)


def _check_model_dir(path: str | None, flag: str) -> str:
    if path is None:
        raise UsageError(f"no model given: pass {flag} PATH_OR_HUB_ID")
    if Path(path).exists() and not (Path(path) / "config.json").is_file():
        raise UsageError(f"{path} exists but has no config.json: point {flag} at a model directory")
    return path


def _dtype(name: str | None):
    return name if name in (None, "auto") else getattr(torch, name)


def _device_map(quantized: bool, training_args: SFTConfig):
    """bitsandbytes models are placed at load time: this process's GPU, or the CPU."""
    if not quantized:
        return None
    return {"": training_args.local_process_index} if torch.cuda.is_available() else "cpu"


def load_student(model_args: ModelConfig, training_args: SFTConfig):
    path = _check_model_dir(model_args.model_name_or_path, "--model_name_or_path")
    quantization_config = get_quantization_config(model_args)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=model_args.model_revision,
        dtype=_dtype(model_args.dtype),
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
        quantization_config=quantization_config,
        device_map=_device_map(quantization_config is not None, training_args),
    )
    return model


def load_tokenizer(model_args: ModelConfig, training_args: SFTConfig):
    path = _check_model_dir(model_args.model_name_or_path, "--model_name_or_path")
    return AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )


def load_teacher(args: DistillArguments, training_args: SFTConfig):
    """The frozen online teacher: `teacher_dtype`, or nf4 4-bit with bitsandbytes."""
    path = _check_model_dir(args.teacher_model_name_or_path, "--teacher_model_name_or_path")
    dtype = getattr(torch, args.teacher_dtype)
    quantization_config = None
    if args.teacher_load_in_4bit:
        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
    return AutoModelForCausalLM.from_pretrained(
        path,
        dtype=dtype,
        quantization_config=quantization_config,
        device_map=_device_map(args.teacher_load_in_4bit, training_args),
        trust_remote_code=training_args.trust_remote_code,
    )


def student_peft_config(model, model_args: ModelConfig):
    """TRL's LoRA config from ModelConfig (None: full fine-tuning)."""
    peft_config = get_peft_config(model_args)
    if peft_config is not None and peft_config.modules_to_save and model.config.tie_word_embeddings:
        # Training embed_tokens (modules_to_save) on a tied model must train lm_head with it; without
        # this peft trains a copy of the input embedding while the output projection stays frozen.
        peft_config.ensure_weight_tying = True
    return peft_config


def merge_and_save(trainer, tokenizer, model_args: ModelConfig, out: Path) -> Path:
    """Merge the adapter saved at `out` into its base and save it with the tokenizer at `out/merged`."""
    final = out / "merged"
    # merge into the unquantized base, not into rounded 4-bit weights
    if model_args.load_in_4bit or model_args.load_in_8bit:
        base_model = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path,
            dtype=_dtype(model_args.dtype),
            revision=model_args.model_revision,
        )
        merged = PeftModel.from_pretrained(base_model, str(out)).merge_and_unload()
    else:
        merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))
    return final


def run_lint(args, training_args, model_args, tokenizer, dataset) -> str:
    student_vocab = teacher_vocab = None
    if args.kd_source == "online":
        student_vocab = AutoConfig.from_pretrained(model_args.model_name_or_path).get_text_config().vocab_size
        teacher_vocab = (
            AutoConfig.from_pretrained(args.teacher_model_name_or_path).get_text_config().vocab_size
        )
    report = lint(
        tokenizer,
        dataset,
        assistant_only_loss=training_args.assistant_only_loss,
        max_length=training_args.max_length,
        n_samples=args.lint_samples,
        student_vocab=student_vocab,
        teacher_vocab=teacher_vocab,
    )
    text = report.format()
    if training_args.process_index == 0:
        print(text, flush=True)
    if report.errors:
        raise UsageError(
            f"template lint failed: {report.errors[0]} (report above; --lint false skips the lint)"
        )
    return text


def run(args: DistillArguments, training_args: SFTConfig, model_args: ModelConfig) -> Path | None:
    """Train, save, and (for adapters) merge. Returns the directory of a standalone model (None: lint only)."""
    extra = KD_COLUMNS if args.kd_source == "offline" else ()
    dataset = load_traces(args.traces, args.keep_verdicts, args.include_rejected, args.max_samples, extra)
    tokenizer = load_tokenizer(model_args, training_args)
    lint_text = (
        run_lint(args, training_args, model_args, tokenizer, dataset) if args.lint or args.lint_only else ""
    )
    if args.lint_only:
        return None

    trainer_kwargs, summary = {}, {}
    if args.kd_source == "offline":
        if training_args.packing:
            raise UsageError(
                "kd_source=offline cannot pack sequences (top-k rows follow each row): use --padding_free"
            )
        template = training_template(tokenizer, assistant_only_loss=True)
        dataset, stats = prepare_offline_kd(dataset, tokenizer, training_args.max_length, template)
        print(format_alignment(stats), flush=True)
        summary["offline_alignment"] = {k: v for k, v in stats.items() if k != "examples"}
        training_args.remove_unused_columns = False  # keep the top-k columns for the collator
        training_args.assistant_only_loss = (
            False  # rows come tokenized, labels already masked to the assistant
        )
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        base = DataCollatorForLanguageModeling(
            pad_token_id=pad_id,
            padding_free=training_args.padding_free,
            pad_to_multiple_of=training_args.pad_to_multiple_of,
        )
        trainer_kwargs["data_collator"] = OfflineKDCollator(base, k=stats["k"])
    if args.kd_source == "online":
        trainer_kwargs["teacher_model"] = load_teacher(args, training_args)

    model = load_student(model_args, training_args)
    peft_config = student_peft_config(model, model_args)
    common = dict(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if args.kd_source == "none":
        trainer = SFTTrainer(**common)
    else:
        trainer = DistillSFTTrainer(
            **common,
            kd_alpha=args.kd_alpha,
            kd_beta=args.kd_beta,
            kd_temperature=args.kd_temperature,
            kd_temperature_end=args.kd_temperature_end,
            kd_chunk_size=args.kd_chunk_size,
            kd_confidence_weighted=args.kd_confidence_weighted,
            **trainer_kwargs,
        )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return out
    tokenizer.save_pretrained(str(out))
    final = out
    if model_args.use_peft and args.merge_adapter:
        final = merge_and_save(trainer, tokenizer, model_args, out)
    if args.export_4bit:
        summary["export_4bit"] = str(export_4bit(final, out / "merged-4bit", training_args))
        tokenizer.save_pretrained(summary["export_4bit"])
    if lint_text:
        (out / "lint_report.txt").write_text(lint_text + "\n")
    summary = {
        "train_rows": len(dataset),
        "mode": "qlora" if model_args.load_in_4bit else "lora" if model_args.use_peft else "full",
        "final_model": str(final),
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
        "global_step": trainer.state.global_step,
        "world_size": trainer.accelerator.num_processes,  # processes that really trained together
        "kd_source": args.kd_source,
        "kd_alpha": args.kd_alpha,
        **summary,
    }
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("saved %s", final)
    return final


def export_4bit(model_dir: Path, out_dir: Path, training_args: SFTConfig) -> Path:
    """Reload a standalone model in bitsandbytes nf4 and save it (serialized 4-bit safetensors)."""
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), quantization_config=config, device_map=_device_map(True, training_args)
    )
    model.save_pretrained(str(out_dir))
    return out_dir
