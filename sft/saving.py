"""Crash-safe model directories and honest resume for `python -m sft run`.

Every model directory a run writes gets a `COMPLETE` file written last (JSON: what it is, the step):
`<output_dir>` itself (the adapter, or the model of a full fine-tune), `merged/`, `merged-4bit/`, and each
`checkpoint-N/` (the `MarkCheckpoints` callback). A directory of ours without it was cut short:
eval_harness.checks refuses it, and a rerun never resumes from it.

- `save_whole`: merged/ and merged-4bit/ are written into `NAME.partial`, marked, then renamed into place;
- `save_output`: the trainer's final save into `<output_dir>` (which also holds checkpoints, so it cannot be
  renamed): the marker is removed before training (`prepare_output`) and written after the tokenizer;
- `plan(out, resume, max_steps)`: what a (re)run does. A finished run (run_summary.json + COMPLETE, trained to
  at least --max_steps) is not trained again. Otherwise it resumes from the last complete checkpoint:
  `--resume_from_checkpoint true` or a plain rerun into a directory with checkpoints (which says so in one
  line), a PATH that must be complete, `false` to start again from step 0. A rerun whose IDENTITY settings
  differ from the run already there is refused (one line) rather than resumed or taken as finished.

Test points (trace_gen/testpoints.py, `DISTILL_CRASH_AT=NAME[:K]`): `sft:checkpoint_unmarked` (checkpoint-N
written, not yet marked), `sft:checkpoint` (checkpoint-N marked), `sft:save_model` (the final adapter or model
is in `<output_dir>`, its tokenizer and marker are not), `sft:merge` (the merged weights are in
`merged.partial`, its tokenizer and marker are not), `sft:merged-4bit` (the same in the 4-bit export).
"""

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from trl import ModelConfig, SFTConfig

from sft.errors import UsageError
from trace_gen.testpoints import crash_point

MARKER = "COMPLETE"
SUMMARY = "run_summary.json"
FINAL_DIRS = ("merged", "merged-4bit")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Settings that change what a run trains (as in run_config.yaml): a rerun that differs in one of them is another
# run, never resumed nor taken as finished. --max_steps may grow (the run goes on), logging and saving may change.
IDENTITY = (
    "model_name_or_path", "traces", "keep_verdicts", "include_rejected", "max_samples", "kd_source",
    "teacher_model_name_or_path", "kd_alpha", "use_peft", "load_in_4bit", "lora_r", "lora_alpha",
    "lora_target_modules", "learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_length", "seed", "data_seed", "dataset_name", "dataset_config",
    "dataset_train_split", "datasets", "eval_split_ratio",
)  # fmt: skip


def as_given(path: str) -> str:
    """A hub id as given; a local directory as an absolute path (recorded in the adapter's config, so that
    AutoPeftModelForCausalLM finds the base model from anywhere)."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def torch_dtype(name: str | None):
    return name if name in (None, "auto") else getattr(torch, name)


def device_map(quantized: bool, training_args: SFTConfig):
    """bitsandbytes models are placed at load time: this process's GPU, or the CPU."""
    if not quantized:
        return None
    return {"": training_args.local_process_index} if torch.cuda.is_available() else "cpu"


def mark_complete(path: Path, what: str, step: int) -> None:
    """Write `path/COMPLETE` (atomically: a reader sees no marker or a whole one)."""
    tmp = path / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"what": what, "step": step}) + "\n")
    os.replace(tmp, path / MARKER)


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


def save_whole(final: Path, model, tokenizer, what: str, step: int) -> None:
    """Save into `final.partial`, mark it, then move it into place: `final` is never half-written."""
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    crash_point("sft:merge" if what == "merged" else f"sft:{what}")
    tokenizer.save_pretrained(str(tmp))
    mark_complete(tmp, what, step)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def save_output(trainer, tokenizer, out: Path) -> None:
    """The trainer's final save into `out` (the adapter, or the whole model), then its tokenizer and marker."""
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    crash_point("sft:save_model")
    tokenizer.save_pretrained(str(out))
    what = "adapter" if isinstance(trainer.model, PeftModel) else "model"
    mark_complete(out, what, trainer.state.global_step)


def merge_and_save(trainer, tokenizer, model_args: ModelConfig, out: Path) -> Path:
    """Merge the adapter saved at `out` into its base and save it with the tokenizer at `out/merged`."""
    final = out / "merged"
    if model_args.load_in_4bit or model_args.load_in_8bit:  # into the unquantized base, not rounded weights
        base_model = AutoModelForCausalLM.from_pretrained(
            as_given(model_args.model_name_or_path),
            dtype=torch_dtype(model_args.dtype),
            revision=model_args.model_revision,
        )
        merged = PeftModel.from_pretrained(base_model, str(out)).merge_and_unload()
    else:
        merged = trainer.model.merge_and_unload()
    save_whole(final, merged, tokenizer, "merged", trainer.state.global_step)
    return final


def export_4bit(model_dir: Path, out_dir: Path, training_args: SFTConfig, tokenizer, step: int) -> Path:
    """Reload a standalone model in bitsandbytes nf4 and save it (serialized 4-bit safetensors)."""
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), quantization_config=config, device_map=device_map(True, training_args)
    )
    save_whole(out_dir, model, tokenizer, "merged-4bit", step)
    return out_dir


class MarkCheckpoints(TrainerCallback):
    """Marks each `checkpoint-N/` complete once the Trainer has written all of it (on_save follows the save)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            crash_point("sft:checkpoint_unmarked")
            if checkpoint.is_dir():
                mark_complete(checkpoint, "checkpoint", state.global_step)
            crash_point("sft:checkpoint")
        return control


def checkpoints(out: Path) -> dict[int, Path]:
    """{step: checkpoint-N/} in `out`, complete or not."""
    if not out.is_dir():
        return {}
    found = {int(m.group(1)): p for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))}
    return dict(sorted(found.items()))


def checkpoint_step(path: Path) -> int:
    return json.loads((path / MARKER).read_text())["step"]


@dataclass
class Plan:
    """What a (re)run into an output directory does: `finished` (the model's path: nothing to train), or
    train from `resume` (a complete checkpoint; None: step 0). `start_over`: the directory's checkpoints
    belong to a run started again (--resume_from_checkpoint false). `note`: one line to print, or None."""

    finished: Path | None = None
    resume: Path | None = None
    note: str | None = None
    start_over: bool = False


def changed_settings(out: Path, settings: dict) -> list[str]:
    """IDENTITY settings of `settings` (provenance.resolved_config) that differ from `out/run_config.yaml`."""
    path = out / "run_config.yaml"
    if not path.is_file():
        return []
    before = yaml.safe_load(path.read_text()) or {}
    return [
        f"{k}: {before.get(k, 'default')!r} -> {settings.get(k, 'default')!r}"
        for k in IDENTITY
        if before.get(k) != settings.get(k)
    ]


def plan(out: Path, resume: str | None, max_steps: int, settings: dict) -> Plan:
    """Decide before any model loads (UsageError on a resume point that is missing or incomplete, or on an
    output directory that holds a run with other IDENTITY settings)."""
    if resume is not None and resume.lower() == "false":
        note = f"--resume_from_checkpoint false: training {out} from step 0 (its checkpoints are removed)"
        return Plan(note=note if checkpoints(out) else None, start_over=True)
    summary = out / SUMMARY
    reusable = summary.is_file() or any(is_complete(p) for p in checkpoints(out).values())
    changed = (
        changed_settings(out, settings) if reusable and (resume is None or resume.lower() == "true") else []
    )
    if changed:
        raise UsageError(
            f"{out} holds a run with other settings ({'; '.join(changed)}): pass another --output_dir, or "
            f"--resume_from_checkpoint false to train this one there from step 0"
        )
    if summary.is_file() and is_complete(out):
        done = json.loads(summary.read_text())
        if max_steps <= 0 or done.get("global_step", 0) >= max_steps:
            final = Path(done["final_model"])
            return Plan(finished=final, note=f"{out} holds a finished run ({SUMMARY}); the model is {final}")
    found = checkpoints(out)
    complete = [p for p in found.values() if is_complete(p)]
    incomplete = [p.name for p in found.values() if not is_complete(p)]
    dropped = f" ({', '.join(incomplete)} incomplete)" if incomplete else ""
    if resume is not None and resume.lower() != "true":
        path = Path(resume)
        if not path.is_dir():
            raise UsageError(
                f"--resume_from_checkpoint {resume} is not a directory; pass a checkpoint-N directory, or true "
                f"(the last complete checkpoint in --output_dir)"
            )
        if not is_complete(path):
            raise UsageError(
                f"--resume_from_checkpoint {resume} is incomplete (no {MARKER}: its save was cut short); pass "
                f"--resume_from_checkpoint true (the last complete checkpoint in --output_dir) or another one"
            )
        return Plan(resume=path, note=f"resuming from {path}")
    if complete:
        last = complete[-1]
        how = "--resume_from_checkpoint true" if resume else "a rerun resumes by default"
        return Plan(resume=last, note=f"resuming from {last} (step {checkpoint_step(last)}; {how}){dropped}")
    if resume is not None:
        raise UsageError(
            f"--resume_from_checkpoint true but {out} has no complete checkpoint{dropped}; rerun without it to "
            f"train from step 0"
        )
    return Plan(
        note=f"no complete checkpoint in {out}: training from step 0{dropped}" if incomplete else None
    )


def train(trainer, resume: Path | None) -> None:
    """`trainer.train` from `resume` (None: step 0). A checkpoint already at --max_steps is loaded, not trained
    on: the Trainer runs one step before it checks max_steps, so resuming there would train past it."""
    if resume is not None and 0 < trainer.args.max_steps <= checkpoint_step(resume):
        trainer._load_from_checkpoint(str(resume))  # the Trainer's own loader (adapter or whole model)
        trainer.state = TrainerState.load_from_json(str(resume / TRAINER_STATE_NAME))
        return
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)


def prepare_output(out: Path, rerun: Plan) -> None:
    """Before training: unmark the final outputs (they are replaced), remove temp dirs of killed runs and
    incomplete checkpoints past the resume point (the Trainer writes those steps again); all checkpoints
    when the run starts over."""
    (out / SUMMARY).unlink(missing_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    for name in FINAL_DIRS:
        (out / name / MARKER).unlink(missing_ok=True)
        shutil.rmtree(out / (name + ".partial"), ignore_errors=True)
    start = checkpoint_step(rerun.resume) if rerun.resume else 0
    for step, path in checkpoints(out).items():
        if rerun.start_over or (step > start and not is_complete(path)):
            shutil.rmtree(path)
