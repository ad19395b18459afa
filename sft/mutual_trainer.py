"""Deep mutual learning (Zhang et al. 2018): the student and a peer trained together, each toward the other.

    loss_s = ce_s + w * KL(p_peer || p_s)        loss_p = ce_p + w * KL(p_s || p_peer)

with the other model's distribution detached (a constant teacher), so one backward of `loss_s + loss_p`
gives each model exactly its own gradient (the logged `loss` is that sum; `ce`/`kd` and `peer_ce`/`peer_kd`
are each model's terms). Both go through `sft.chunked_kd.chunked_ce_and_kd_loss` (beta 0 = forward KL,
the teacher being the other model's final hidden states + lm_head weight), so no [T, V] logits are built.
One optimizer holds both models' trainable parameters (two more param groups); the peer's gradients are
clipped on their own and zeroed after each step.

The peer: `--mutual_peer PATH` (any model of the student's vocabulary) or `--mutual_peer true` (a copy of
the student's initial weights). With LoRA (`use_peft`) the peer gets its own adapter, same LoRA config,
its own random A (both adapters start as no-ops, B = 0, and part after the first step); with full
fine-tuning the peer is trained in full. An identical full-FT copy would receive identical gradients and
never differ, so `true` with full fine-tuning is refused. Saved: the student as usual, the peer (merged
when it carries an adapter) with the tokenizer in `<output_dir>/peer`.
Gradient checkpointing applies to both. Limits: one process (no DDP/FSDP), no quantized student,
checkpoints hold the student only (no resume).

Usage:
    python -m sft run --config configs/sft/toy_student.yaml --mutual_peer true --mutual_weight 1.0
"""

import copy
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, TrainerCallback
from trl import SFTTrainer

from sft.chunked_kd import DEFAULT_CHUNK_SIZE, chunked_ce_and_kd_loss
from sft.errors import UsageError
from sft.kd_trainer import check_kd_vocab, lm_head_weight


def check_mutual(peer: str, training_args, model_args) -> None:
    """Settings mutual learning does not support, before anything loads."""
    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise UsageError(
            "--mutual_peer with a quantized student is not supported: use LoRA or full fine-tuning"
        )
    if training_args.world_size > 1:
        raise UsageError(
            "--mutual_peer runs in one process (the peer is not wrapped for DDP/FSDP): launch without torchrun"
        )
    if training_args.resume_from_checkpoint:
        raise UsageError(
            "--mutual_peer checkpoints hold the student only: resuming would restart the peer; drop --resume_from_checkpoint"
        )
    if peer.lower() == "true" and not model_args.use_peft:
        raise UsageError(
            "--mutual_peer true with full fine-tuning copies the student, and two identical models on the same "
            "batches get identical gradients forever: give --mutual_peer PATH (another model of the same "
            "vocabulary) or use LoRA (--use_peft true: each model gets its own random adapter)"
        )
    if peer.lower() != "true" and not (Path(peer) / "config.json").is_file():
        raise UsageError(f"--mutual_peer {peer}: no config.json there; give a model directory or `true`")


def load_peer(peer: str, student: torch.nn.Module, peft_config, dtype) -> torch.nn.Module:
    """The peer before training: a copy of `student` (`true`) or PATH; with its own LoRA adapter if `peft_config`."""
    assert not isinstance(student, PeftModel), "load the peer before SFTTrainer wraps the student in peft"
    model = (
        copy.deepcopy(student)
        if peer.lower() == "true"
        else AutoModelForCausalLM.from_pretrained(peer, dtype=dtype)
    )
    return get_peft_model(model, copy.deepcopy(peft_config)) if peft_config is not None else model


class _ZeroPeerGrads(TrainerCallback):
    """Trainer zeroes the student's gradients after each step; the peer's must be zeroed too."""

    def __init__(self, peer):
        self.peer = peer

    def on_step_end(self, args, state, control, **kwargs):
        self.peer.zero_grad(set_to_none=True)


class MutualSFTTrainer(SFTTrainer):
    """SFTTrainer training `peer_model` beside the student with the mutual KL terms (see the module docstring).

    Args (besides SFTTrainer's):
        peer_model: the second model (same vocabulary), already carrying its adapter if LoRA.
        mutual_weight: w in `ce + w * KL(other || self)` for both models.
        kd_temperature: T of the KL terms (scaled by T²); kd_chunk_size: tokens per fused chunk.
    """

    def __init__(
        self,
        *args,
        peer_model,
        mutual_weight=1.0,
        kd_temperature=1.0,
        kd_chunk_size=DEFAULT_CHUNK_SIZE,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        check_kd_vocab(
            self.model.get_output_embeddings().weight.shape[0],
            peer_model.get_output_embeddings().weight.shape[0],
            "peer",
        )
        self.peer = peer_model.to(self.accelerator.device)
        if self.args.gradient_checkpointing:  # as Trainer.train does for the student
            gc_kwargs = dict(self.args.gradient_checkpointing_kwargs or {})
            every_n_layers, offload = gc_kwargs.pop("every_n_layers", 1), gc_kwargs.pop("offload", False)
            gc_kwargs.pop("selective", None)
            self.peer.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=gc_kwargs or None,
                every_n_layers=every_n_layers,
                offload=offload,
            )
            if isinstance(self.peer, PeftModel):
                self.peer.enable_input_require_grads()  # as SFTTrainer does for a peft student
        self.mutual_weight, self.kd_temperature, self.kd_chunk_size = (
            mutual_weight,
            kd_temperature,
            kd_chunk_size,
        )
        self.add_callback(_ZeroPeerGrads(self.peer))

    def create_optimizer(self, model=None):
        """The student's param groups (Trainer's), then the peer's trainable params as two more groups."""
        optimizer = super().create_optimizer(model)
        decay = set(self.get_decay_parameter_names(self.peer))
        trainable = [(n, p) for n, p in self.peer.named_parameters() if p.requires_grad]
        optimizer.add_param_group(
            {"params": [p for n, p in trainable if n in decay], "weight_decay": self.args.weight_decay}
        )
        optimizer.add_param_group(
            {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0}
        )
        return optimizer

    def _clip_grad_norm(self, model):
        if self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.peer.parameters(), self.args.max_grad_norm)
        return super()._clip_grad_norm(model)

    def _hidden_and_head(self, model, inputs):
        """(B, L-1, H) final hidden states (no logits built) and the (V, H) lm_head weight of `model`."""
        no_logits = torch.empty(0, dtype=torch.long, device=inputs["input_ids"].device)
        outputs = model(**inputs, output_hidden_states=True, logits_to_keep=no_logits)
        weight = lm_head_weight(self.accelerator.unwrap_model(model).get_output_embeddings())
        return outputs, outputs.hidden_states[-1][:, :-1], weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        labels = inputs.pop("labels")[:, 1:]  # (B, L-1)
        inputs["use_cache"] = False
        self.peer.train(self.model.training)
        outputs, h_s, w_s = self._hidden_and_head(model, inputs)
        _, h_p, w_p = self._hidden_and_head(self.peer, inputs)
        kw = dict(
            beta=0.0, temperature=self.kd_temperature, chunk_size=self.kd_chunk_size
        )  # forward KL(other || self)
        ce_s, kd_s = chunked_ce_and_kd_loss(
            h_s, w_s, labels, teacher_hidden=h_p.detach(), teacher_weight=w_p.detach(), **kw
        )
        ce_p, kd_p = chunked_ce_and_kd_loss(
            h_p, w_p, labels, teacher_hidden=h_s.detach(), teacher_weight=w_s.detach(), **kw
        )
        w = self.mutual_weight
        loss = (ce_s + w * kd_s) + (ce_p + w * kd_p)  # disjoint parameters: each model gets its own gradient

        n_valid = (labels != -100).sum()  # SFTTrainer's reduction over the accumulated batch
        if num_items_in_batch is not None:
            loss = loss * n_valid / torch.as_tensor(num_items_in_batch).clamp(min=1)

        metrics = self._metrics[mode]
        for key, value in (("ce", ce_s), ("kd", kd_s), ("peer_ce", ce_p), ("peer_kd", kd_p)):
            metrics[key].append(value.detach().item())
        return (loss, outputs) if return_outputs else loss

    def save_peer(self, out: Path, tokenizer) -> Path:
        """The peer as a standalone model (adapter merged) with the tokenizer, loadable by AutoModelForCausalLM."""
        peer = self.peer.merge_and_unload() if isinstance(self.peer, PeftModel) else self.peer
        peer.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        return out
