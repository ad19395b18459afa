"""`python -m sft on-policy`: the stage after `sft run`. The student samples, the teacher grades every token.

Order: check the arguments -> read the prompt set -> lint (student template and context, how samples close
the reasoning, trace rows for lmbda < 1, student/teacher vocabularies, a probe request to each server
teacher; errors stop here) -> load teachers and student -> train (sft/on_policy_trainer.py) -> save the
adapter (and `<output_dir>/merged`) or the full model, the tokenizer and `run_summary.json`, as `sft run` does.

The student is a model directory (e.g. `sft run`'s `<output_dir>/merged`) trained with a new LoRA
(`use_peft`) or in full, or an adapter directory (`sft run`'s `<output_dir>`): its adapter is trained on
(`use_peft: true`) or merged first and the whole model trained (`use_peft: false`).

Usage:
    python -m sft on-policy --config configs/sft/toy_on_policy.yaml
    python -m sft on-policy --config configs/sft/r1_distill_qwen2.5_1.5b_on_policy.yaml --model_name_or_path DIR
"""

import dataclasses
import json
from pathlib import Path

from peft import PeftModel
from transformers import AutoConfig, AutoTokenizer
from trl import DistillationConfig, ModelConfig

from sft.errors import UsageError
from sft.lint import LintReport
from sft.on_policy_config import OnPolicyArguments, is_server
from sft.on_policy_data import lint_on_policy, load_prompt_set
from sft.on_policy_teacher import (
    ServerTeacher,
    check_tokenizers,
    load_model_teacher,
    scored_vocab,
)
from sft.on_policy_trainer import OnPolicyDistillTrainer
from sft.saving import merge_and_save
from sft.train import load_student, load_tokenizer, student_peft_config


def run(args: OnPolicyArguments, training_args: DistillationConfig, model_args: ModelConfig) -> Path | None:
    """Train, save, merge. Returns the directory of the standalone student (None: lint only)."""
    specs = _check_arguments(args, training_args)
    base_args = _student_base(model_args)
    tokenizer = _student_tokenizer(model_args, base_args, training_args)
    dataset = load_prompt_set(args, list(specs))
    servers = {
        name: ServerTeacher(name, spec, args.teacher_top_k, args.teacher_server_model, args.teacher_api_key_env,
                            args.teacher_concurrency)
        for name, spec in specs.items() if is_server(spec)
    }  # fmt: skip
    report, n_vocab = _lint(args, training_args, base_args, tokenizer, dataset, specs, servers)
    text = report.format()
    if training_args.process_index == 0:
        print(text, flush=True)
    if report.errors and args.lint:
        raise UsageError(
            f"on-policy lint failed: {report.errors[0]} (report above; --lint false skips the lint)"
        )
    if args.lint_only:
        return None

    teachers = [
        servers[name] if name in servers else load_model_teacher(name, spec, args, training_args)
        for name, spec in specs.items()
    ]
    model, peft_config = _load_student(model_args, base_args, training_args)
    trainer = OnPolicyDistillTrainer(
        model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config, teachers=teachers, lmbda=args.lmbda, samples_per_prompt=args.samples_per_prompt,
        kd_temperature=args.kd_temperature, teacher_top_k=args.teacher_top_k, kd_chunk_size=args.kd_chunk_size,
        scored_vocab=n_vocab, think_close=args.think_close, unclosed_think=args.unclosed_think,
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return out
    tokenizer.save_pretrained(str(out))
    final = out
    if isinstance(trainer.model, PeftModel) and args.merge_adapter:
        final = merge_and_save(trainer, tokenizer, base_args, out)
    (out / "lint_report.txt").write_text(text + "\n")
    logged = trainer.state.log_history  # per logging step, and the final summary entry
    summary = {
        "prompts": len(dataset),
        "mode": "qlora"
        if model_args.load_in_4bit
        else "lora"
        if isinstance(trainer.model, PeftModel)
        else "full",
        "final_model": str(final),
        "teachers": {name: spec for name, spec in specs.items()},
        "lmbda": args.lmbda,
        "beta": training_args.beta,
        "teacher_top_k": args.teacher_top_k,
        "scored_vocab": n_vocab,
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
        "global_step": trainer.state.global_step,
        "world_size": trainer.accelerator.num_processes,
        "unclosed_think_ratio": _mean(h.get("think/unclosed_ratio") for h in logged),
        "tokens_per_s_generation": _mean(h.get("tokens_per_s/generation") for h in logged),
        "tokens_per_s_training": _mean(h.get("tokens_per_s/training") for h in logged),
    }
    (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
    return final


def _check_arguments(args: OnPolicyArguments, training_args: DistillationConfig) -> dict[str, str]:
    """Cross-field checks of the three dataclasses; returns the teachers {name: path or URL}."""
    if args.teachers and training_args.teacher_model_name_or_path:
        raise UsageError("give one teacher (--teacher_model_name_or_path) or routed --teachers, not both")
    specs = args.teacher_specs(training_args.teacher_model_name_or_path)
    if not specs:
        raise UsageError(
            "no teacher: pass --teacher_model_name_or_path PATH_OR_URL (or --teachers + --teacher_column)"
        )
    if any(is_server(s) for s in specs.values()) and args.teacher_top_k < 1:
        raise UsageError(
            "a server teacher returns top-k log-probs: set --teacher_top_k K (1..the server's --max-logprobs, e.g. 20)"
        )
    generation_batch = (
        training_args.per_device_train_batch_size
        * training_args.world_size
        * training_args.gradient_accumulation_steps
    )
    if generation_batch % args.samples_per_prompt:
        raise UsageError(
            f"the generation batch ({generation_batch} = per device batch x processes x accumulation) is not a "
            f"multiple of samples_per_prompt ({args.samples_per_prompt})"
        )
    for name, spec in specs.items():
        if not is_server(spec) and Path(spec).exists() and not (Path(spec) / "config.json").is_file():
            raise UsageError(f"teacher {name}: {spec} has no config.json: point it at a model directory")
    return specs


def _student_base(model_args: ModelConfig) -> ModelConfig:
    """ModelConfig of the student's base model: the adapter's base for an adapter directory."""
    path = Path(model_args.model_name_or_path or "")
    if not (path / "adapter_config.json").is_file():
        return model_args
    base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    return dataclasses.replace(model_args, model_name_or_path=base)


def _student_tokenizer(model_args: ModelConfig, base_args: ModelConfig, training_args):
    """The tokenizer saved with the student (`sft run` saves it beside the adapter), else its base's."""
    adapter_dir = Path(model_args.model_name_or_path)
    if base_args is not model_args and (adapter_dir / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(adapter_dir, trust_remote_code=training_args.trust_remote_code)
    return load_tokenizer(base_args, training_args)


def _load_student(model_args: ModelConfig, base_args: ModelConfig, training_args):
    """(student, peft_config for TRL): a model with a new LoRA or none, or an adapter directory's PeftModel."""
    model = load_student(base_args, training_args)
    if base_args is model_args:
        return model, student_peft_config(model, model_args)
    model = PeftModel.from_pretrained(model, model_args.model_name_or_path, is_trainable=model_args.use_peft)
    if model_args.use_peft:
        return model, None
    return model.merge_and_unload().requires_grad_(True), None  # peft froze the base weights


def _lint(args, training_args, base_args, tokenizer, dataset, specs, servers) -> tuple[LintReport, int]:
    student_config = AutoConfig.from_pretrained(base_args.model_name_or_path).get_text_config()
    report = lint_on_policy(
        tokenizer, dataset, max_completion_length=training_args.max_completion_length,
        max_positions=getattr(student_config, "max_position_embeddings", None), think_close=args.think_close,
        n_samples=args.lint_samples,
    )  # fmt: skip
    rows = {}
    for name, spec in specs.items():
        if name in servers:
            continue
        rows[name] = AutoConfig.from_pretrained(spec).get_text_config().vocab_size
        try:
            teacher_tokenizer = AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError):  # a model directory without tokenizer files: sizes are all we can check
            teacher_tokenizer = None
        check_tokenizers(tokenizer, teacher_tokenizer, name)
    n_vocab, line = scored_vocab(student_config.vocab_size, len(tokenizer), rows)
    report.lines.append(line)
    if servers:
        probe = tokenizer.apply_chat_template(dataset[0]["prompt"], add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"]  # fmt: skip
        probe = list(probe) + tokenizer(args.think_close, add_special_tokens=False)["input_ids"]
        report.lines += [server.probe(tokenizer, probe) for server in servers.values()]
    return report, n_vocab


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
