"""Feature-distillation losses (hidden states, attention maps, relations) as pure functions of tensors.

The classic family beside token-level logit KD (`sft/losses.py`):
- hidden states: FitNets hints (MSE through a learned regressor when widths differ; Romero et al. 2015),
  cosine (DistilBERT), over layers paired by `layer_map` (uniform, PKD skip/last, or an explicit list);
- attention maps: TinyBERT's MSE between attention distributions (Jiao et al. 2020);
- relations between sequences: RKD distance and angle on pooled hidden states (Park et al. 2019).

Conventions shared by every function here:
- `mask` (B, T) bool/int marks the positions that count (None = all); the loss is the mean over them;
  an all-masked batch gives 0 that still has a grad_fn when an input requires grad, never NaN;
- math runs in fp32 whatever the input dtype; the teacher's tensors are constants (detach them outside);
- bad input raises ValueError with one line naming the problem and the fix.
"""

import math

import torch
import torch.nn.functional as F

LAYER_MAP_KINDS = ("uniform", "pkd-skip", "pkd-last", "list")


def layer_map(
    kind: str, n_student: int, n_teacher: int, layers: list[int] | None = None
) -> list[tuple[int, int]]:
    """(student_layer, teacher_layer) pairs of 1-based decoder layers (HF `hidden_states` index; 0 = embeddings).

    kind:
        "uniform":  student j <-> teacher round_half_up(j * n_teacher / n_student), at least 1 (last <-> last;
                    DistilBERT-style);
        "pkd-skip": student j <-> teacher j*k, k = n_teacher // n_student, only j with j*k < n_teacher (PKD:
                    the last teacher layer is left to logit KD);
        "pkd-last": student j <-> teacher n_teacher - n_student + j, for j < n_student;
        "list":     `layers[j-1]` is the teacher layer of student layer j (len == n_student), 0 = unmapped.

    Example: (3 student, 6 teacher) -> uniform [(1,2),(2,4),(3,6)], pkd-skip [(1,2),(2,4)], pkd-last [(1,4),(2,5)].
    A map that pairs no layer at all is an error (e.g. pkd-skip with one student layer).
    """
    if kind not in LAYER_MAP_KINDS:
        raise ValueError(f"unknown layer map kind {kind!r}: use one of {', '.join(LAYER_MAP_KINDS)}")
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got n_student={n_student}, n_teacher={n_teacher}")
    if layers and kind != "list":
        raise ValueError(
            f"layers {layers} are only read by layer map kind 'list', not {kind!r}: drop them or use 'list'"
        )
    if kind in ("pkd-skip", "pkd-last") and n_student > n_teacher:
        raise ValueError(
            f"layer map {kind!r} needs n_student <= n_teacher, got {n_student} > {n_teacher}: use 'uniform' or 'list'"
        )
    js = range(1, n_student + 1)
    if kind == "uniform":
        pairs = [(j, max(1, math.floor(j * n_teacher / n_student + 0.5))) for j in js]
    elif kind == "pkd-skip":
        k = n_teacher // n_student
        pairs = [(j, j * k) for j in js if j * k < n_teacher]
    elif kind == "pkd-last":
        pairs = [(j, n_teacher - n_student + j) for j in js if j < n_student]
    else:
        if layers is None or len(layers) != n_student:
            got = "none" if layers is None else len(layers)
            raise ValueError(
                f"layer map 'list' needs one teacher layer per student layer ({n_student}), got {got}: 0 = unmapped"
            )
        bad = [t for t in layers if not 0 <= t <= n_teacher]
        if bad:
            raise ValueError(
                f"teacher layers {bad} out of range: each must be in 0..{n_teacher} (0 = unmapped)"
            )
        pairs = [(j, t) for j, t in zip(js, layers, strict=True) if t > 0]
    if not pairs:
        raise ValueError(
            f"layer map {kind!r} pairs no layer for {n_student} student / {n_teacher} teacher layers: use 'uniform'"
        )
    return pairs


def _masked_mean(per_position: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `per_position` (B, T) over positions where `mask` (B, T) is nonzero; 0 if none (grad kept)."""
    if mask is None:
        return per_position.mean()
    if mask.shape != per_position.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} != positions {tuple(per_position.shape)}: pass a (B, T) mask"
        )
    valid = mask.bool()
    return torch.where(valid, per_position, 0.0).sum() / valid.sum().clamp_min(1)


def _check_positions(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape[:-1] != teacher.shape[:-1]:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in (B, T): "
            "feed both models the same batch"
        )


def _project(student: torch.Tensor, projection: torch.nn.Module | None) -> torch.Tensor:
    if projection is None:
        return student.float()
    weight = next(projection.parameters())
    return projection(student.to(weight.dtype)).float()


def hidden_cosine_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Mean over masked positions of 1 - cos(student, teacher) (DistilBERT's cosine embedding loss).

    Args:
        student: (B, T, H) student hidden states (or (B, T, Hs) with a `projection` Hs -> H).
        teacher: (B, T, H) teacher hidden states.
        mask: (B, T) positions that count; None = all.

    Returns:
        scalar fp32 in [0, 2].
    """
    _check_positions(student, teacher)
    s = _project(student, projection)
    if s.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"cosine needs equal widths, got student {s.shape[-1]} vs teacher {teacher.shape[-1]}: "
            "pass a projection (make_projection) or set kd_hidden_loss mse"
        )
    return _masked_mean(1.0 - F.cosine_similarity(s, teacher.float(), dim=-1, eps=1e-8), mask)


def hidden_mse_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """FitNets hint: mean over masked positions of the mean squared error over the hidden width.

    Args:
        student: (B, T, Hs) student hidden states.
        teacher: (B, T, Ht) teacher hidden states.
        mask: (B, T) positions that count; None = all.
        projection: module mapping Hs -> Ht (e.g. `make_projection`), applied to the student first; it
            is trained with the student, so give its parameters to the optimizer. Required if Hs != Ht.

    Returns:
        scalar fp32.
    """
    _check_positions(student, teacher)
    s = _project(student, projection)
    if s.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"hidden widths differ (student {s.shape[-1]}, teacher {teacher.shape[-1]}): "
            "pass a projection (make_projection(student_width, teacher_width)) / set kd_hidden_loss mse"
        )
    return _masked_mean((s - teacher.float()).pow(2).mean(-1), mask)


def make_projection(student_width: int, teacher_width: int) -> torch.nn.Linear:
    """FitNets regressor: a bias-free fp32 Linear mapping the student's width to the teacher's."""
    if student_width < 1 or teacher_width < 1:
        raise ValueError(f"widths must be >= 1, got student {student_width}, teacher {teacher_width}")
    return torch.nn.Linear(student_width, teacher_width, bias=False)


def attention_map_loss(
    student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """TinyBERT attention loss: MSE between attention distributions, over heads, masked queries, all keys.

    Args:
        student_probs: (B, Hs, T, T) student attention probabilities (rows sum to 1 over keys).
        teacher_probs: (B, Ht, T, T) teacher attention probabilities.
        mask: (B, T) query positions that count; None = all.

    Head counts that differ: if Ht % Hs == 0, the teacher's heads are averaged in consecutive groups of
    Ht / Hs (head h of the student <-> teacher heads h*Ht/Hs .. (h+1)*Ht/Hs - 1); otherwise both sides are
    averaged over all their heads and the two head-averaged maps are compared.

    Returns:
        scalar fp32: mean over masked queries of the mean over heads and keys of the squared difference.
    """
    (b, hs, t, tk), (bt, ht, tt, ttk) = student_probs.shape, teacher_probs.shape
    if (b, t, tk) != (bt, tt, ttk):
        raise ValueError(
            f"attention maps differ in (B, T, T): student {tuple(student_probs.shape)}, teacher "
            f"{tuple(teacher_probs.shape)}: feed both models the same batch"
        )
    s, te = student_probs.float(), teacher_probs.float()
    if ht != hs:
        if ht % hs == 0:
            te = te.view(b, hs, ht // hs, t, tk).mean(2)
        else:
            s, te = s.mean(1, keepdim=True), te.mean(1, keepdim=True)
    per_query = (s - te).pow(2).mean(dim=(1, 3))  # (B, T)
    return _masked_mean(per_query, mask)


def pooled(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, H) -> (B, H) fp32 mean over masked positions (0 where a row has none); None = all."""
    h = hidden.float()
    if mask is None:
        return h.mean(1)
    m = mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def _zero(*tensors: torch.Tensor) -> torch.Tensor:
    """0.0 that keeps a grad_fn when any input requires grad."""
    return sum((x.float().sum() * 0.0 for x in tensors), torch.zeros(()))


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B*(B-1)/2,) Euclidean distances of the pairs i < j, with a finite gradient at 0."""
    i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    return (x[i] - x[j]).pow(2).sum(-1).clamp_min(1e-12).sqrt()


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-D (Park et al. 2019): smooth-L1 between the two sides' normalised pairwise distances.

    Args:
        student: (B, Ds) one vector per example (e.g. `pooled` hidden states).
        teacher: (B, Dt) the teacher's vectors for the same examples (widths may differ).

    Each side's distances ||x_i - x_j|| over the pairs i < j are divided by their mean; the loss is
    the mean Huber (smooth-L1, delta 1) over pairs. B < 2 -> 0.

    Returns:
        scalar fp32.
    """
    if len(student) != len(teacher):
        raise ValueError(f"batch sizes differ: student {len(student)}, teacher {len(teacher)}")
    if len(student) < 2:
        return _zero(student, teacher)
    s, t = _pairwise_distances(student.float()), _pairwise_distances(teacher.float())
    s = s / s.mean().clamp_min(1e-12)
    t = t / t.mean().clamp_min(1e-12)
    return F.smooth_l1_loss(s, t)


def _triplet_cosines(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B, B): [i, j, k] = cos of the angle at x_j between x_i - x_j and x_k - x_j."""
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=-1)  # [j, i] = unit(x_i - x_j)
    return torch.bmm(e, e.transpose(1, 2)).transpose(0, 1)  # bmm gives [j, i, k]


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-A (Park et al. 2019): smooth-L1 between the two sides' angle cosines over triplets.

    Args:
        student: (B, Ds), teacher: (B, Dt) as in `rkd_distance_loss`.

    For each triplet of distinct examples (i, j, k), cos of the angle at j between x_i - x_j and
    x_k - x_j; the loss is the mean Huber (smooth-L1, delta 1) over those B(B-1)(B-2) triplets.
    Memory: (B, B, D) + (B, B, B) fp32 per side. B < 3 -> 0.

    Returns:
        scalar fp32.
    """
    if len(student) != len(teacher):
        raise ValueError(f"batch sizes differ: student {len(student)}, teacher {len(teacher)}")
    n = len(student)
    if n < 3:
        return _zero(student, teacher)
    idx = torch.arange(n, device=student.device)
    i, j, k = idx.view(-1, 1, 1), idx.view(1, -1, 1), idx.view(1, 1, -1)
    distinct = (i != j) & (j != k) & (i != k)  # (B, B, B)
    s, t = _triplet_cosines(student.float()), _triplet_cosines(teacher.float())
    return F.smooth_l1_loss(s[distinct], t[distinct])
