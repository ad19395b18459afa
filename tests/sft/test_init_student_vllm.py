"""vLLM (vllm-cpu, the vLLM environment: `make test-vllm`) serves a student made by `sft init-student` from a
real-vocabulary Qwen3 teacher, and greedy vLLM equals greedy transformers on it."""

import os

import pytest
import torch

pytest.importorskip("vllm")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

from sft.init_student import init_student
from tests.real_models import real_tokenizer_dir

pytestmark = pytest.mark.integration
CHAT = [{"role": "user", "content": "What is 12 + 30?"}]


def test_vllm_generates_the_students_greedy_tokens(tmp_path):
    import vllm

    config = Qwen3Config(
        vocab_size=151_936, hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=256, tie_word_embeddings=True,
        eos_token_id=151645, architectures=["Qwen3ForCausalLM"],  # head_dim 32: vllm-cpu has no kernel for 16
        initializer_range=0.5,  # the default 0.02 repeats one token forever; 0.5 varies it (14 distinct of 16)
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(real_tokenizer_dir("qwen3")).save_pretrained(tmp_path / "teacher")
    out = init_student(tmp_path / "teacher", [0, 3], tmp_path / "student")

    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_dict=True)["input_ids"]
    student = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    generated = student.generate(torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16, do_sample=False)
    with torch.no_grad():
        logprobs = student(generated).logits[0, len(ids) - 1 : -1].log_softmax(-1)  # (16, V)
    expected = generated[0, len(ids) :].tolist()
    assert len(set(expected)) > 4  # a greedy run that varies: the equality below is not one repeated token

    # enable_chunked_prefill=False on CPU: see trace_gen/backends/vllm.py
    engine = dict(
        dtype="float32", enforce_eager=True, max_model_len=256, enable_chunked_prefill=False, seed=0
    )
    llm = vllm.LLM(model=str(out), **engine)
    # min_tokens bars eos as min_new_tokens does above
    params = vllm.SamplingParams(temperature=0.0, max_tokens=16, min_tokens=16, logprobs=1)
    (result,) = llm.generate([{"prompt_token_ids": ids}], params)
    assert list(result.outputs[0].token_ids) == expected
    got = [step[t].logprob for step, t in zip(result.outputs[0].logprobs, expected, strict=True)]
    torch.testing.assert_close(torch.tensor(got), logprobs[torch.arange(16), expected], atol=1e-3, rtol=0)
