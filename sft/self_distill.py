"""Self-distillation: an EMA-of-student teacher, and the born-again teacher check.

EMA teacher (`--kd_source online --kd_self ema`, "mean teacher"): a frozen plain copy of the student taken
before training; after every optimizer step each weight the student computes with moves toward it:
`teacher = decay * teacher + (1 - decay) * student`. For LoRA students the EMA is over the *merged*
weights (base + B A * scale, and the trained copies of `modules_to_save`), so the teacher is a plain
model of the student's architecture: it plugs into DistillSFTTrainer as `teacher_model` (online path)
unchanged, and is an EMA of the function the student computes (an EMA of A and B separately is not).
Memory: one more full copy of the student, in float32 (see `ema_teacher`). Not for quantized students.

Born-again (Furlanello et al. 2018): the teacher is a previous student of the same architecture, e.g.
`--kd_source online --teacher_model_name_or_path runs/gen1/merged`; `check_born_again_teacher` refuses
an adapter directory (it has no config.json) naming the merged/ directory to use instead.

Usage:
    python -m sft run --config configs/sft/toy_student.yaml --kd_source online --kd_self ema --kd_alpha 0.5
    python -m sft run --config configs/sft/toy_student.yaml --kd_source online --kd_alpha 0.5 \\
        --teacher_model_name_or_path runs/gen1/merged --output_dir runs/gen2
"""

import copy
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils.other import AuxiliaryTrainingWrapper, ModulesToSaveWrapper
from transformers import TrainerCallback

from sft.errors import UsageError
from sft.kd_trainer import lm_head_weight


def check_born_again_teacher(path: str | None) -> None:
    """An online teacher must be a whole model: a LoRA adapter directory (sft run's output_dir) is refused."""
    if path and (Path(path) / "adapter_config.json").is_file() and not (Path(path) / "config.json").is_file():
        merged = Path(path) / "merged"
        hint = (
            f"use the merged/ dir: {merged}" if (merged / "config.json").is_file() else "use its merged/ dir"
        )
        raise UsageError(
            f"--teacher_model_name_or_path {path} is a LoRA adapter directory, not a model: {hint} "
            "(sft run writes it with --merge_adapter true)"
        )


def check_ema(quantized: bool, resuming: bool) -> None:
    if resuming:
        raise UsageError(
            "--kd_self ema: the EMA teacher is not checkpointed, a resumed run would restart it from the initial "
            "student: drop --resume_from_checkpoint or train in one run"
        )
    if quantized:
        raise UsageError(
            "--kd_self ema averages the student's weights, which a 4/8-bit student does not have in full "
            "precision: use LoRA (--load_in_4bit false) or full fine-tuning"
        )


def ema_teacher(student: torch.nn.Module) -> torch.nn.Module:
    """A frozen float32 copy of the student before training (before peft wraps it: LoRA starts as a no-op).

    float32 whatever the student's dtype: bf16 resolves ~1/256 of a weight, so the EMA's small steps
    (1 - decay) * (student - teacher) would round away; under bf16 autocast it still runs in bf16.
    """
    assert not isinstance(student, PeftModel), "copy the student before SFTTrainer wraps it in peft"
    return copy.deepcopy(student).float().requires_grad_(False).eval()


def effective_weights(student: torch.nn.Module) -> dict[str, torch.Tensor]:
    """{name in the plain model: the weight the student computes with} for every weight training can move.

    Full fine-tuning: the trainable parameters. peft: base + LoRA delta of each LoRA layer, and the active
    trained copy of each `modules_to_save` module. Returned tensors may carry autograd history: use under
    no_grad.
    """
    if not isinstance(student, PeftModel):
        return {n: p for n, p in student.named_parameters() if p.requires_grad}
    out = {}
    for name, module in student.get_base_model().named_modules():
        if isinstance(module, LoraLayer):
            out[f"{name}.weight"] = lm_head_weight(module)  # (out, in): base + sum of active deltas
        elif isinstance(module, ModulesToSaveWrapper):
            trained = module.modules_to_save[module.active_adapters[0]]
            out.update({f"{name}.{n}": p for n, p in trained.named_parameters()})
        elif isinstance(module, AuxiliaryTrainingWrapper):
            raise UsageError(
                f"--kd_self ema supports LoRA and modules_to_save adapters, not {type(module).__name__}"
            )
    return out


@torch.no_grad()
def ema_update_(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> int:
    """In place: t <- decay * t + (1 - decay) * s for each weight the student can move. Returns tensors updated.

    Tied weights (embed_tokens / lm_head) are one teacher tensor and are updated once.
    """
    done = set()
    for name, weight in effective_weights(student).items():
        target = teacher.get_parameter(name)
        if id(target) in done:
            continue
        done.add(id(target))
        target.lerp_(weight.detach().to(target.dtype), 1.0 - decay)
    return len(done)


class EMATeacherCallback(TrainerCallback):
    """After every optimizer step, move the teacher's weights toward the student's (`ema_update_`)."""

    def __init__(self, teacher: torch.nn.Module, decay: float):
        self.teacher, self.decay = teacher, decay

    def on_step_end(self, args, state, control, model=None, **kwargs):
        ema_update_(self.teacher, model, self.decay)
