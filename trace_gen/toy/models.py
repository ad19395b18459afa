"""Tiny Qwen3-architecture configs for the toy teacher and student (vLLM and transformers run both).

Sizes: teacher ~0.9M parameters; student ~0.2M (<=25% of the teacher), same tokenizer.
"""

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase, Qwen3Config

SIZES = {
    "teacher": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, head_dim=32),
    "student": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, head_dim=16),
}


def toy_config(size: str, tokenizer: PreTrainedTokenizerBase) -> Qwen3Config:
    dims = SIZES[size]
    return Qwen3Config(
        vocab_size=len(tokenizer),
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        architectures=["Qwen3ForCausalLM"],  # vLLM reads this to pick the causal-LM class
        **dims,
    )


def init_model(size: str, tokenizer: PreTrainedTokenizerBase, out_dir: str, seed: int) -> int:
    """Write a randomly initialised model (weights deterministic for a seed) with its tokenizer."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(toy_config(size, tokenizer), dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model.num_parameters()
