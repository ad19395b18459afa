"""Distillation loss fused with the student's lm_head, computed chunk by chunk over tokens.

The student's logits are `hidden @ weight.T`; the naive loss materialises them (and the teacher's)
as whole (N, V) fp32 tensors plus several more of that size saved for backward (~17 GiB at N=2048,
V=151,936). Here tokens are processed `chunk_size` at a time and the gradient is computed in the
forward pass ("grad-in-forward"): per chunk, logits -> loss and d loss / d logits in closed form ->
d hidden (and d weight) by two matmuls; the chunk's (C, V) buffers are then freed. Only grad buffers
of the inputs' sizes survive until backward, which scales them by the incoming gradient.

Teachers: an online frozen teacher given as its final hidden states + lm_head weight, or an offline
teacher given as top-k ids + log-probs (the remaining mass is one tail bucket; see `sft.losses`).
The lm_head weight gets a gradient only if it requires one (LoRA: frozen, no (V, H) buffer at all).
Masked tokens (label == ignore_index) are skipped entirely.

Math (s = student logits / T, p = softmax(s), q = teacher, L per token, grad wrt s):
  forward KL  L = sum q (log q - log p)                      dL/ds = p - q
  reverse KL  L = sum p (log p - log q)                      dL/ds = p * (g - L),  g = log p - log q
  JSD(beta)   m = (1-beta) p + beta q,  L = beta KL(q||m) + (1-beta) KL(p||m)
              dL/dp = (1-beta) log(p/m)                      dL/ds = p * (g - <p, g>),  g = (1-beta) log(p/m)
Equality with `sft.losses` (autograd on the full logits) is checked in tests/sft/test_chunked_kd.py.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sft.losses import token_divergence, topk_teacher_logprobs

# 256 tokens x 151,936 vocab x 4 bytes = 156 MB per (C, V) fp32 buffer; the JSD chunk needs ~4 of them.
DEFAULT_CHUNK_SIZE = 256

# A term maps (chunk logits (C, V) fp32, chunk row ids (C,)) -> (weighted loss sum (), d loss / d logits (C, V)).
ChunkTerm = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def chunked_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    teacher_hidden: torch.Tensor | None = None,
    teacher_weight: torch.Tensor | None = None,
    topk_ids: torch.Tensor | None = None,
    topk_logprobs: torch.Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    token_weights: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """T² * mean over valid tokens of JSD(beta) between student and teacher, lm_head fused, chunked.

    Equals `sft.losses.generalized_jsd(hidden @ weight.T, teacher_hidden @ teacher_weight.T, labels, ...)`
    for an online teacher, or `sft.losses.topk_kd_loss(hidden @ weight.T, topk_ids, topk_logprobs,
    labels, ...)` for an offline one, in value and gradients, without the (N, V) logits.

    Args:
        hidden: (..., H) student final hidden states (already shifted to align with labels).
        weight: (V, H) student lm_head weight; a gradient is accumulated only if it requires grad.
        labels: (...,) next-token labels, `ignore_index` where the token does not count.
        teacher_hidden: (..., Ht) online teacher's final hidden states (constant, no grad).
        teacher_weight: (V, Ht) online teacher's lm_head weight (constant).
        topk_ids: (..., K) int offline teacher's top-k ids, distinct per token.
        topk_logprobs: (..., K) their log-probs (e.g. fp16).
        beta: 0 forward KL, 1 reverse KL, else generalized JSD (see `sft.losses.token_divergence`).
        temperature: T; the loss is multiplied by T².
        token_weights: optional (...,) per-token multiplier of the loss (e.g. confidence-weighted alpha).
        chunk_size: tokens per chunk; peak extra memory is a few (chunk_size, V) fp32 buffers.

    Returns:
        scalar fp32 loss, differentiable wrt `hidden` (and `weight` if it requires grad).
    """
    return _fused_losses(
        hidden, weight, labels, teacher_hidden=teacher_hidden, teacher_weight=teacher_weight,
        topk_ids=topk_ids, topk_logprobs=topk_logprobs, beta=beta, temperature=temperature,
        token_weights=token_weights, ignore_index=ignore_index, chunk_size=chunk_size, with_ce=False,
    )[0]  # fmt: skip


def chunked_ce_and_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ce_token_weights: torch.Tensor | None = None,
    **kd_kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ce, kd) from one pass over the chunks, so a trainer never needs the full student logits.

    `ce` is the mean next-token cross-entropy over valid tokens (= F.cross_entropy(hidden @ weight.T,
    labels)), each token multiplied by `ce_token_weights` (...,) when given (the count is unchanged); `kd` is `chunked_kd_loss(hidden, weight, labels, **kd_kwargs)`. Their gradients are kept
    apart until backward, so mix them visibly afterwards: `loss = mix_losses(ce, kd, alpha)`. The cost
    over `chunked_kd_loss`: one more (C, V) pass and matmul per chunk, and a second weight-grad buffer.
    """
    ce, kd = _fused_losses(
        hidden, weight, labels, with_ce=True, ce_token_weights=ce_token_weights, **kd_kwargs
    )
    return ce, kd


def _fused_losses(
    hidden, weight, labels, *, teacher_hidden=None, teacher_weight=None, topk_ids=None,
    topk_logprobs=None, beta=0.5, temperature=1.0, token_weights=None, ignore_index=-100,
    chunk_size=DEFAULT_CHUNK_SIZE, with_ce, ce_token_weights=None,
):  # fmt: skip
    online = teacher_hidden is not None and teacher_weight is not None
    offline = topk_ids is not None and topk_logprobs is not None
    assert online != offline, "give either teacher_hidden + teacher_weight or topk_ids + topk_logprobs"
    assert 0.0 <= beta <= 1.0, f"beta must be in [0, 1], got {beta}"
    assert temperature > 0, f"temperature must be > 0, got {temperature}"
    assert chunk_size > 0, f"chunk_size must be > 0, got {chunk_size}"
    h_dim = hidden.shape[-1]
    assert weight.shape[1] == h_dim, f"weight {tuple(weight.shape)} does not match hidden size {h_dim}"
    labels = labels.reshape(-1)  # (N,)
    assert labels.numel() * h_dim == hidden.numel(), "labels must have the hidden states' leading shape"

    valid = labels != ignore_index
    rows = valid.nonzero().squeeze(1)  # (n,) only these tokens are computed
    n_valid = max(rows.numel(), 1)
    kd_row_weight = torch.full((labels.numel(),), temperature**2 / n_valid, device=labels.device)
    if token_weights is not None:
        kd_row_weight = kd_row_weight * token_weights.reshape(-1).float()

    if online:
        t_hidden = teacher_hidden.reshape(-1, teacher_hidden.shape[-1])

        def kd_term(logits, idx):
            teacher_logits = (t_hidden[idx] @ teacher_weight.T).float()
            return _full_vocab_kd(logits, teacher_logits, kd_row_weight[idx], beta, temperature)

    else:
        ids = topk_ids.reshape(-1, topk_ids.shape[-1])
        lps = topk_logprobs.reshape(-1, topk_logprobs.shape[-1])

        def kd_term(logits, idx):
            return _topk_kd(logits, ids[idx].long(), lps[idx], kd_row_weight[idx], beta, temperature)

    terms = [kd_term]
    if with_ce:
        ce_row_weight = torch.full((labels.numel(),), 1.0 / n_valid, device=labels.device)
        if ce_token_weights is not None:
            ce_row_weight = ce_row_weight * ce_token_weights.reshape(-1).float()

        def ce_term(logits, idx):
            return _cross_entropy(logits, labels[idx], ce_row_weight[idx])

        terms = [ce_term, kd_term]  # the last term may overwrite the logits in place
    return _FusedLinearLosses.apply(hidden, weight, rows, terms, chunk_size)


class _FusedLinearLosses(torch.autograd.Function):
    """Scalar losses of `hidden @ weight.T` whose gradients are computed chunk by chunk in forward.

    forward(hidden (..., H), weight (V, H), rows (n,) token ids to compute, terms, chunk_size)
    returns one scalar per term; backward scales each term's stored gradients by its grad_output.
    """

    @staticmethod
    def forward(ctx, hidden, weight, rows, terms: list[ChunkTerm], chunk_size: int):
        flat = hidden.reshape(-1, hidden.shape[-1])  # (N, H)
        want_weight_grad = ctx.needs_input_grad[1]
        losses = [torch.zeros((), dtype=torch.float32, device=hidden.device) for _ in terms]
        grad_hidden = [torch.zeros(flat.shape, dtype=torch.float32, device=flat.device) for _ in terms]
        grad_weight = [
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_weight_grad else None
            for _ in terms
        ]
        for idx in rows.split(chunk_size):
            h = flat[idx]  # (C, H)
            logits = (h @ weight.T).float()  # (C, V)
            for k, term in enumerate(terms):
                loss, grad_logits = term(logits, idx)
                losses[k] += loss
                grad_logits = grad_logits.to(weight.dtype)
                grad_hidden[k].index_copy_(0, idx, (grad_logits @ weight).float())
                if want_weight_grad:
                    grad_weight[k].addmm_(grad_logits.T.float(), h.float())
                del grad_logits
            del logits
        ctx.save_for_backward(*grad_hidden, *[g for g in grad_weight if g is not None])
        ctx.meta = (hidden.shape, hidden.dtype, weight.dtype, len(terms), want_weight_grad)
        return tuple(losses)

    @staticmethod
    def backward(ctx, *grad_outputs):
        shape, h_dtype, w_dtype, n_terms, want_weight_grad = ctx.meta
        saved = ctx.saved_tensors
        grad_hidden = _weighted_sum(grad_outputs, saved[:n_terms])
        grad_weight = _weighted_sum(grad_outputs, saved[n_terms:]).to(w_dtype) if want_weight_grad else None
        return grad_hidden.reshape(shape).to(h_dtype), grad_weight, None, None, None


def _weighted_sum(scales, tensors):
    """sum(scale * tensor), allocating at most one new tensor (the (V, H) weight grads are large).

    With one term and scale 1 the stored buffer itself is returned: backward must run once per forward.
    """
    if len(tensors) == 1 and bool(scales[0] == 1):
        return tensors[0]
    out = torch.zeros_like(tensors[0])
    for scale, tensor in zip(scales, tensors, strict=True):
        out.add_(tensor, alpha=scale.item())
    return out


def _log_softmax_(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """In place: x (C, V) <- log_softmax(x / temperature) along the last dim."""
    if temperature != 1.0:
        x.div_(temperature)
    return x.sub_(torch.logsumexp(x, dim=-1, keepdim=True))


def _full_vocab_kd(student, teacher, row_weight, beta, temperature):
    """Weighted JSD(beta) sum over a chunk and its gradient wrt the raw student logits.

    student, teacher: (C, V) fp32 raw logits, both overwritten. row_weight: (C,) (includes T² / n).
    Returns (loss (), grad (C, V)); peak is four (C, V) buffers.
    """
    logp = _log_softmax_(student, temperature)
    logq = _log_softmax_(teacher, temperature)
    if beta == 0.0:  # forward KL: L = sum q (log q - log p), dL/ds = p - q
        q = logq.exp()
        per_token = logq.sub_(logp).mul_(q).sum(-1)
        grad = logp.exp_().sub_(q)
    elif beta == 1.0:  # reverse KL: L = sum p (log p - log q), dL/ds = p (g - L)
        g = logq.neg_().add_(logp)  # log p - log q
        p = logp.exp_()
        per_token = (p * g).sum(-1)
        grad = g.sub_(per_token[:, None]).mul_(p)
    else:  # JSD(beta): dL/ds = p (g - <p, g>), g = (1 - beta) log(p / m)
        log_m = logp + math.log1p(-beta)
        torch.logaddexp(log_m, logq + math.log(beta), out=log_m)  # log of the mixture
        q = logq.exp()
        teacher_kl = logq.sub_(log_m).mul_(q).sum(-1)  # KL(q || m)
        del q
        log_p_over_m = torch.sub(logp, log_m, out=logq)  # reuses the teacher's buffer
        del log_m
        p = logp.exp_()
        student_kl = (p * log_p_over_m).sum(-1)  # KL(p || m)
        per_token = beta * teacher_kl + (1 - beta) * student_kl
        grad = log_p_over_m.sub_(student_kl[:, None]).mul_(p).mul_(1 - beta)
    # d/d raw logits = d/ds / T, times each row's weight
    grad.mul_((row_weight / temperature)[:, None])
    return (per_token * row_weight).sum(), grad


def _topk_kd(student, topk_ids, topk_logprobs, row_weight, beta, temperature):
    """Weighted top-k-with-tail JSD(beta) sum over a chunk and its gradient wrt the raw student logits.

    student: (C, V) fp32 raw logits, overwritten. topk_ids: (C, K) int64. topk_logprobs: (C, K).
    The K+1-bucket loss is differentiated by autograd (small); the buckets' dependence on the logits
    in closed form: with r_j = p_j / p_tail for non-top-k j and G = dL/d bucket,
      dL/dz_j = G_k - p_k * sum(G)            for j = id_k
      dL/dz_j = r_j * (G_tail - p_tail * sum(G)) otherwise.
    """
    logp = _log_softmax_(student, 1.0)
    top = logp.gather(1, topk_ids)  # (C, K)
    log_tail = logp.scatter_(1, topk_ids, float("-inf")).logsumexp(-1, keepdim=True)  # (C, 1)
    buckets = torch.cat([top, log_tail], dim=-1).requires_grad_()  # (C, K+1)
    teacher = F.log_softmax(topk_teacher_logprobs(topk_logprobs) / temperature, dim=-1)
    with torch.enable_grad():
        student_t = F.log_softmax(buckets / temperature, dim=-1)
        loss = (token_divergence(student_t, teacher, beta) * row_weight).sum()
        (g,) = torch.autograd.grad(loss, buckets)
    g_sum = g.sum(-1, keepdim=True)
    g_top, g_tail = g[:, :-1], g[:, -1:]
    grad = logp.sub_(log_tail).exp_()  # r_j, zero at the top-k ids
    grad.mul_(g_tail - log_tail.exp() * g_sum)
    grad.scatter_(1, topk_ids, g_top - top.exp() * g_sum)
    return loss.detach(), grad


def _cross_entropy(logits, targets, row_weight):
    """Weighted next-token CE sum over a chunk and its gradient; does not modify `logits` (C, V).

    row_weight: (C,) per-token multiplier (includes 1 / n).
    """
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # (C, 1)
    loss = ((lse.squeeze(1) - logits.gather(1, targets[:, None]).squeeze(1)) * row_weight).sum()
    grad = torch.sub(logits, lse).exp_()
    grad.scatter_add_(1, targets[:, None], torch.full_like(lse, -1.0))
    return loss, grad.mul_(row_weight[:, None])
