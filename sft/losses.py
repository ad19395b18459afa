"""Token-level distillation losses as pure functions of tensors.

Conventions shared by every function here:
- the last dim of logits/log-probs is the vocabulary (or the K+1 top-k buckets), any leading dims
  are tokens (e.g. (B, T, V) with labels (B, T), or flattened (N, V) with labels (N,));
- `labels == ignore_index` (-100) marks tokens that do not count; the loss is the mean over the
  remaining tokens, and an all-masked batch gives 0 with a valid (zero) gradient, never NaN;
- math runs in fp32 whatever the input dtype;
- `temperature` T divides both distributions' logits and the result is multiplied by T², so the
  gradient scale stays comparable across temperatures (Hinton et al., 2015);
- `beta` picks the divergence as in TRL's GKD: 0 = forward KL(teacher || student), 1 = reverse
  KL(student || teacher), in between the generalized JSD with mixture (1 - beta) * student + beta * teacher.

Labels must already be aligned with the positions whose next-token distribution is scored (shift
once, outside). The chunked, lm_head-fused version of these losses lives in `sft/chunked_kd.py`.
"""

import math

import torch
import torch.nn.functional as F


def token_divergence(
    student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token generalized JSD between two normalised log-distributions.

    Args:
        student_logprobs: (..., V) fp32 log-probabilities of the student.
        teacher_logprobs: (..., V) fp32 log-probabilities of the teacher.
        beta: 0 = forward KL(teacher || student), 1 = reverse KL(student || teacher), else
            beta * KL(teacher || m) + (1 - beta) * KL(student || m) with m = (1 - beta) * student + beta * teacher.

    Returns:
        (...,) divergence per token (summed over the last dim).
    """
    assert 0.0 <= beta <= 1.0, f"beta must be in [0, 1], got {beta}"
    if beta == 0.0:
        return _kl(teacher_logprobs, student_logprobs)
    if beta == 1.0:
        return _kl(student_logprobs, teacher_logprobs)
    mixture = torch.logaddexp(student_logprobs + math.log1p(-beta), teacher_logprobs + math.log(beta))
    return beta * _kl(teacher_logprobs, mixture) + (1 - beta) * _kl(student_logprobs, mixture)


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dim, from log-probabilities: (..., V) -> (...,)."""
    return (logp.exp() * (logp - logq)).sum(-1)


def masked_mean(
    per_token: torch.Tensor,
    labels: torch.Tensor | None,
    ignore_index: int = -100,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of `per_token` (...,) over tokens whose label is not `ignore_index`.

    `token_weights` (...,) multiplies each token's value (e.g. a per-token alpha) but not the count.
    All tokens masked -> 0 (divides by max(count, 1)), keeping a graph so `.backward()` still works.
    """
    if token_weights is not None:
        per_token = per_token * token_weights
    if labels is None:
        return per_token.sum() / max(per_token.numel(), 1)
    valid = labels != ignore_index
    return torch.where(valid, per_token, 0.0).sum() / valid.sum().clamp_min(1)


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """T² * mean over valid tokens of the generalized JSD(beta) at temperature T.

    Args:
        student_logits: (..., V) student logits.
        teacher_logits: (..., V) teacher logits (treated as constants by the caller: detach them).
        labels: (...,) with `ignore_index` for tokens that do not count; None = all count.
        token_weights: optional (...,) per-token multiplier.

    Returns:
        scalar fp32 loss.
    """
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = token_divergence(student, teacher, beta)
    return temperature**2 * masked_mean(per_token, labels, ignore_index, token_weights)


def forward_kl(student_logits, teacher_logits, labels=None, **kwargs) -> torch.Tensor:
    """T² * KL(teacher || student) (mean-seeking, classic KD). Same arguments as `generalized_jsd`."""
    return generalized_jsd(student_logits, teacher_logits, labels, beta=0.0, **kwargs)


def reverse_kl(student_logits, teacher_logits, labels=None, **kwargs) -> torch.Tensor:
    """T² * KL(student || teacher) (mode-seeking). Same arguments as `generalized_jsd`."""
    return generalized_jsd(student_logits, teacher_logits, labels, beta=1.0, **kwargs)


# --- Offline teacher: top-k log-probs plus one "tail" bucket holding the remaining mass -------------


def topk_student_logprobs(student_logits: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
    """Student log-probs collapsed onto the teacher's top-k buckets plus one tail bucket.

    Args:
        student_logits: (..., V) logits.
        topk_ids: (..., K) int ids of the teacher's top-k tokens (distinct within a token).

    Returns:
        (..., K+1) fp32: log p(id_k) for each k, then log of the summed probability of every other
        token (a logsumexp over the non-top-k entries, not 1 - sum, so it stays exact when small).
    """
    logp = F.log_softmax(student_logits.float(), dim=-1)
    ids = topk_ids.long()
    top = logp.gather(-1, ids)
    tail = logp.scatter(-1, ids, float("-inf")).logsumexp(-1, keepdim=True)
    return torch.cat([top, tail], dim=-1)


def topk_teacher_logprobs(topk_logprobs: torch.Tensor) -> torch.Tensor:
    """Teacher top-k log-probs (..., K) (e.g. fp16 from trace_gen) -> (..., K+1) fp32 with the tail.

    The tail bucket holds 1 - sum(exp(topk)); stored log-probs are rounded, so the sum can slightly
    exceed 1: the tail is clamped to the smallest positive float and the K+1 buckets renormalised.
    """
    lp = topk_logprobs.float()
    tail = (1.0 - lp.exp().sum(-1, keepdim=True)).clamp_min(torch.finfo(torch.float32).tiny).log()
    return F.log_softmax(torch.cat([lp, tail], dim=-1), dim=-1)


def topk_kd_loss(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    beta: float = 0.0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """T² * mean generalized JSD(beta) between student and an offline top-k teacher, with tail mass.

    Both sides are compared as (K+1)-bucket distributions (top-k tokens + everything else). The
    temperature is applied to those buckets on both sides (log-probs / T, renormalised): the teacher's
    tail is one number, so its tokens cannot be tempered individually, and tempering the student the
    same way keeps the two comparable (divergence 0 iff the buckets match). At T = 1 this is exact.

    Args:
        student_logits: (..., V) student logits.
        topk_ids: (..., K) int teacher top-k ids.
        topk_logprobs: (..., K) teacher log-probs of those ids (any float dtype).
        labels, token_weights: as in `generalized_jsd`.
    """
    student = F.log_softmax(topk_student_logprobs(student_logits, topk_ids) / temperature, dim=-1)
    teacher = F.log_softmax(topk_teacher_logprobs(topk_logprobs) / temperature, dim=-1)
    per_token = token_divergence(student, teacher, beta)
    return temperature**2 * masked_mean(per_token, labels, ignore_index, token_weights)


# --- Mixing and schedules ---------------------------------------------------------------------------


def mix_losses(ce, kd, alpha):
    """The hard/soft mix; scalars or per-token tensors (then reduce with `masked_mean` afterwards)."""
    return (1 - alpha) * ce + alpha * kd


def temperature_at(step: int, total_steps: int, start: float = 5.0, end: float = 1.0) -> float:
    """Temperature annealed linearly from `start` (step 0) to `end` (step >= total_steps)."""
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return start + (end - start) * frac


def confidence_weighted_alpha(teacher_logprobs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-token alpha = alpha * teacher's top-1 probability: more hard-label weight where it is unsure.

    Args:
        teacher_logprobs: (..., V) full log-probs or (..., K) top-k log-probs of the teacher.

    Returns:
        (...,) fp32 per-token alpha in [0, alpha], to pass to `mix_losses` or as `token_weights`.
    """
    return alpha * teacher_logprobs.float().amax(-1).exp().clamp(max=1.0)
