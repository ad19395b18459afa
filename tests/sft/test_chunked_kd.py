"""The chunked, lm_head-fused KD loss equals the naive full-logit one (value and gradients)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sft.chunked_kd import chunked_ce_and_kd_loss, chunked_kd_loss
from sft.losses import (
    confidence_weighted_alpha,
    generalized_jsd,
    masked_mean,
    mix_losses,
    token_divergence,
    topk_kd_loss,
)

RTOL = 1e-5


def assert_rel_close(actual, expected, rtol=RTOL):
    """Max abs error relative to the reference's largest magnitude (robust for entries near zero)."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = ((actual - expected).abs().max() / scale).item()
    assert err <= rtol, f"relative error {err:.3g} > {rtol}"


def make_case(n, hidden, vocab, teacher_hidden, k, masked_frac, seed, full_ft):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=g) / hidden**0.5 * 3).requires_grad_(full_ft)
    th = torch.randn(n, teacher_hidden, generator=g)
    tw = torch.randn(vocab, teacher_hidden, generator=g) / teacher_hidden**0.5 * 3
    labels = torch.randint(0, vocab, (n,), generator=g)
    labels[torch.rand(n, generator=g) < masked_frac] = -100
    teacher_logprobs = (th @ tw.T).log_softmax(-1)
    lps, ids = teacher_logprobs.topk(k, dim=-1)
    return h, w, th, tw, labels, ids.int(), lps.half()


def grads(loss, h, w):
    inputs = [h, w] if w.requires_grad else [h]
    return torch.autograd.grad(loss, inputs)


def check(chunked, naive, h, w):
    assert_rel_close(chunked.detach(), naive.detach())
    for got, want in zip(grads(chunked, h, w), grads(naive, h, w), strict=True):
        assert_rel_close(got, want)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    vocab=st.integers(2, 64),
    hidden=st.integers(1, 12),
    beta=st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]),
    temperature=st.sampled_from([0.7, 1.0, 2.0, 5.0]),
    chunk_size=st.integers(1, 50),
    masked_frac=st.sampled_from([0.0, 0.3, 1.0]),
    full_ft=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_online_teacher_matches_naive(
    n, vocab, hidden, beta, temperature, chunk_size, masked_frac, full_ft, seed
):
    h, w, th, tw, labels, _, _ = make_case(n, hidden, vocab, 7, 1, masked_frac, seed, full_ft)
    kw = {"beta": beta, "temperature": temperature}
    naive = generalized_jsd(h @ w.T, th @ tw.T, labels, **kw)
    chunked = chunked_kd_loss(h, w, labels, teacher_hidden=th, teacher_weight=tw, chunk_size=chunk_size, **kw)
    check(chunked, naive, h, w)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    vocab=st.integers(3, 64),
    hidden=st.integers(1, 12),
    k_frac=st.floats(0.0, 0.9),
    beta=st.sampled_from([0.0, 0.5, 1.0]),
    temperature=st.sampled_from([1.0, 2.0]),
    chunk_size=st.integers(1, 50),
    masked_frac=st.sampled_from([0.0, 0.3, 1.0]),
    full_ft=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_topk_teacher_matches_naive(
    n, vocab, hidden, k_frac, beta, temperature, chunk_size, masked_frac, full_ft, seed
):
    k = max(1, int(k_frac * (vocab - 1)))  # at least one token left for the tail
    h, w, _, _, labels, ids, lps = make_case(n, hidden, vocab, 5, k, masked_frac, seed, full_ft)
    kw = {"beta": beta, "temperature": temperature}
    naive = topk_kd_loss(h @ w.T, ids, lps, labels, **kw)
    chunked = chunked_kd_loss(h, w, labels, topk_ids=ids, topk_logprobs=lps, chunk_size=chunk_size, **kw)
    check(chunked, naive, h, w)


@pytest.mark.parametrize("full_ft", [False, True])
def test_all_masked_batch_gives_zero_and_zero_grads(full_ft):
    h, w, th, tw, labels, _, _ = make_case(6, 4, 10, 3, 2, 1.0, 0, full_ft)
    ce, kd = chunked_ce_and_kd_loss(h, w, labels, teacher_hidden=th, teacher_weight=tw)
    loss = mix_losses(ce, kd, 0.5)
    assert loss.item() == 0.0
    for g in grads(loss, h, w):
        assert (g == 0).all()


def test_batched_shapes_and_bf16_weights():
    h, w, th, tw, labels, _, _ = make_case(12, 8, 30, 6, 1, 0.2, 1, False)
    h3, labels3 = h.detach().reshape(2, 6, 8).bfloat16().requires_grad_(), labels.reshape(2, 6)
    w16 = w.detach().bfloat16()
    kd = chunked_kd_loss(
        h3, w16, labels3, teacher_hidden=th.reshape(2, 6, 6), teacher_weight=tw, chunk_size=5
    )
    (g,) = torch.autograd.grad(kd, h3)
    assert g.shape == h3.shape and g.dtype == torch.bfloat16
    naive = generalized_jsd((h3 @ w16.T), (th @ tw.T).reshape(2, 6, 30), labels3)
    torch.testing.assert_close(kd, naive, rtol=1e-4, atol=1e-6)  # same bf16 logits, fp32 math


@pytest.mark.parametrize("full_ft", [False, True])
def test_ce_and_kd_mix_matches_naive(full_ft):
    h, w, th, tw, labels, ids, lps = make_case(23, 10, 40, 6, 4, 0.3, 2, full_ft)
    alpha, kw = 0.3, {"beta": 0.5, "temperature": 2.0}
    logits = h @ w.T
    naive_ce = F.cross_entropy(logits, labels)
    naive = mix_losses(naive_ce, generalized_jsd(logits, th @ tw.T, labels, **kw), alpha)
    ce, kd = chunked_ce_and_kd_loss(h, w, labels, teacher_hidden=th, teacher_weight=tw, chunk_size=6, **kw)
    assert_rel_close(ce.detach(), naive_ce.detach())
    check(mix_losses(ce, kd, alpha), naive, h, w)
    # alpha = 0: plain SFT loss and its gradient
    ce, kd = chunked_ce_and_kd_loss(h, w, labels, topk_ids=ids, topk_logprobs=lps, chunk_size=6)
    check(mix_losses(ce, kd, 0.0), F.cross_entropy(h @ w.T, labels), h, w)


def test_token_weights_match_naive():
    h, w, _, _, labels, ids, lps = make_case(17, 6, 25, 4, 3, 0.2, 3, True)
    weights = torch.rand(17, generator=torch.Generator().manual_seed(4))
    naive = topk_kd_loss(h @ w.T, ids, lps, labels, beta=0.5, token_weights=weights)
    chunked = chunked_kd_loss(h, w, labels, topk_ids=ids, topk_logprobs=lps, beta=0.5, token_weights=weights)
    check(chunked, naive, h, w)


def test_per_token_alpha_mix_matches_naive():
    """Confidence-weighted alpha: mean_t[(1 - a_t) ce_t + a_t kd_t] via ce_token_weights + token_weights."""
    h, w, th, tw, labels, _, _ = make_case(19, 7, 30, 5, 1, 0.3, 6, True)
    teacher_logits = th @ tw.T
    alpha_t = confidence_weighted_alpha(teacher_logits.log_softmax(-1), 0.7)  # (N,)
    ce_t = F.cross_entropy(h @ w.T, labels, reduction="none")
    per_token_kd = token_divergence(F.log_softmax(h @ w.T, -1), F.log_softmax(teacher_logits, -1), 0.0)
    naive = masked_mean(mix_losses(ce_t, per_token_kd, alpha_t), labels)
    ce, kd = chunked_ce_and_kd_loss(
        h, w, labels, teacher_hidden=th, teacher_weight=tw, beta=0.0, chunk_size=4,
        ce_token_weights=1 - alpha_t, token_weights=alpha_t,
    )  # fmt: skip
    check(ce + kd, naive, h, w)


def test_frozen_lm_head_gets_no_grad_and_lora_style_graph_works():
    _, w, th, tw, labels, _, _ = make_case(9, 5, 20, 4, 1, 0.0, 5, False)
    x = torch.randn(9, 5)
    adapter = torch.nn.Linear(5, 5)  # stands in for trainable layers below a frozen lm_head
    kd = chunked_kd_loss(adapter(x), w, labels, teacher_hidden=th, teacher_weight=tw)
    kd.backward()
    assert w.grad is None
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0


def test_teacher_must_be_given_exactly_once():
    h, w, th, tw, labels, ids, lps = make_case(3, 4, 8, 3, 2, 0.0, 6, False)
    with pytest.raises(AssertionError, match="either"):
        chunked_kd_loss(h, w, labels)
    with pytest.raises(AssertionError, match="either"):
        chunked_kd_loss(h, w, labels, teacher_hidden=th, teacher_weight=tw, topk_ids=ids, topk_logprobs=lps)


@pytest.mark.slow
def test_bench_runs_at_tiny_size(capsys):
    """bench/kl_loss.py end to end (subprocess per method): ends with the JSON summary line."""
    import json
    import runpy

    bench = runpy.run_path("bench/kl_loss.py")
    bench["main"](["--tokens", "16", "--vocab", "64", "--hidden", "8", "--chunk-size", "5"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "memory_ratio_naive_over_chunked",
        "memory_ratio_liger_over_chunked",
        "time_ratio_chunked_over_naive",
    ):
        assert key in summary
    assert summary["max_rel_grad_err"] < 1e-5
