"""Fine-tune a student on traces with TRL's SFTTrainer: LoRA, QLoRA or full fine-tuning."""

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config, get_quantization_config

from sft.config import DistillArguments
from sft.data import load_traces
from sft.errors import UsageError

log = logging.getLogger(__name__)


def load_student(model_args: ModelConfig, training_args: SFTConfig):
    path = model_args.model_name_or_path
    if path is None:
        raise UsageError("no student model given: pass --model_name_or_path PATH_OR_HUB_ID")
    if Path(path).exists() and not (Path(path) / "config.json").is_file():
        raise UsageError(
            f"{path} exists but has no config.json: point --model_name_or_path at a model directory"
        )
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    quantization_config = get_quantization_config(model_args)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
        quantization_config=quantization_config,
        device_map="cpu" if quantization_config is not None and not torch.cuda.is_available() else None,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    return model, tokenizer


def run(args: DistillArguments, training_args: SFTConfig, model_args: ModelConfig) -> Path:
    """Train, save, and (for adapters) merge. Returns the directory of a standalone model."""
    dataset = load_traces(args.traces, args.keep_verdicts, args.include_rejected, args.max_samples)
    model, tokenizer = load_student(model_args, training_args)
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    final = out
    if model_args.use_peft and args.merge_adapter:
        final = out / "merged"
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(final))
        tokenizer.save_pretrained(str(final))
    summary = {
        "train_rows": len(dataset),
        "mode": "qlora" if model_args.load_in_4bit else "lora" if model_args.use_peft else "full",
        "final_model": str(final),
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
    }
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("saved %s", final)
    return final
