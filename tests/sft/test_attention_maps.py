"""AttentionCapture on tiny random Qwen3 / Qwen2 / Llama models, against eager `output_attentions`."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config

from sft.attention_maps import AttentionCapture, attention_probs

CONFIGS = {"qwen3": Qwen3Config, "qwen2": Qwen2Config, "llama": LlamaConfig}
SIZES = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
)
LAYERS = [1, 3]

# (B=3, T=7): right-padded, left-padded, unpadded rows
MASK = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])


def tiny_model(arch: str, attn: str = "eager", config_cls=None, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    config = (config_cls or CONFIGS[arch])(**SIZES, **extra)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    with (
        torch.no_grad()
    ):  # peaky attention: default init (std 0.02) gives near-uniform maps that prove little
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.normal_(0.0, 0.6)
    return model.eval()


def _ids(seed=1):
    return torch.randint(3, 64, MASK.shape, generator=torch.Generator().manual_seed(seed))


def _assert_close_at_valid_queries(captured, reference, mask):
    valid = mask.bool()
    for b in range(len(mask)):
        torch.testing.assert_close(
            captured[b][:, valid[b]], reference[b][:, valid[b]].float(), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_matches_eager_attentions_with_padding_and_sdpa(arch):
    model, ids = tiny_model(arch), _ids()
    with torch.no_grad(), AttentionCapture(model, LAYERS) as cap:
        ref = model(input_ids=ids, attention_mask=MASK, output_attentions=True).attentions
        eager_probs = dict(cap.probs)
    assert set(eager_probs) == set(LAYERS)
    for layer in LAYERS:
        assert eager_probs[layer].shape == (3, 4, 7, 7) and eager_probs[layer].dtype == torch.float32
        assert ref[layer - 1].std() > 0.05  # the maps are far from uniform
        _assert_close_at_valid_queries(eager_probs[layer], ref[layer - 1], MASK)

    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad(), AttentionCapture(model, LAYERS) as cap:
        model(input_ids=ids, attention_mask=MASK)
        for layer in LAYERS:
            _assert_close_at_valid_queries(cap.probs[layer], ref[layer - 1], MASK)
        model(input_ids=ids[2:])  # no padding: sdpa passes no mask at all (plain causal)
        for layer in LAYERS:
            torch.testing.assert_close(cap.probs[layer][0], ref[layer - 1][2], atol=1e-5, rtol=0)


def test_gradient_flows_to_q_proj_and_hooks_are_removed():
    model = tiny_model("qwen3", attn="sdpa")
    model.train()
    attn = model.model.layers[2].self_attn
    weights = torch.randn(3, 4, 7, 7, generator=torch.Generator().manual_seed(2))
    with AttentionCapture(model, [3]) as cap:
        assert len(attn._forward_pre_hooks) == 1 and len(model.model._forward_pre_hooks) == 1
        model(input_ids=_ids(), attention_mask=MASK)
        (cap.probs[3] * weights).sum().backward()  # rows sum to 1: weight them so the gradient is not 0
    assert attn.q_proj.weight.grad.abs().sum() > 0 and attn.k_proj.weight.grad.abs().sum() > 0
    assert attn.q_norm.weight.grad.abs().sum() > 0
    assert len(attn._forward_pre_hooks) == 0 and len(model.model._forward_pre_hooks) == 0
    kept = cap.probs[3]
    model(input_ids=_ids())  # after exit nothing is captured or cleared
    assert cap.probs[3] is kept


def _probs_grad(model, ids, weights):
    model.zero_grad()
    with AttentionCapture(model, [2]) as cap:
        model(input_ids=ids, attention_mask=MASK)
        probs = cap.probs[2]
        (probs * weights).sum().backward()
        assert cap.probs[2] is probs  # a checkpointing recompute does not replace the captured tensor
    return model.model.layers[1].self_attn.q_proj.weight.grad.clone()


def test_probs_cleared_per_forward_and_gradient_checkpointing():
    model = tiny_model("llama", attn="sdpa").train()
    with AttentionCapture(model, [2]) as cap:
        model(input_ids=_ids(), attention_mask=MASK)
        first = cap.probs[2]
        model(input_ids=_ids(seed=5), attention_mask=MASK)
        assert cap.probs[2] is not first and not torch.equal(cap.probs[2], first)
    weights = torch.randn(3, 4, 7, 7, generator=torch.Generator().manual_seed(4))
    plain = _probs_grad(model, _ids(), weights)
    model.gradient_checkpointing_enable()  # transformers' default: use_reentrant=False
    checkpointed = _probs_grad(model, _ids(), weights)
    assert plain.abs().sum() > 0
    torch.testing.assert_close(checkpointed, plain)


def test_through_peft_lora():
    model = tiny_model("qwen2", attn="sdpa")
    with torch.no_grad():
        ref = tiny_model("qwen2")(input_ids=_ids(), attention_mask=MASK, output_attentions=True).attentions
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "k_proj"]))
    with AttentionCapture(peft_model, [1]) as cap:
        peft_model(input_ids=_ids(), attention_mask=MASK)
        _assert_close_at_valid_queries(cap.probs[1].detach(), ref[0], MASK)  # LoRA B starts at 0
        (cap.probs[1] * torch.rand_like(cap.probs[1])).sum().backward()
    lora_b = peft_model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert lora_b.grad.abs().sum() > 0


def test_flash_style_2d_mask_equals_4d_bool_mask():
    model = tiny_model("qwen3")
    attn = model.model.layers[0].self_attn
    rope = __import__(type(attn).__module__, fromlist=["apply_rotary_pos_emb"]).apply_rotary_pos_emb
    hidden = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(3))
    pos = model.model.rotary_emb(hidden, torch.arange(7)[None].expand(3, -1))
    four_d = torch.ones(7, 7, dtype=torch.bool).tril() & MASK.bool()[:, None, None, :]
    with torch.no_grad():
        torch.testing.assert_close(
            attention_probs(attn, rope, hidden, pos, MASK), attention_probs(attn, rope, hidden, pos, four_d)
        )


@pytest.mark.parametrize(
    ("layers", "match"),
    [([0, 2], r"\[0\] out of range.*1\.\.3"), ([4], "out of range"), ([], "at least one")],
)
def test_bad_layers_raise(layers, match):
    with pytest.raises(ValueError, match=match):
        AttentionCapture(tiny_model("qwen3"), layers)


def test_attention_without_q_proj_raises():
    model = tiny_model("phi3", config_cls=Phi3Config, pad_token_id=0)
    with pytest.raises(ValueError, match=r"no self_attn\.q_proj/k_proj") as err:
        AttentionCapture(model, [1])
    assert "\n" not in str(err.value)
