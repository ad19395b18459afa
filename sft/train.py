"""Fine-tune a student on traces with TRL's SFTTrainer: LoRA, QLoRA or full fine-tuning, optional KD term.

Order: check settings -> load traces and tokenizer -> apply --eos_token / --chat_template_path as SFTTrainer
will -> (KD) teacher/student vocabulary check -> template lint (sft/lint.py; errors stop here, before any model
loads) -> load student (and teacher) -> build SFTTrainer (or DistillSFTTrainer with --kd_source) and check it
renders what the lint checked -> write run_config.yaml / run_info.json -> train -> save (the tokenizer with the
template evaluation should render, see sft/templates.py) -> merge the adapter into `<output_dir>/merged` ->
optional 4-bit export -> `run_summary.json` -> print where the model is.
"""

import json
import logging
import shutil
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config, get_quantization_config
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from sft.checks import check_kd_pair, check_model_dir, check_online_kd, check_settings, check_topk_ids
from sft.config import DistillArguments, parse_teacher_weights
from sft.data import load_traces
from sft.errors import UsageError
from sft.kd_data import KD_COLUMNS, OfflineKDCollator, format_alignment, prepare_offline_kd, route_rows
from sft.kd_trainer import DistillSFTTrainer
from sft.lint import LintReport, lint
from sft.mutual_trainer import MutualSFTTrainer, check_mutual, load_peer
from sft.provenance import write_run_info
from sft.self_distill import EMATeacherCallback, check_born_again_teacher, check_ema, ema_teacher
from sft.templates import (
    apply_trainer_settings,
    probe_prompts,
    saved_template,
    trainer_chat_template,
    training_template,
)

log = logging.getLogger(__name__)


def _as_given(path: str) -> str:
    """A hub id as given; a local directory as an absolute path (recorded in the adapter's config, so that
    AutoPeftModelForCausalLM finds the base model from anywhere)."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _dtype(name: str | None):
    return name if name in (None, "auto") else getattr(torch, name)


def _device_map(quantized: bool, training_args: SFTConfig):
    """bitsandbytes models are placed at load time: this process's GPU, or the CPU."""
    if not quantized:
        return None
    return {"": training_args.local_process_index} if torch.cuda.is_available() else "cpu"


def load_student(model_args: ModelConfig, training_args: SFTConfig):
    path = _as_given(check_model_dir(model_args.model_name_or_path, "--model_name_or_path"))
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
    path = check_model_dir(model_args.model_name_or_path, "--model_name_or_path")
    return AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )


def load_teacher(args: DistillArguments, training_args: SFTConfig, path: str | None = None):
    """A frozen online teacher (`path`, default teacher_model_name_or_path): `teacher_dtype`, or nf4 4-bit."""
    path = check_model_dir(path or args.teacher_model_name_or_path, "--teacher_model_name_or_path")
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


def run_lint(args, training_args, tokenizer, stock_template, dataset) -> LintReport:
    report = lint(
        tokenizer,
        dataset,
        assistant_only_loss=args.kd_source == "offline" or training_args.assistant_only_loss,
        max_length=training_args.max_length,
        stock_template=stock_template,
        n_samples=args.lint_samples,
    )
    if training_args.process_index == 0:
        print(report.format(), flush=True)
    if report.errors:
        raise UsageError(f"template lint failed: {report.errors[0]}; fix: {report.fix} (report above)")
    return report


def check_trainer(trainer, expected: tuple, first_row: dict | None, n_rows: int, args) -> None:
    """SFTTrainer must train with the tokenizer, eos, template and rows the lint checked."""
    template, eos, train_template = expected
    built = trainer.processing_class
    problems = []
    if (built.chat_template, built.eos_token) != (template, eos):
        problems.append(f"tokenizer (eos {built.eos_token!r} vs {eos!r}, or its chat template) changed")
    if args.kd_source != "offline" and trainer.chat_template != train_template:
        problems.append("SFTTrainer renders training rows with another template than the lint checked")
    data = trainer.train_dataset
    if first_row and len(data) == n_rows and not trainer.args.packing and not trainer.args.shuffle_dataset:
        n = trainer.args.max_length or len(first_row["input_ids"])
        if data[0]["input_ids"] != first_row["input_ids"][:n] or data[0]["labels"] != first_row["labels"][:n]:
            problems.append("row 0 is tokenized or masked differently from the lint's rendering")
    if problems:
        raise RuntimeError(
            f"the template lint checked something else than SFTTrainer trains: {'; '.join(problems)}"
        )


def run(args: DistillArguments, training_args: SFTConfig, model_args: ModelConfig) -> Path | None:
    """Train, save, and (for adapters) merge. Returns the directory of a standalone model (None: lint only)."""
    check_settings(args, training_args)
    check_born_again_teacher(args.teacher_model_name_or_path)
    if args.kd_self == "ema":
        check_ema(
            model_args.load_in_4bit or model_args.load_in_8bit, bool(training_args.resume_from_checkpoint)
        )
    if args.mutual_peer:
        check_mutual(args.mutual_peer, training_args, model_args)
    extra = (
        KD_COLUMNS if args.kd_source == "offline" else (args.teacher_column,) if args.teacher_column else ()
    )
    weights = parse_teacher_weights(args.trace_teacher_weights) if args.trace_teacher_weights else None
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    dataset = load_traces(
        args.traces, args.keep_verdicts, args.include_rejected, args.max_samples, extra, weights, seed
    )
    teacher_paths = args.teacher_paths()  # {} for an EMA teacher (built from the student below)
    if args.teacher_column:
        dataset = route_rows(dataset, args.teacher_column, list(teacher_paths))
    n_rows = len(dataset)
    tokenizer = load_tokenizer(model_args, training_args)
    stock_template = tokenizer.chat_template
    apply_trainer_settings(tokenizer, training_args.eos_token, training_args.chat_template_path)
    peer = args.mutual_peer if args.mutual_peer not in (None, "true") else None
    if peer:  # a mutual-learning peer given by path
        check_kd_pair(
            AutoConfig.from_pretrained(model_args.model_name_or_path),
            AutoConfig.from_pretrained(peer),
            tokenizer,
            AutoTokenizer.from_pretrained(peer),
        )
    layer_pairs = []
    if args.kd_source == "online" and teacher_paths:
        student_config = AutoConfig.from_pretrained(model_args.model_name_or_path)
        for name, path in teacher_paths.items():  # every teacher, before any model loads
            try:
                teacher_config = AutoConfig.from_pretrained(check_model_dir(path, "--teachers"))
                check_kd_pair(student_config, teacher_config, tokenizer, AutoTokenizer.from_pretrained(path))
            except UsageError as err:
                raise UsageError(f"teacher {name} ({path}): {err}" if args.teachers else str(err)) from None
        # feature terms take one teacher (DistillArguments checks): teacher_config is that teacher's
        layer_pairs = check_online_kd(args, training_args, student_config, teacher_config)
    if args.kd_source == "offline":
        check_topk_ids(dataset, AutoConfig.from_pretrained(model_args.model_name_or_path))
    report = (
        run_lint(args, training_args, tokenizer, stock_template, dataset)
        if args.lint or args.lint_only
        else None
    )
    if args.lint_only:
        return None
    aol = args.kd_source == "offline" or training_args.assistant_only_loss
    train_template = report.train_template if report else training_template(tokenizer, aol)
    saved = report.saved_template if report else saved_template(tokenizer, stock_template, probe_prompts([]))

    trainer_kwargs, summary = {}, {}
    if args.kd_source == "offline":
        dataset, stats = prepare_offline_kd(dataset, tokenizer, training_args.max_length, train_template)
        print(format_alignment(stats), flush=True)
        summary["offline_alignment"] = {k: v for k, v in stats.items() if k != "examples"}
        training_args.remove_unused_columns = False  # keep the top-k columns for the collator
        # rows come tokenized, labels already masked to the assistant
        training_args.assistant_only_loss = False
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        base = DataCollatorForLanguageModeling(
            pad_token_id=pad_id,
            padding_free=training_args.padding_free,
            pad_to_multiple_of=training_args.pad_to_multiple_of,
        )
        trainer_kwargs["data_collator"] = OfflineKDCollator(base, k=stats["k"])
        training_args.padding_free = False  # the collator concatenates; SFTTrainer takes no collator with it
    if args.kd_source == "online" and teacher_paths:
        teachers = {name: load_teacher(args, training_args, path) for name, path in teacher_paths.items()}
        trainer_kwargs["teachers" if args.teachers else "teacher_model"] = (
            teachers if args.teachers else teachers["default"]
        )

    model = load_student(model_args, training_args)
    peft_config = student_peft_config(model, model_args)
    if args.kd_self == "ema":  # copied before peft wraps the student: its adapter starts as a no-op
        trainer_kwargs["teacher_model"] = ema_teacher(model)
        trainer_kwargs["callbacks"] = [EMATeacherCallback(trainer_kwargs["teacher_model"], args.kd_ema_decay)]
    if args.mutual_peer:
        peer = load_peer(args.mutual_peer, model, peft_config, _dtype(model_args.dtype))
    common = dict(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    expected = (tokenizer.chat_template, tokenizer.eos_token, trainer_chat_template(tokenizer, aol))
    if args.mutual_peer:
        trainer = MutualSFTTrainer(
            **common,
            peer_model=peer,
            mutual_weight=args.mutual_weight,
            kd_temperature=args.kd_temperature,
            kd_chunk_size=args.kd_chunk_size,
        )
    elif args.kd_source == "none":
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
            teacher_weights=args.teacher_weights or None,
            kd_hidden_weight=args.kd_hidden_weight,
            kd_hidden_loss=args.kd_hidden_loss,
            kd_attn_weight=args.kd_attn_weight,
            kd_rel_weight=args.kd_rel_weight,
            kd_layer_pairs=layer_pairs,
            kd_hidden_start_step=args.kd_hidden_start_step,
            kd_attn_start_step=args.kd_attn_start_step,
            kd_rel_start_step=args.kd_rel_start_step,
            **trainer_kwargs,
        )
    check_trainer(trainer, expected, report and report.first_row, n_rows, args)
    tokenizer.chat_template = saved  # checkpoints and the model carry the template evaluation renders with
    out = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        write_run_info(out, args, training_args, model_args)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return out
    tokenizer.save_pretrained(str(out))
    if args.mutual_peer:
        summary["peer_model"] = str(trainer.save_peer(out / "peer", tokenizer))
    final = out
    if model_args.use_peft and args.merge_adapter:
        final = merge_and_save(trainer, tokenizer, model_args, out)
    if args.export_4bit:
        summary["export_4bit"] = str(export_4bit(final, out / "merged-4bit", training_args, tokenizer))
    if report:
        (out / "lint_report.txt").write_text(report.format() + "\n")
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
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2))  # written last: the run is complete
    print(f"model: {final}", flush=True)
    return final


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
    if model_args.load_in_4bit or model_args.load_in_8bit:  # into the unquantized base, not rounded weights
        base_model = AutoModelForCausalLM.from_pretrained(
            _as_given(model_args.model_name_or_path),
            dtype=_dtype(model_args.dtype),
            revision=model_args.model_revision,
        )
        merged = PeftModel.from_pretrained(base_model, str(out)).merge_and_unload()
    else:
        merged = trainer.model.merge_and_unload()
    _save_whole(final, merged, tokenizer)
    return final


def _save_whole(final: Path, model, tokenizer) -> None:
    """Save into a temporary directory, then move it into place: `final` is never half-written."""
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def export_4bit(model_dir: Path, out_dir: Path, training_args: SFTConfig, tokenizer) -> Path:
    """Reload a standalone model in bitsandbytes nf4 and save it (serialized 4-bit safetensors)."""
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), quantization_config=config, device_map=_device_map(True, training_args)
    )
    _save_whole(out_dir, model, tokenizer)
    return out_dir
