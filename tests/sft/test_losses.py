"""Unit tests for the pure KD losses in sft/losses.py (small shapes, CPU, fp64 references)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from trl.experimental.gkd import GKDTrainer

from sft.losses import (
    confidence_weighted_alpha,
    forward_kl,
    generalized_jsd,
    mix_losses,
    reverse_kl,
    temperature_at,
    token_divergence,
    topk_kd_loss,
    topk_student_logprobs,
    topk_teacher_logprobs,
)


def _logits(*shape, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def _labels(b, t, v, seed=0, masked_every=3):
    labels = torch.randint(0, v, (b, t), generator=torch.Generator().manual_seed(seed))
    labels[:, ::masked_every] = -100
    return labels


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
def test_matches_trl_generalized_jsd(beta):
    s, t, labels = _logits(2, 5, 11, seed=1), _logits(2, 5, 11, seed=2), _labels(2, 5, 11)
    ours = generalized_jsd(s, t, labels, beta=beta, temperature=1.0)
    theirs = GKDTrainer.generalized_jsd_loss(s, t, labels, beta=beta, temperature=1.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_endpoints_are_forward_and_reverse_kl():
    s, t = _logits(3, 7, seed=3).double(), _logits(3, 7, seed=4).double()
    p, q = s.softmax(-1), t.softmax(-1)
    fwd = (q * (q.log() - p.log())).sum(-1).mean()
    rev = (p * (p.log() - q.log())).sum(-1).mean()
    torch.testing.assert_close(forward_kl(s, t).double(), fwd)
    torch.testing.assert_close(reverse_kl(s, t).double(), rev)


def test_jsd_half_is_symmetric_and_bounded():
    s, t = _logits(4, 9, seed=5), _logits(4, 9, seed=6)
    a, b = generalized_jsd(s, t, beta=0.5), generalized_jsd(t, s, beta=0.5)
    torch.testing.assert_close(a, b)
    assert 0 < a < math.log(2)


@pytest.mark.parametrize("loss_fn", [forward_kl, reverse_kl, generalized_jsd])
def test_identical_distributions_give_zero(loss_fn):
    s = _logits(2, 4, 13, seed=7)
    assert loss_fn(s, s.clone()).abs() < 1e-6


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_temperature_squared_scaling(beta):
    s, t, T = _logits(2, 3, 10, seed=8), _logits(2, 3, 10, seed=9), 3.0
    labels = torch.zeros(2, 3, dtype=torch.long)  # all count; TRL then averages over tokens too
    scaled = generalized_jsd(s, t, labels, beta=beta, temperature=T)
    unscaled = GKDTrainer.generalized_jsd_loss(s, t, labels, beta=beta, temperature=T)
    torch.testing.assert_close(scaled, T**2 * unscaled, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss_fn", [forward_kl, reverse_kl, generalized_jsd])
def test_all_masked_batch_is_zero_with_zero_grad(loss_fn):
    s = _logits(2, 3, 8, seed=10).requires_grad_()
    labels = torch.full((2, 3), -100)
    loss = loss_fn(s, _logits(2, 3, 8, seed=11), labels)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(s.grad).all() and (s.grad == 0).all()


def test_masked_tokens_do_not_count():
    s, t, labels = _logits(1, 6, 8, seed=12), _logits(1, 6, 8, seed=13), _labels(1, 6, 8, masked_every=2)
    keep = labels != -100
    torch.testing.assert_close(generalized_jsd(s, t, labels), generalized_jsd(s[keep], t[keep]))


def test_bf16_inputs_are_upcast():
    s, t = _logits(3, 16, seed=14), _logits(3, 16, seed=15)
    low = generalized_jsd(s.bfloat16(), t.bfloat16())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, generalized_jsd(s.bfloat16().float(), t.bfloat16().float()))


def test_alpha_zero_is_plain_sft_and_alpha_one_is_kd():
    s, t, labels = _logits(2, 4, 12, seed=16), _logits(2, 4, 12, seed=17), _labels(2, 4, 12)
    ce = F.cross_entropy(s.reshape(-1, 12), labels.reshape(-1))
    kd = generalized_jsd(s, t, labels)
    assert mix_losses(ce, kd, 0.0) == ce
    assert mix_losses(ce, kd, 1.0) == kd
    torch.testing.assert_close(mix_losses(ce, kd, 0.25), 0.75 * ce + 0.25 * kd)


def test_temperature_schedule():
    assert temperature_at(0, 100, 5.0, 1.0) == 5.0
    assert temperature_at(50, 100, 5.0, 1.0) == 3.0
    assert temperature_at(100, 100, 5.0, 1.0) == 1.0
    assert temperature_at(500, 100, 5.0, 1.0) == 1.0
    assert temperature_at(3, 0, 5.0, 1.0) == 1.0


def test_confidence_weighted_alpha():
    sure = torch.tensor([0.0, -30.0, -30.0])  # top-1 prob ~1
    unsure = torch.log(torch.tensor([0.4, 0.3, 0.3]))
    alpha = confidence_weighted_alpha(torch.stack([sure, unsure]), 0.8)
    torch.testing.assert_close(alpha, torch.tensor([0.8, 0.32]))
    # top-k log-probs work too (the max of the top-k is the top-1)
    top2 = unsure[:2].half()
    torch.testing.assert_close(confidence_weighted_alpha(top2, 0.5), torch.tensor(0.2), rtol=1e-3, atol=0)


# --- top-k with tail mass -----------------------------------------------------------------------


def _topk_teacher(teacher_logits, k):
    logprobs, ids = teacher_logits.log_softmax(-1).topk(k, dim=-1)
    return ids.int(), logprobs


def test_topk_buckets_hold_all_the_mass():
    s, t = _logits(2, 3, 20, seed=18), _logits(2, 3, 20, seed=19)
    ids, lps = _topk_teacher(t, 4)
    torch.testing.assert_close(topk_student_logprobs(s, ids).exp().sum(-1), torch.ones(2, 3))
    teacher = topk_teacher_logprobs(lps.half())
    torch.testing.assert_close(teacher.exp().sum(-1), torch.ones(2, 3))
    tail = 1 - t.softmax(-1).topk(4, dim=-1).values.sum(-1)
    torch.testing.assert_close(teacher[..., -1].exp(), tail, rtol=2e-3, atol=1e-4)  # fp16-rounded


def test_topk_tail_saturates_without_nan():
    lps = torch.tensor([[0.0, -20.0]]).half()  # top-2 mass rounds above 1
    teacher = topk_teacher_logprobs(lps)
    assert torch.isfinite(teacher).all() and teacher[0, -1] < -80
    s = _logits(1, 6, seed=20).requires_grad_()
    loss = topk_kd_loss(s, torch.tensor([[1, 2]]), lps)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_topk_equals_full_vocab_loss_on_bucketed_distributions(beta):
    """Reference built independently in fp64: sum the probabilities outside the top-k into one bucket."""
    s, t, k = _logits(2, 3, 9, seed=21).double(), _logits(2, 3, 9, seed=22).double(), 4
    ids, lps = _topk_teacher(t, k)
    outside = torch.ones_like(s, dtype=torch.bool).scatter(-1, ids.long(), False)

    def bucket(probs):
        return torch.cat([probs.gather(-1, ids.long()), (probs * outside).sum(-1, keepdim=True)], -1)

    p, q = bucket(s.softmax(-1)), bucket(t.softmax(-1))
    expected = generalized_jsd(p.log(), q.log(), beta=beta)  # log-probs are valid logits
    torch.testing.assert_close(topk_kd_loss(s, ids, lps, beta=beta), expected.float(), rtol=1e-5, atol=1e-7)


def test_topk_temperature_squared_scaling():
    s, t, T = _logits(2, 3, 15, seed=23), _logits(2, 3, 15, seed=24), 2.0
    ids, lps = _topk_teacher(t, 5)
    student = topk_student_logprobs(s, ids)
    teacher = topk_teacher_logprobs(lps)
    unscaled = token_divergence((student / T).log_softmax(-1), (teacher / T).log_softmax(-1), 0.0).mean()
    torch.testing.assert_close(topk_kd_loss(s, ids, lps, temperature=T), T**2 * unscaled)


@settings(max_examples=25, deadline=None)
@given(
    beta=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
    temperature=st.floats(0.5, 4.0),
    seed=st.integers(0, 10_000),
)
def test_divergences_are_nonnegative(beta, temperature, seed):
    s, t = _logits(3, 17, seed=seed, scale=4.0), _logits(3, 17, seed=seed + 1, scale=4.0)
    assert generalized_jsd(s, t, beta=beta, temperature=temperature) >= -1e-6
    ids, lps = _topk_teacher(t, 3)
    assert topk_kd_loss(s, ids, lps.half(), beta=beta, temperature=temperature) >= -1e-6
