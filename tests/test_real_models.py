"""The real-shape fixtures are what they claim: the rebuilt Qwen tokenizer reproduces llama.cpp's reference
tokenisations of the real one, added tokens sit at their real ids with their real `special` flags, the
vendored templates are the ones TRL ships, and the tiny models load, have the real embedding rows and generate.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import trl
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.real_models import (
    ARCHS,
    FAMILIES,
    N_RANKS,
    _base_tokenizer_json,
    real_template,
    real_tokenizer_dir,
    reference_vectors,
    tiny_model_dir,
)

TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"
USER = [{"role": "user", "content": "What is 2+2?"}]


def test_reference_vectors_parse():
    vectors = reference_vectors()
    assert len(vectors) == 46
    assert vectors[0][0] == "ied 4 ½ months" and ("", []) in vectors


def test_base_bpe_has_the_real_merges_and_reproduces_every_reference_vector():
    tok = Tokenizer.from_str(_base_tokenizer_json())
    assert len(json.loads(tok.to_str())["model"]["merges"]) == 151_387
    assert tok.get_vocab_size() == N_RANKS
    for text, ids in reference_vectors():
        assert tok.encode(text).ids == ids, text
        assert tok.decode(ids) == text


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_autotokenizer_reproduces_reference_vectors(real_tok, family):
    tok = real_tok(family)
    for text, ids in reference_vectors():
        assert tok.encode(text, add_special_tokens=False) == ids, text
        assert tok.decode(ids) == text


def test_added_tokens_at_real_ids(real_tok):
    qwen25, qwen3, r1 = real_tok("qwen2.5"), real_tok("qwen3"), real_tok("r1-distill")
    assert len(qwen25) == 151_665 and len(qwen3) == 151_669 and len(r1) == 151_665
    for tok in (qwen25, qwen3):
        assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
            151643,
            151644,
            151645,
        ]
        assert tok.convert_tokens_to_ids(["<|object_ref_start|>", "<|video_pad|>"]) == [151646, 151656]
        assert tok.convert_tokens_to_ids(["<tool_call>", "</tool_call>", "<|file_sep|>"]) == [
            151657,
            151658,
            151664,
        ]
        assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token) == (151645, 151643, None)
    assert qwen3.convert_tokens_to_ids(["<tool_response>", "</tool_response>", "<think>", "</think>"]) == [
        151665, 151666, 151667, 151668,
    ]  # fmt: skip
    assert "<think>" not in qwen25.get_added_vocab() and len(qwen25.encode("<think>")) > 1  # Qwen2.5 has none
    assert r1.convert_tokens_to_ids(
        [
            "<｜end▁of▁sentence｜>",
            "<｜User｜>",
            "<｜Assistant｜>",
            "<｜begin▁of▁sentence｜>",
            "<|EOT|>",
            "<think>",
            "</think>",
        ]
    ) == list(range(151643, 151650))
    assert r1.convert_tokens_to_ids(["<|quad_start|>", "<tool_call>", "<|file_sep|>"]) == [
        151650,
        151657,
        151664,
    ]
    assert (r1.eos_token_id, r1.pad_token_id, r1.bos_token_id) == (151643, 151643, 151646)
    assert r1("hi").input_ids == [151646, 6023]  # add_bos_token, as the real tokenizer does
    assert qwen25("hi").input_ids == [6023]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_added_tokens_and_special_flags_survive_saving(real_tok, family):
    tok = real_tok(family)
    got = {i: (t.content, t.special) for i, t in tok.added_tokens_decoder.items()}
    assert got == {i: (content, special) for i, content, special in FAMILIES[family]["added"]}


def test_skip_special_tokens_keeps_think_and_tool_tags(real_tok):
    text = "<think>\nhmm</think>\n<tool_call>x</tool_call>"
    qwen3 = real_tok("qwen3")
    assert qwen3.decode(qwen3.encode(text + "<|im_end|>"), skip_special_tokens=True) == text
    r1 = real_tok("r1-distill")
    ids = r1.encode("<｜Assistant｜>" + text + "<｜end▁of▁sentence｜>")
    assert ids[0] == 151646 and ids[1] == 151645 and ids[-1] == 151643
    assert r1.decode(ids, skip_special_tokens=True) == "<｜Assistant｜>" + text


@pytest.mark.parametrize(
    "trl_name, family",
    [("qwen2_5", "qwen2.5"), ("deepseek_r1_distill", "r1-distill"), ("llama3_1", "llama3.1")],
)
def test_vendored_templates_equal_trl_copies(trl_name, family):
    assert (TRL_TEMPLATES / f"{trl_name}.jinja").read_bytes() == real_template(family).encode("utf-8")


def test_qwen3_launch_template_is_not_trl_revision():
    assert (TRL_TEMPLATES / "qwen3.jinja").read_text(encoding="utf-8") != real_template("qwen3")


def test_math_template_differs_only_in_system_prompt(real_tok):
    base, math = real_template("qwen2.5").splitlines(), real_template("qwen2.5-math").splitlines()
    assert len(base) == len(math) and sum(a != b for a, b in zip(base, math, strict=True)) == 2
    tok = real_tok("qwen2.5-math")
    rendered = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    assert rendered.startswith(f"<|im_start|>system\n{system}<|im_end|>\n")


def test_generation_prompts(real_tok):
    r1 = real_tok("r1-distill")
    rendered = r1.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert rendered == "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\n"
    ids = r1.apply_chat_template(USER, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids.count(151646) == 1 and ids[-3:-1] == [151645, 151648]  # one bos; <｜Assistant｜><think> "\n"
    qwq = real_tok("qwq").apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert qwq.endswith("<|im_start|>assistant\n<think>\n")
    qwen25 = real_tok("qwen2.5").apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert qwen25.startswith("<|im_start|>system\nYou are Qwen") and qwen25.endswith(
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "arch, family, rows",
    [
        ("qwen2", "r1-distill", 152_064),  # R1-Distill-Qwen-7B+ shaped teacher
        ("qwen2", "qwen2.5", 151_936),  # Qwen2.5-0.5B..3B-Instruct shaped student
        ("qwen3", "qwen3", 151_936),
        ("llama", "r1-distill", 151_936),
    ],
)
def test_tiny_model_is_a_loadable_checkpoint(arch, family, rows):
    path = tiny_model_dir(arch, family, rows)
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == [ARCHS[arch]] and config["vocab_size"] == rows
    tok = AutoTokenizer.from_pretrained(path)  # qwen2: transformers swaps in Qwen2Tokenizer; ids must hold
    for text, ids in reference_vectors():
        assert tok.encode(text, add_special_tokens=False) == ids, text
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert type(model).__name__ == ARCHS[arch]
    assert model.get_input_embeddings().weight.shape[0] == model.lm_head.weight.shape[0] == rows
    assert model.config.tie_word_embeddings == (rows == 151_936)
    assert model.generation_config.eos_token_id == FAMILIES[family]["generation_eos"]
    enc = tok.apply_chat_template(USER, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, enc["input_ids"].shape[1] + 3)


def test_bad_requests_name_the_problem():
    with pytest.raises(KeyError, match="unknown family"):
        real_tokenizer_dir("qwen9")
    with pytest.raises(KeyError, match="unknown arch"):
        tiny_model_dir("gpt2", "qwen2.5")
    with pytest.raises(ValueError, match="vocab_size 1000 < the 151669 tokens of qwen3"):
        tiny_model_dir("qwen3", "qwen3", 1000)


@pytest.mark.integration
def test_vllm_serves_the_r1_shaped_teacher():
    """vLLM (its venv only) loads the checkpoint, tokenises as the real tokenizer and prefills <think>."""
    vllm = pytest.importorskip("vllm")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    llm = vllm.LLM(
        model=str(tiny_model_dir("qwen2", "r1-distill", 152_064)),
        dtype="float32",
        enforce_eager=True,
        max_model_len=256,
        seed=0,
    )
    tok = llm.get_tokenizer()
    for text, ids in reference_vectors():
        assert tok.encode(text, add_special_tokens=False) == ids, text
    params = vllm.SamplingParams(max_tokens=4, min_tokens=4, temperature=1.0, logprobs=5)
    (out,) = llm.chat(USER, params)
    assert out.prompt_token_ids[0] == 151646 and out.prompt_token_ids[-3:] == [151645, 151648, 198]
    assert len(out.outputs[0].token_ids) == len(out.outputs[0].logprobs) == 4
    assert all(t < 152_064 for t in out.outputs[0].token_ids)
