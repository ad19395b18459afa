"""R1-style teachers store whole reasoning with every backend.

The real R1-Distill template ends the generation prompt with "<think>\\n" (so do QwQ's and
Qwen3-Thinking-2507's): the teacher samples from inside the reasoning. The stored assistant message
must still be `<think>…</think>` + answer, and identical whether the sample came from hf, vllm, or an
OpenAI-compatible vLLM server with or without a reasoning parser.

Teacher: a tiny random R1-Distill-Qwen-7B-shaped checkpoint (qwen2, the real R1 tokenizer and template,
152,064 rows; tests/real_models.py) whose lm_head row for "</think>" is made to win wherever one
ordinary token would, so greedy samples close the reasoning and go on with an answer. The hf tests run
anywhere; the vllm and openai ones in the vLLM environment (`make test-vllm`).
"""

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from trace_gen.backends import SamplingConfig, make_backend
from trace_gen.backends.base import think_prefill
from trace_gen.verify import split_think

pytestmark = pytest.mark.integration
PROMPTS = [
    "Ann has 3 apples. She gets 2 more. How many?",
    "What is 7 times 6?",
    "Ben has 5 cards and gives away 2. How many are left?",
    "Compute 12 + 30.",
]
GREEDY = SamplingConfig(n=1, temperature=0, max_new_tokens=16)
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 256}


def chat(problem: str) -> list[dict]:
    return [{"role": "user", "content": problem}]


@pytest.fixture(scope="module")
def thinker(real_model, tmp_path_factory) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("thinker")
    shutil.copytree(real_model("qwen2", "r1-distill", 152_064), out, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert not model.config.tie_word_embeddings  # only the output row changes
    ids = tok.apply_chat_template(chat(PROMPTS[0]), add_generation_prompt=True, return_dict=True)["input_ids"]
    greedy = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=6)[0, len(ids) :].tolist()
    with torch.no_grad():
        head = model.lm_head.weight
        head[tok.convert_tokens_to_ids("</think>")] = 1.5 * head[greedy[4]]
    model.save_pretrained(out)
    return out


def greedy_samples(backend) -> list:
    prompts = [backend.prompt_token_ids(chat(p)) for p in PROMPTS]
    return [ss[0] for ss in backend.generate(prompts, GREEDY, seed=0)]


@pytest.fixture(scope="module")
def hf_reference(thinker) -> list:
    return greedy_samples(make_backend("hf", str(thinker), 1, device="cpu"))


@pytest.mark.parametrize(
    "family, enable_thinking, prefill",
    [
        ("r1-distill", None, "<think>\n"),
        ("qwq", None, "<think>\n"),
        ("qwen2.5", None, ""),
        ("qwen3", None, ""),  # Qwen3 (launch revision) opens no block
        ("qwen3", False, ""),  # thinking off: an empty block, already closed
    ],
)
def test_real_templates(real_tok, family, enable_thinking, prefill):
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    rendered = real_tok(family).apply_chat_template(
        chat("1+1?"), add_generation_prompt=True, tokenize=False, **kwargs
    )
    assert think_prefill(rendered) == prefill


def test_hf_stores_whole_reasoning(hf_reference):
    for s in hf_reference:
        assert s.prefill == "<think>\n" and s.text.startswith(s.prefill)
        assert not s.text[len(s.prefill) :].startswith("<think>") and s.num_tokens > 0
    closed = [s for s in hf_reference if "</think>" in s.text]
    assert closed, "the thinker must close its reasoning in some sample"
    assert any(s.text.split("</think>", 1)[1].strip() for s in closed), "and answer after it"


def test_trace_rows_are_whole(thinker, tmp_path, capsys):
    from datasets import load_dataset

    from trace_gen.cli import main

    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": p, "answer": "5"}) + "\n" for p in PROMPTS))
    argv = [
        "--backend", "hf", "--device", "cpu", "--teacher", str(thinker), "--dataset", str(data),
        "--problem-column", "question", "--instruction", "", "--n", "10", "--samples-per-prompt", "1",
        "--temperature", "0", "--max-new-tokens", "16", "--keep-rejected", "--out", str(tmp_path / "o"),
    ]  # fmt: skip
    assert main(argv) == 0
    rows = load_dataset(str(tmp_path / "o"), data_dir="rejected", split="train").to_list()
    assert len(rows) == len(PROMPTS)
    for row in rows:
        content = row["messages"][-1]["content"]
        assert (
            content == row["completion"] and row["prefill"] == "<think>\n" and content.startswith("<think>\n")
        )
        assert (row["reasoning"], row["answer"]) == split_think(content)
        if "</think>" in content:
            assert row["reasoning"].startswith("<think>") and row["reasoning"].endswith("</think>")
        else:  # cut inside the reasoning: no answer part, so nothing in the reasoning is graded
            assert row["reasoning"] == content.strip() and row["answer"] == ""
            assert row["verdict_reason"] == "no answer: <think> never closed"
    assert any("</think>" in row["completion"] for row in rows)


def _backend(kind: str, thinker: Path, log: Path, stack: contextlib.ExitStack):
    pytest.importorskip("vllm", reason="vllm and openai run in the vLLM environment (make test-vllm)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from tests.vllm_server import vllm_server

    if kind == "vllm":
        backend = make_backend("vllm", str(thinker), 4, engine_args=ENGINE)
        stack.callback(backend.close)
        return backend
    extra = ("--reasoning-parser", "deepseek_r1") if kind == "openai+reasoning-parser" else ()
    url = stack.enter_context(vllm_server(str(thinker), "r1", log, extra_args=extra))
    body = {"skip_special_tokens": False}  # as the hf and vllm backends decode
    return make_backend("openai", "r1", 4, base_url=url, api_key_env="NO_KEY_NEEDED", extra_body=body)


@pytest.mark.parametrize("kind", ["vllm", "openai", "openai+reasoning-parser"])
def test_every_backend_stores_the_same_whole_text(kind, thinker, hf_reference, tmp_path):
    with contextlib.ExitStack() as stack:
        backend = _backend(kind, thinker, tmp_path / "server.log", stack)
        samples = greedy_samples(backend)
        if kind.startswith("openai"):
            assert backend.prefill == "<think>\n"  # rendered by the server itself (/tokenize)
    assert [s.text for s in samples] == [s.text for s in hf_reference]
    assert [s.prefill for s in samples] == [s.prefill for s in hf_reference]
    assert [s.num_tokens for s in samples] == [s.num_tokens for s in hf_reference]
