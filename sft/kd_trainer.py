"""SFTTrainer with a token-level distillation term: `loss = (1 - alpha) * ce + alpha * kd`.

Only `compute_loss` changes. The student runs through its wrappers (DDP, PEFT) with
`output_hidden_states=True` and an empty `logits_to_keep`, so its [T, V] logits are never built; the
final hidden states then go, with the lm_head weight (LoRA delta merged in, differentiably, when the
head carries an adapter), through `sft.chunked_kd.chunked_ce_and_kd_loss`, which computes CE and KD
chunk by chunk with the gradient taken in the forward pass.

Teacher sources:
  offline  `topk_ids` / `topk_logprobs` (B, L, K) from `sft.kd_data.OfflineKDCollator` (tail mass kept);
  online   a frozen teacher model (bf16, or bitsandbytes 4-bit) whose backbone runs under no_grad; its
           final hidden states + lm_head weight are fused into the loss the same way.

Usage (through the CLI):
    python -m sft run --config configs/sft/r1_distill_qwen2.5_1.5b_kd_offline.yaml
"""

import torch
from peft.tuners.lora import LoraLayer
from torch.distributed.tensor import DTensor
from trl import SFTTrainer

from sft.chunked_kd import DEFAULT_CHUNK_SIZE, chunked_ce_and_kd_loss
from sft.losses import confidence_weighted_alpha, temperature_at


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
    """SFTTrainer + KD term. `teacher_model` (online) or batches with `topk_ids`/`topk_logprobs` (offline).

    Args (besides SFTTrainer's):
        kd_alpha: weight of the KD term (0 = CE only, KD still logged).
        kd_beta: 0 forward KL, 1 reverse KL, else generalized JSD(beta).
        kd_temperature, kd_temperature_end: T annealed linearly over `max_steps` (end None = constant).
        kd_chunk_size: tokens per chunk of the fused loss.
        kd_confidence_weighted: per-token alpha = kd_alpha * teacher top-1 probability.
        teacher_model: frozen online teacher (same vocabulary); None for offline top-k batches.
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
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.kd_alpha, self.kd_beta, self.kd_chunk_size = kd_alpha, kd_beta, kd_chunk_size
        self.kd_temperature, self.kd_temperature_end = kd_temperature, kd_temperature_end
        self.kd_confidence_weighted = kd_confidence_weighted
        self.teacher = teacher_model
        if teacher_model is not None:
            student_vocab = self.model.get_output_embeddings().weight.shape[0]
            check_kd_vocab(student_vocab, teacher_model.get_output_embeddings().weight.shape[0])
            teacher_model.requires_grad_(False).eval()
            if not getattr(
                teacher_model, "is_loaded_in_4bit", False
            ):  # bnb models stay where they were loaded
                teacher_model.to(self.accelerator.device)

    def kd_temperature_now(self) -> float:
        if self.kd_temperature_end is None:
            return self.kd_temperature
        return temperature_at(
            self.state.global_step, self.state.max_steps, self.kd_temperature, self.kd_temperature_end
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        labels = inputs.pop("labels")[:, 1:]  # (B, L-1) next-token labels
        topk_ids, topk_logprobs = inputs.pop("topk_ids", None), inputs.pop("topk_logprobs", None)
        inputs["use_cache"] = False
        no_logits = torch.empty(0, dtype=torch.long, device=labels.device)
        outputs = model(**inputs, output_hidden_states=True, logits_to_keep=no_logits)
        hidden = outputs.hidden_states[-1][:, :-1]  # (B, L-1, H) after the final norm
        weight = lm_head_weight(self.accelerator.unwrap_model(model).get_output_embeddings())  # (V, H)

        if self.teacher is not None:
            with torch.no_grad():
                t_hidden = self.teacher.base_model(**inputs).last_hidden_state[:, :-1]  # (B, L-1, Ht)
            t_weight = self.teacher.get_output_embeddings().weight  # (V, Ht)
            teacher = {"teacher_hidden": t_hidden, "teacher_weight": t_weight}
        else:
            assert topk_ids is not None, "offline KD needs batches from sft.kd_data.OfflineKDCollator"
            teacher = {"topk_ids": topk_ids[:, 1:], "topk_logprobs": topk_logprobs[:, 1:]}  # (B, L-1, K)
        temperature = self.kd_temperature_now()
        kd_kwargs = dict(beta=self.kd_beta, temperature=temperature, chunk_size=self.kd_chunk_size, **teacher)

        alpha = self.kd_alpha
        if self.kd_confidence_weighted:
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

        # Same reduction as SFTTrainer: a token sum over the accumulated batch, not a per-micro-batch mean
        n_valid = (labels != -100).sum()
        if num_items_in_batch is not None:
            loss = loss * n_valid / torch.as_tensor(num_items_in_batch).clamp(min=1)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes

        metrics = self._metrics[mode]
        metrics["ce"].append(self.accelerator.gather_for_metrics(ce.detach()).mean().item())
        metrics["kd"].append(self.accelerator.gather_for_metrics(kd.detach()).mean().item())
        metrics["kd_temperature"].append(temperature)
        return (loss, outputs) if return_outputs else loss
