"""Attention distributions of chosen decoder layers, recomputed beside a model that keeps SDPA.

`output_attentions=True` needs the eager attention path for every layer; TinyBERT-style attention
distillation needs the probabilities of a few mapped layers only. `AttentionCapture` hooks those
layers' attention modules and recomputes softmax(q k^T * scaling + mask) from the same inputs
the module receives, so the model's own forward is unchanged (SDPA / flash stay on).

Families: HF decoders whose attention module has q_proj / k_proj (+ optional q_norm / k_norm) and
whose modeling file defines `apply_rotary_pos_emb` (Qwen2, Qwen3, Llama and their copies).
Checked against eager `output_attentions` in tests/sft/test_attention_maps.py.

Memory: each mapped layer holds B * n_heads * T^2 fp32 probabilities (plus the same again for the
autograd graph when gradients flow): at T=4096 with 16 heads that is 1 GiB per layer per sequence.
"""

import importlib

import torch


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layers of a HF causal LM (also through peft wrappers, whose attributes forward)."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(
            f"{type(decoder).__name__} has no `.layers`: attention capture supports Qwen2/Qwen3/Llama"
        )
    return layers


class AttentionCapture:
    """Context manager: `.probs[layer]` (B, n_heads, T, T) fp32 attention probabilities of each layer.

    Args:
        model: a HF decoder-only model (Qwen2, Qwen3, Llama), possibly wrapped by peft.
        layers: 1-based decoder layer indices (HF `hidden_states` numbering; 0 = embeddings).

    Usage:
        with AttentionCapture(student, [2, 4]) as cap:
            out = student(input_ids=ids, attention_mask=mask)
            probs = cap.probs[4]   # (B, H, T, T); gradients flow to q_proj / k_proj (and LoRA on them)

    On enter, forward pre-hooks on each chosen layer's `self_attn` read its `hidden_states`,
    `position_embeddings` (cos, sin) and `attention_mask` kwargs and recompute q = q_norm(q_proj(h)),
    k likewise, the family's RoPE, k repeated for GQA, then softmax in fp32 over the keys with the
    causal/padding mask (None: plain causal; (B, T): causal + key padding; 4-D bool: True = attend;
    4-D float: additive). Rows of padded queries are not meaningful (compare valid query positions
    only); masked keys get probability 0, so maps of left- and right-padded rows agree. `.probs` is cleared when the
    decoder starts a forward; a gradient-checkpointing recompute (non-reentrant, transformers' default)
    recomputes the layer's probabilities too but keeps the forward's tensor, and gradients reach q/k
    as without checkpointing. With `use_reentrant=True` the forward runs without grad: no gradient
    reaches the student through these maps. Hooks are removed on exit; `.probs` keeps the last
    forward's tensors. No KV cache: call the model on whole sequences.
    """

    def __init__(self, model: torch.nn.Module, layers: list[int]):
        all_layers = decoder_layers(model)
        if not layers:
            raise ValueError("AttentionCapture needs at least one layer: pass 1-based decoder layer indices")
        bad = [i for i in layers if not 1 <= i <= len(all_layers)]
        if bad:
            raise ValueError(
                f"attention layers {bad} out of range: the model has decoder layers 1..{len(all_layers)}"
            )
        self.modules = {}
        for i in layers:
            attn = getattr(all_layers[i - 1], "self_attn", None)
            if attn is None or not hasattr(attn, "q_proj") or not hasattr(attn, "k_proj"):
                raise ValueError(
                    f"decoder layer {i} ({type(all_layers[i - 1]).__name__}) has no self_attn.q_proj/k_proj: "
                    "attention capture supports Qwen2/Qwen3/Llama-style attention"
                )
            rope = getattr(importlib.import_module(type(attn).__module__), "apply_rotary_pos_emb", None)
            if rope is None:
                raise ValueError(
                    f"{type(attn).__module__} defines no apply_rotary_pos_emb: not a RoPE decoder"
                )
            self.modules[i] = (attn, rope)
        self.decoder = model.get_decoder()
        self.probs: dict[int, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "AttentionCapture":
        self._handles.append(self.decoder.register_forward_pre_hook(lambda *_: self.probs.clear()))
        for i, (attn, rope) in self.modules.items():
            hook = self._make_hook(i, rope)
            self._handles.append(attn.register_forward_pre_hook(hook, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _make_hook(self, layer: int, rope):
        def hook(attn, args, kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            probs = attention_probs(
                attn, rope, hidden, kwargs["position_embeddings"], kwargs.get("attention_mask")
            )
            # A gradient-checkpointing recompute must save the same tensors as the forward did, so it
            # recomputes too; its result is dropped (the forward's tensor is the one in the graph).
            self.probs.setdefault(layer, probs)

        return hook


def attention_probs(attn, rope, hidden: torch.Tensor, position_embeddings, attention_mask) -> torch.Tensor:
    """Recompute one attention module's probabilities: (B, T, D) hidden -> (B, n_heads, T, T) fp32.

    Mirrors the families' forward: q/k projections, per-head q_norm/k_norm where present, RoPE via the
    modeling file's `rope` (apply_rotary_pos_emb), k repeated for GQA, scores * `attn.scaling`, mask, softmax.
    """
    shape = (*hidden.shape[:-1], -1, attn.head_dim)
    q, k = attn.q_proj(hidden).view(shape), attn.k_proj(hidden).view(shape)
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    if q_norm is not None:
        q, k = q_norm(q), k_norm(k)
    cos, sin = position_embeddings
    q, k = rope(q.transpose(1, 2), k.transpose(1, 2), cos, sin)  # (B, H, T, d), (B, Hkv, T, d)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) * attn.scaling  # (B, H, T, T)
    lowest = torch.finfo(torch.float32).min
    t = scores.shape[-1]
    if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
        raise ValueError(
            f"attention mask of type {type(attention_mask).__name__}: use sdpa, eager or flash attention"
        )
    if (
        attention_mask is None or attention_mask.dim() == 2
    ):  # sdpa's skipped mask, or flash's (B, T) key padding
        allowed = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
        scores = scores.masked_fill(~allowed, lowest)
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask[..., :t], lowest)
    else:
        scores = (scores + attention_mask[..., :t].float()).clamp_min(lowest)
    return scores.softmax(-1)
