"""Unit tests for sft/feature_losses.py: each loss against a loop / fp64 reference, masks, layer maps."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from sft.feature_losses import (
    attention_map_loss,
    hidden_cosine_loss,
    hidden_mse_loss,
    layer_map,
    make_projection,
    pooled,
    rkd_angle_loss,
    rkd_distance_loss,
)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _probs(*shape, seed=0):
    return (_randn(*shape, seed=seed) * 2).softmax(-1)


MASK = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)  # (B=2, T=5)
VALID = [(b, t) for b in range(2) for t in range(5) if MASK[b, t]]


# --- layer_map -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "n_s", "n_t", "expected"),
    [
        ("uniform", 3, 6, [(1, 2), (2, 4), (3, 6)]),
        ("uniform", 2, 4, [(1, 2), (2, 4)]),
        ("uniform", 2, 5, [(1, 3), (2, 5)]),  # 2.5 rounds half up
        ("uniform", 4, 6, [(1, 2), (2, 3), (3, 5), (4, 6)]),  # 1.5, 3, 4.5, 6
        ("uniform", 3, 3, [(1, 1), (2, 2), (3, 3)]),
        ("uniform", 4, 2, [(1, 1), (2, 1), (3, 2), (4, 2)]),  # 0.5, 1, 1.5, 2
        ("pkd-skip", 3, 6, [(1, 2), (2, 4)]),
        ("pkd-skip", 2, 4, [(1, 2)]),
        ("pkd-skip", 3, 7, [(1, 2), (2, 4), (3, 6)]),
        ("pkd-skip", 3, 3, [(1, 1), (2, 2)]),
        ("pkd-last", 3, 6, [(1, 4), (2, 5)]),
        ("pkd-last", 2, 4, [(1, 3)]),
        ("pkd-last", 4, 12, [(1, 9), (2, 10), (3, 11)]),
    ],
)
def test_layer_map_kinds(kind, n_s, n_t, expected):
    assert layer_map(kind, n_s, n_t) == expected


def test_layer_map_list():
    assert layer_map("list", 3, 6, [1, 0, 6]) == [(1, 1), (3, 6)]
    assert layer_map("list", 2, 4, [4, 4]) == [(1, 4), (2, 4)]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("cosine", 3, 6), "unknown layer map kind"),
        (("pkd-skip", 4, 2), "n_student <= n_teacher"),
        (("pkd-last", 4, 2), "n_student <= n_teacher"),
        (("pkd-skip", 1, 6), "pairs no layer"),
        (("pkd-last", 1, 6), "pairs no layer"),
        (("uniform", 0, 6), ">= 1"),
        (("list", 3, 6), "one teacher layer per student layer"),
        (("list", 3, 6, [1, 2]), r"\(3\), got 2"),
        (("list", 3, 6, [1, 2, 7]), r"\[7\] out of range.*0\.\.6"),
        (("list", 2, 6, [-1, 2]), "out of range"),
        (("list", 2, 6, [0, 0]), "pairs no layer"),
        (("uniform", 2, 4, [1, 2]), "only read by layer map kind 'list'"),
    ],
)
def test_layer_map_bad_input(args, match):
    with pytest.raises(ValueError, match=match) as err:
        layer_map(*args)
    assert "\n" not in str(err.value)


# --- hidden-state losses ---------------------------------------------------------------------------


def test_cosine_matches_loop():
    s, t = _randn(2, 5, 8, seed=1), _randn(2, 5, 8, seed=2)
    ref = sum(1 - torch.dot(s[b, i], t[b, i]) / (s[b, i].norm() * t[b, i].norm()) for b, i in VALID) / len(
        VALID
    )
    torch.testing.assert_close(hidden_cosine_loss(s, t, MASK), ref)
    torch.testing.assert_close(hidden_cosine_loss(s, s * 3, MASK), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_mse_matches_loop_and_mse_loss():
    s, t = _randn(2, 5, 8, seed=1), _randn(2, 5, 8, seed=2)
    ref = sum(((s[b, i] - t[b, i]) ** 2).mean() for b, i in VALID) / len(VALID)
    torch.testing.assert_close(hidden_mse_loss(s, t, MASK), ref)
    torch.testing.assert_close(hidden_mse_loss(s, t, None), F.mse_loss(s, t))
    torch.testing.assert_close(hidden_mse_loss(s, t, MASK), F.mse_loss(s[MASK], t[MASK]))


def test_mse_with_projection_and_its_gradient():
    s, t = _randn(2, 5, 6, seed=1), _randn(2, 5, 10, seed=2)
    proj = make_projection(6, 10)
    assert proj.bias is None and proj.weight.shape == (10, 6)
    loss = hidden_mse_loss(s, t, MASK, projection=proj)
    ref = F.mse_loss(s[MASK] @ proj.weight.T, t[MASK])
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    s2 = _randn(2, 5, 6, seed=1).requires_grad_()
    hidden_cosine_loss(s2, t, MASK, projection=proj).backward()
    assert s2.grad[MASK].abs().sum() > 0


def test_bf16_inputs_run_in_fp32():
    s, t = _randn(2, 5, 6, seed=1), _randn(2, 5, 10, seed=2)
    proj = make_projection(6, 10)
    loss = hidden_mse_loss(s.bfloat16(), t.bfloat16(), MASK, projection=proj)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, hidden_mse_loss(s, t, MASK, projection=proj), rtol=2e-2, atol=0)


def test_width_mismatch_without_projection_raises():
    s, t = _randn(2, 5, 6), _randn(2, 5, 10)
    for loss in (hidden_mse_loss, hidden_cosine_loss):
        with pytest.raises(ValueError, match="pass a projection") as err:
            loss(s, t, MASK)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="differ in"):
        hidden_mse_loss(_randn(2, 4, 6), _randn(2, 5, 6), None)


@pytest.mark.parametrize("loss", [hidden_mse_loss, hidden_cosine_loss])
def test_masked_positions_change_nothing(loss):
    s, t = _randn(2, 5, 8, seed=1), _randn(2, 5, 8, seed=2)
    s2, t2 = s.clone(), t.clone()
    s2[~MASK] = 100.0
    t2[~MASK] = -7.0
    torch.testing.assert_close(loss(s, t, MASK), loss(s2, t2, MASK))
    assert loss(s, t, MASK) != loss(s, t, None)


@pytest.mark.parametrize("loss", [hidden_mse_loss, hidden_cosine_loss])
def test_all_masked_is_zero_with_finite_grad(loss):
    s = _randn(2, 5, 8, seed=1).requires_grad_()
    out = loss(s, _randn(2, 5, 8, seed=2), torch.zeros(2, 5, dtype=torch.long))
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() == 0


# --- attention maps --------------------------------------------------------------------------------


def _attention_ref(s, t, mask):
    """Loops: per valid (b, query), mean over heads and keys of the squared difference."""
    return sum(((s[b, :, i, :] - t[b, :, i, :]) ** 2).mean() for b, i in VALID) / len(VALID)


def test_attention_same_heads():
    s, t = _probs(2, 4, 5, 5, seed=1), _probs(2, 4, 5, 5, seed=2)
    torch.testing.assert_close(attention_map_loss(s, t, MASK), _attention_ref(s, t, MASK))
    torch.testing.assert_close(attention_map_loss(s, s, MASK), torch.tensor(0.0))


def test_attention_teacher_heads_grouped_when_divisible():
    s, t = _probs(2, 2, 5, 5, seed=1), _probs(2, 6, 5, 5, seed=2)
    grouped = torch.stack(
        [t[:, 0:3].mean(1), t[:, 3:6].mean(1)], dim=1
    )  # student head h <-> teacher 3h..3h+2
    torch.testing.assert_close(attention_map_loss(s, t, MASK), _attention_ref(s, grouped, MASK))
    torch.testing.assert_close(attention_map_loss(grouped, t, MASK), torch.tensor(0.0))


def test_attention_head_averaged_when_not_divisible():
    s, t = _probs(2, 4, 5, 5, seed=1), _probs(2, 6, 5, 5, seed=2)
    ref = _attention_ref(s.mean(1, keepdim=True), t.mean(1, keepdim=True), MASK)
    torch.testing.assert_close(attention_map_loss(s, t, MASK), ref)
    s2 = _probs(2, 4, 5, 5, seed=1)  # student has more heads than the teacher: also head-averaged
    t2 = _probs(2, 2, 5, 5, seed=2)
    ref2 = _attention_ref(s2.mean(1, keepdim=True), t2.mean(1, keepdim=True), MASK)
    torch.testing.assert_close(attention_map_loss(s2, t2, MASK), ref2)


def test_attention_masked_queries_change_nothing_and_all_masked():
    s, t = _probs(2, 2, 5, 5, seed=1), _probs(2, 4, 5, 5, seed=2)
    s2 = s.clone()  # other attention rows at the masked query positions
    for b, i in itertools.product(range(2), range(5)):
        if not MASK[b, i]:
            s2[b, :, i, :] = _probs(2, 5, seed=b * 5 + i)
    torch.testing.assert_close(attention_map_loss(s, t, MASK), attention_map_loss(s2, t, MASK))
    logits = _randn(2, 2, 5, 5, seed=3).requires_grad_()
    out = attention_map_loss(logits.softmax(-1), t, torch.zeros(2, 5, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(logits.grad).all()


def test_attention_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same batch"):
        attention_map_loss(_probs(2, 2, 5, 5), _probs(2, 2, 4, 4), None)


# --- pooling and relational losses -----------------------------------------------------------------


def test_pooled():
    h = _randn(2, 5, 3, seed=4)
    expected = torch.stack([h[b][MASK[b]].mean(0) for b in range(2)])
    torch.testing.assert_close(pooled(h, MASK), expected)
    empty = MASK.clone()
    empty[1] = False
    out = pooled(h, empty)
    assert torch.equal(out[1], torch.zeros(3)) and torch.isfinite(out).all()
    torch.testing.assert_close(pooled(h, None), h.mean(1))


def _huber(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def _rkd_d_ref(s, t):
    s, t = s.double(), t.double()
    pairs = list(itertools.combinations(range(len(s)), 2))
    ds = [torch.dist(s[i], s[j]) for i, j in pairs]
    dt = [torch.dist(t[i], t[j]) for i, j in pairs]
    ms, mt = sum(ds) / len(ds), sum(dt) / len(dt)
    return sum(_huber(a / ms, b / mt) for a, b in zip(ds, dt, strict=True)) / len(pairs)


def _cos_at(x, i, j, k):
    u, v = x[i] - x[j], x[k] - x[j]
    return torch.dot(u, v) / (u.norm() * v.norm())


def _rkd_a_ref(s, t):
    s, t = s.double(), t.double()
    triplets = list(itertools.permutations(range(len(s)), 3))
    return sum(_huber(_cos_at(s, *tr), _cos_at(t, *tr)) for tr in triplets) / len(triplets)


@pytest.mark.parametrize("scale", [1.0, 5.0])  # 5: some differences land on the linear side of the Huber
def test_rkd_distance_matches_loop(scale):
    s, t = _randn(5, 4, seed=1) * scale, _randn(5, 7, seed=2)
    torch.testing.assert_close(rkd_distance_loss(s, t).double(), _rkd_d_ref(s, t), rtol=1e-5, atol=1e-7)
    # scale-invariant: distances are normalised by their mean
    torch.testing.assert_close(rkd_distance_loss(s, s * 10), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_rkd_angle_matches_loop():
    s, t = _randn(5, 4, seed=1), _randn(5, 7, seed=2)
    torch.testing.assert_close(rkd_angle_loss(s, t).double(), _rkd_a_ref(s, t), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(rkd_angle_loss(s, s * 3 + 1), torch.tensor(0.0), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("loss", "too_small"), [(rkd_distance_loss, 1), (rkd_angle_loss, 2)])
def test_rkd_small_batch_is_zero_with_grad(loss, too_small):
    s = _randn(too_small, 4, seed=1).requires_grad_()
    out = loss(s, _randn(too_small, 6, seed=2))
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("loss", [rkd_distance_loss, rkd_angle_loss])
def test_rkd_duplicate_rows_have_finite_grad(loss):
    s = _randn(4, 3, seed=1)
    s = torch.cat([s, s[:1]]).requires_grad_()  # rows 0 and 4 coincide: zero distance
    loss(s, _randn(5, 6, seed=2)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
