"""SFTTrainer with token-level and feature distillation terms.

    loss = (1 - kd_alpha) * ce + kd_alpha * kd + w_hidden * hidden + w_attn * attn + w_rel * rel

(w_ce = 1 - kd_alpha, w_kd = kd_alpha). Feature terms (sft/feature_losses.py) need an online teacher; each
can start at a given global step (before it, it is not computed and logs 0). The teacher runs once per
batch and returns only what the active terms need: its final hidden states (logit KD), all hidden states
(hidden, rel), attention probabilities of the mapped layers (attn, captured by sft.attention_maps).
Feature positions are those whose next token is trained (labels[:, 1:] != -100).

Only `compute_loss` changes. The student runs through its wrappers (DDP, PEFT) with
`output_hidden_states=True` and an empty `logits_to_keep`, so its [T, V] logits are never built; the
final hidden states then go, with the lm_head weight (LoRA delta merged in, differentiably, when the
head carries an adapter), through `sft.chunked_kd.chunked_ce_and_kd_loss`, which computes CE and KD
chunk by chunk with the gradient taken in the forward pass.

Teacher sources:
  offline  `topk_ids` / `topk_logprobs` (B, L, K) from `sft.kd_data.OfflineKDCollator` (tail mass kept);
  online   a frozen teacher model (bf16, or bitsandbytes 4-bit) whose backbone runs under no_grad; its
           final hidden states + lm_head weight are fused into the loss the same way;
  several  online teachers: mixed (kd = sum_i w_i kd_i / sum_i w_i) or routed per row by a (B,)
           `teacher_index` in the batch (kd, ce = token-weighted means over each teacher's rows).

FitNets projections (kd_hidden_loss mse, widths differ) are owned by the trainer: one Linear per layer
pair, in the optimizer, saved as `checkpoint-N/kd_projections.safetensors` and restored on resume; the
exported student never contains them.

Usage (through the CLI):
    python -m sft run --config configs/sft/r1_distill_qwen2.5_1.5b_kd_offline.yaml
"""

import os
from contextlib import nullcontext

import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import SFTTrainer

from sft.attention_maps import AttentionCapture
from sft.chunked_kd import DEFAULT_CHUNK_SIZE, chunked_ce_and_kd_loss, chunked_kd_loss
from sft.feature_losses import (
    attention_map_loss,
    hidden_cosine_loss,
    hidden_mse_loss,
    make_projection,
    pooled,
    rkd_angle_loss,
    rkd_distance_loss,
)
from sft.kd_data import TEACHER_INDEX, TeacherIndexCollator
from sft.losses import confidence_weighted_alpha, temperature_at

PROJECTIONS_FILE = "kd_projections.safetensors"


def check_kd_vocab(student_vocab: int, teacher_vocab: int, teacher: str = "teacher") -> None:
    """Token-level KD compares distributions id by id: the two vocabularies must be the same size."""
    if student_vocab != teacher_vocab:
        raise ValueError(
            f"student and {teacher} vocabularies differ: student lm_head has {student_vocab} rows, {teacher} "
            f"has {teacher_vocab}; token-level KD needs the same tokenizer and vocabulary size"
        )


def lm_head_weight(lm_head: torch.nn.Module) -> torch.Tensor:
    """The (V, H) weight the logits are computed with; a peft LoRA head adds its delta (with grad)."""
    if isinstance(lm_head, LoraLayer) and not lm_head.merged and not lm_head.disable_adapters:
        base = lm_head.get_base_layer().weight
        return base + sum(lm_head.get_delta_weight(name) for name in lm_head.active_adapters)
    weight = lm_head.weight
    return weight.full_tensor() if isinstance(weight, DTensor) else weight  # FSDP2 shards it


@torch.no_grad()
def teacher_top1_logprob(t_hidden: torch.Tensor, t_weight: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(..., Ht) hidden, (V, Ht) weight -> (...,) log-prob of the teacher's most likely token, chunked."""
    flat = t_hidden.reshape(-1, t_hidden.shape[-1])
    out = [(h @ t_weight.T).float().log_softmax(-1).amax(-1) for h in flat.split(chunk_size)]
    return torch.cat(out).reshape(t_hidden.shape[:-1])


class DistillSFTTrainer(SFTTrainer):
    """SFTTrainer + KD terms. `teacher_model`/`teachers` (online) or batches with `topk_ids`/`topk_logprobs` (offline).

    Args (besides SFTTrainer's):
        kd_alpha: weight of the KD term (0 = CE only, KD still logged); CE gets 1 - kd_alpha.
        kd_beta: 0 forward KL, 1 reverse KL, else generalized JSD(beta).
        kd_temperature, kd_temperature_end: T annealed linearly over `max_steps` (end None = constant).
        kd_chunk_size: tokens per chunk of the fused loss.
        kd_confidence_weighted: per-token alpha = kd_alpha * teacher top-1 probability (one teacher).
        teacher_model: frozen online teacher (same vocabulary); None for offline top-k batches.
        teachers: several frozen online teachers {name: model} (instead of teacher_model).
        teacher_weights: one weight per teacher (mix); None with several teachers = routed by `teacher_index`.
        kd_hidden_weight, kd_hidden_loss ("cosine" | "mse"), kd_attn_weight, kd_rel_weight: feature terms.
        kd_layer_pairs: (student, teacher) 1-based layer pairs (sft.feature_losses.layer_map).
        kd_hidden_start_step, kd_attn_start_step, kd_rel_start_step: first global step of each feature term.
    """

    def __init__(
        self,
        *args,
        kd_alpha: float = 0.5,
        kd_beta: float = 0.0,
        kd_temperature: float = 1.0,
        kd_temperature_end: float | None = None,
        kd_chunk_size: int = DEFAULT_CHUNK_SIZE,
        kd_confidence_weighted: bool = False,
        teacher_model: torch.nn.Module | None = None,
        teachers: dict[str, torch.nn.Module] | None = None,
        teacher_weights: list[float] | None = None,
        kd_hidden_weight: float = 0.0,
        kd_hidden_loss: str = "cosine",
        kd_attn_weight: float = 0.0,
        kd_rel_weight: float = 0.0,
        kd_layer_pairs: list[tuple[int, int]] | None = None,
        kd_hidden_start_step: int = 0,
        kd_attn_start_step: int = 0,
        kd_rel_start_step: int = 0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.kd_alpha, self.kd_beta, self.kd_chunk_size = kd_alpha, kd_beta, kd_chunk_size
        self.kd_temperature, self.kd_temperature_end = kd_temperature, kd_temperature_end
        self.kd_confidence_weighted = kd_confidence_weighted
        assert not (teacher_model is not None and teachers), "give teacher_model or teachers, not both"
        self.teachers = dict(teachers or {})
        self.teacher = (
            teacher_model if teacher_model is not None else next(iter(self.teachers.values()), None)
        )
        self.routed = len(self.teachers) > 1 and teacher_weights is None
        self.teacher_weights = teacher_weights or [1.0] * max(len(self.teachers), 1)
        student_vocab = self.model.get_output_embeddings().weight.shape[0]
        for name, teacher in (self.teachers or {"teacher": self.teacher}).items():
            if teacher is None:
                continue
            check_kd_vocab(student_vocab, teacher.get_output_embeddings().weight.shape[0], name)
            teacher.requires_grad_(False).eval()
            if not getattr(teacher, "is_loaded_in_4bit", False):  # bnb models stay where they were loaded
                teacher.to(self.accelerator.device)
        if self.routed:
            self.data_collator = TeacherIndexCollator(self.data_collator)

        self.feature_weights = {"hidden": kd_hidden_weight, "attn": kd_attn_weight, "rel": kd_rel_weight}
        self.feature_start = {
            "hidden": kd_hidden_start_step,
            "attn": kd_attn_start_step,
            "rel": kd_rel_start_step,
        }
        self.kd_hidden_loss, self.kd_layer_pairs = kd_hidden_loss, list(kd_layer_pairs or [])
        if any(self.feature_weights.values()):
            assert self.teacher is not None and len(self.teachers) <= 1, (
                "feature terms need one online teacher"
            )
        if (kd_hidden_weight > 0 or kd_attn_weight > 0) and not self.kd_layer_pairs:
            raise ValueError("kd_hidden_weight / kd_attn_weight need kd_layer_pairs")
        self._capture = None  # the student's AttentionCapture during a training step
        self.kd_projections = None  # FitNets regressors, one per layer pair, when the widths differ
        s_width = self.model.config.get_text_config().hidden_size
        if kd_hidden_weight > 0 and kd_hidden_loss == "mse":
            t_width = self.teacher.config.get_text_config().hidden_size
            if s_width != t_width:
                projections = [make_projection(s_width, t_width) for _ in self.kd_layer_pairs]
                self.kd_projections = torch.nn.ModuleList(projections).to(self.accelerator.device)

    def _set_signature_columns_if_needed(self):
        """Routed teachers: keep `teacher_index` through Trainer's removal of unused columns."""
        super()._set_signature_columns_if_needed()
        if self.routed and TEACHER_INDEX not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TEACHER_INDEX]

    def create_optimizer(self, model=None):
        """Trainer's optimizer, plus a param group for the FitNets projections (no weight decay)."""
        optimizer = super().create_optimizer(model)
        if self.kd_projections is not None:
            known = {id(p) for group in optimizer.param_groups for p in group["params"]}
            new = [p for p in self.kd_projections.parameters() if id(p) not in known]
            if new:
                optimizer.add_param_group({"params": new, "weight_decay": 0.0})
        return optimizer

    def _save_checkpoint(self, model, trial):
        """The projections first, then Trainer's files (its trainer_state.json, written last, marks it whole)."""
        if self.kd_projections is not None and self.is_world_process_zero():
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            os.makedirs(folder, exist_ok=True)
            state = {k: v.detach().contiguous().cpu() for k, v in self.kd_projections.state_dict().items()}
            save_file(state, os.path.join(folder, PROJECTIONS_FILE))
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, PROJECTIONS_FILE)
        if self.kd_projections is not None:
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} missing: the checkpoint was saved without the FitNets projections"
                )
            self.kd_projections.load_state_dict(load_file(path, device=str(self.accelerator.device)))

    def kd_temperature_now(self) -> float:
        if self.kd_temperature_end is None:
            return self.kd_temperature
        return temperature_at(
            self.state.global_step, self.state.max_steps, self.kd_temperature, self.kd_temperature_end
        )

    def active_features(self) -> dict[str, float]:
        """{term: weight} of the feature terms switched on (weight > 0) and past their start step now."""
        step = self.state.global_step
        return {k: w for k, w in self.feature_weights.items() if w > 0 and step >= self.feature_start[k]}

    def _student_capture(self, student) -> AttentionCapture | None:
        """Attention capture of the student's mapped layers while the attention term is active, else None."""
        if "attn" not in self.active_features():
            return None
        return AttentionCapture(student, [s for s, _ in self.kd_layer_pairs])

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Super's step with the student's attention hooks on through backward (gradient checkpointing
        recomputes there), then the projections' gradients averaged over processes as DDP does the student's."""
        capture = self._student_capture(self.accelerator.unwrap_model(model))
        with capture or nullcontext():
            self._capture = capture
            try:
                loss = super().training_step(model, inputs, num_items_in_batch)
            finally:
                self._capture = None
        if self.kd_projections is not None and self.accelerator.num_processes > 1:  # not wrapped by DDP/FSDP
            for p in self.kd_projections.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)  # sum, then mean: every micro-step keeps ranks equal
                    p.grad /= self.accelerator.num_processes
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        labels = inputs.pop("labels")[:, 1:]  # (B, L-1) next-token labels
        topk_ids, topk_logprobs = inputs.pop("topk_ids", None), inputs.pop("topk_logprobs", None)
        teacher_index = inputs.pop(TEACHER_INDEX, None)  # (B,) routed teachers
        inputs["use_cache"] = False
        active = self.active_features()
        t_layers = [t for _, t in self.kd_layer_pairs] if "attn" in active else []
        no_logits = torch.empty(0, dtype=torch.long, device=labels.device)
        student = self.accelerator.unwrap_model(model)
        # training_step holds the student's capture open through backward; evaluation opens its own here
        s_attn = self._capture or self._student_capture(student)
        with nullcontext() if s_attn is None or s_attn is self._capture else s_attn:
            outputs = model(**inputs, output_hidden_states=True, logits_to_keep=no_logits)
        hidden = outputs.hidden_states[-1][:, :-1]  # (B, L-1, H) after the final norm
        weight = lm_head_weight(student.get_output_embeddings())  # (V, H)
        temperature = self.kd_temperature_now()
        kd_kwargs = dict(beta=self.kd_beta, temperature=temperature, chunk_size=self.kd_chunk_size)
        metrics = self._metrics[mode]

        t_out, t_attn = None, None
        if self.teacher is not None and len(self.teachers) <= 1:
            need_states = "hidden" in active  # rel pools the final hidden state, returned anyway
            with (
                torch.no_grad(),
                AttentionCapture(self.teacher, t_layers) if t_layers else nullcontext() as t_attn,
            ):
                t_out = self.teacher.base_model(**inputs, output_hidden_states=need_states)
            t_hidden = t_out.last_hidden_state[:, :-1]  # (B, L-1, Ht)
            t_weight = self.teacher.get_output_embeddings().weight  # (V, Ht)
            kd_kwargs.update(teacher_hidden=t_hidden, teacher_weight=t_weight)
        elif self.teacher is None:
            assert topk_ids is not None, "offline KD needs batches from sft.kd_data.OfflineKDCollator"
            kd_kwargs.update(topk_ids=topk_ids[:, 1:], topk_logprobs=topk_logprobs[:, 1:])  # (B, L-1, K)

        alpha = self.kd_alpha
        if len(self.teachers) > 1:
            ce, kd = self._multi_teacher_losses(
                inputs, hidden, weight, labels, teacher_index, kd_kwargs, metrics
            )
            loss = (1 - alpha) * ce + alpha * kd
        elif self.kd_confidence_weighted:
            top1 = (
                teacher_top1_logprob(t_hidden, t_weight, self.kd_chunk_size)
                if self.teacher is not None
                else topk_logprobs[:, 1:].float().amax(-1)
            )
            alpha = confidence_weighted_alpha(top1[..., None], self.kd_alpha)  # (B, L-1) per-token alpha
            # per-token weights make the two terms mean_t[(1 - alpha_t) ce_t] and mean_t[alpha_t kd_t]
            ce, kd = chunked_ce_and_kd_loss(
                hidden, weight, labels, ce_token_weights=1 - alpha, token_weights=alpha, **kd_kwargs
            )
            loss = ce + kd  # = mean over tokens of (1 - alpha_t) * ce_t + alpha_t * kd_t
        else:
            ce, kd = chunked_ce_and_kd_loss(hidden, weight, labels, **kd_kwargs)
            loss = (1 - alpha) * ce + alpha * kd

        features = self._feature_losses(active, outputs, t_out, s_attn, t_attn, labels)
        for name, value in features.items():
            loss = loss + self.feature_weights[name] * value

        # Same reduction as SFTTrainer: a token sum over the accumulated batch, not a per-micro-batch mean
        # (the feature terms, means over this micro-batch, are weighted by its tokens the same way)
        n_valid = (labels != -100).sum()
        if num_items_in_batch is not None:
            loss = loss * n_valid / torch.as_tensor(num_items_in_batch).clamp(min=1)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes

        metrics["ce"].append(self.accelerator.gather_for_metrics(ce.detach()).mean().item())
        metrics["kd"].append(self.accelerator.gather_for_metrics(kd.detach()).mean().item())
        for name in (k for k, w in self.feature_weights.items() if w > 0):  # 0 before its start step
            value = features.get(name, torch.zeros((), device=labels.device))
            metrics[name].append(self.accelerator.gather_for_metrics(value.detach()).mean().item())
        metrics["kd_temperature"].append(temperature)
        return (loss, outputs) if return_outputs else loss

    def _feature_losses(self, active, outputs, t_out, s_attn, t_attn, labels) -> dict[str, torch.Tensor]:
        """{term: unweighted loss} of the active feature terms; positions = those whose next token is trained."""
        if not active:
            return {}
        mask = torch.zeros(labels.shape[0], labels.shape[1] + 1, dtype=torch.bool, device=labels.device)
        mask[:, :-1] = labels != -100  # (B, L)
        s_states, t_states = outputs.hidden_states, t_out.hidden_states
        out = {}
        if "hidden" in active:
            terms = []
            for k, (s, t) in enumerate(self.kd_layer_pairs):
                if self.kd_hidden_loss == "cosine":
                    terms.append(hidden_cosine_loss(s_states[s], t_states[t], mask))
                else:
                    projection = self.kd_projections[k] if self.kd_projections is not None else None
                    terms.append(hidden_mse_loss(s_states[s], t_states[t], mask, projection=projection))
            out["hidden"] = torch.stack(terms).mean()
        if "attn" in active:
            terms = [
                attention_map_loss(s_attn.probs[s], t_attn.probs[t], mask) for s, t in self.kd_layer_pairs
            ]
            out["attn"] = torch.stack(terms).mean()
        if "rel" in active:
            s_pooled, t_pooled = pooled(s_states[-1], mask), pooled(t_out.last_hidden_state, mask)  # (B, H)
            out["rel"] = rkd_distance_loss(s_pooled, t_pooled) + rkd_angle_loss(s_pooled, t_pooled)
        return out

    def _multi_teacher_losses(self, inputs, hidden, weight, labels, teacher_index, kd_kwargs, metrics):
        """(ce, kd) against several teachers, each run once: mixed by `teacher_weights`, or routed per row."""
        if self.routed:
            assert teacher_index is not None, "routed teachers need `teacher_index` in the batch"
            n_valid = (labels != -100).sum().clamp(min=1)
            ce = kd = hidden.new_zeros((), dtype=torch.float32)
            for i, (name, teacher) in enumerate(self.teachers.items()):
                rows = (teacher_index == i).nonzero().squeeze(1)  # (B_i,)
                if rows.numel() == 0:
                    continue
                sub = {k: v[rows] if torch.is_tensor(v) else v for k, v in inputs.items()}
                with torch.no_grad():
                    t_hidden = teacher.base_model(**sub).last_hidden_state[:, :-1]  # (B_i, L-1, Ht)
                t_weight = teacher.get_output_embeddings().weight
                ce_i, kd_i = chunked_ce_and_kd_loss(
                    hidden[rows],
                    weight,
                    labels[rows],
                    teacher_hidden=t_hidden,
                    teacher_weight=t_weight,
                    **kd_kwargs,
                )
                share = (labels[rows] != -100).sum() / n_valid  # token-weighted: exact means over the batch
                ce, kd = ce + share * ce_i, kd + share * kd_i
                metrics[f"kd_{name}"].append(kd_i.detach().item())
            return ce, kd
        kds, ce = [], None
        for name, teacher in self.teachers.items():
            with torch.no_grad():
                t_hidden = teacher.base_model(**inputs).last_hidden_state[:, :-1]  # (B, L-1, Ht)
            teacher_kwargs = dict(
                teacher_hidden=t_hidden, teacher_weight=teacher.get_output_embeddings().weight
            )
            if ce is None:
                ce, kd_i = chunked_ce_and_kd_loss(hidden, weight, labels, **kd_kwargs, **teacher_kwargs)
            else:
                kd_i = chunked_kd_loss(hidden, weight, labels, **kd_kwargs, **teacher_kwargs)
            kds.append(kd_i)
            metrics[f"kd_{name}"].append(kd_i.detach().item())
        total = sum(self.teacher_weights)
        kd = sum(w * kd_i for w, kd_i in zip(self.teacher_weights, kds, strict=True)) / total
        return ce, kd
