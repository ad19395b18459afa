"""The rules every backend shares, as pure functions (device/dtype placement, the auto backend, the
context cap, the <think> prefill, folding a server's reasoning back), and the hf backend's CPU paths
for real: fp32 and bf16 weights, the cap on a model with a short context, one warning, and bad
--device as one line before any model loads."""

import json
import shutil

import pytest
import torch

from trace_gen.backends import SamplingConfig, make_backend
from trace_gen.backends.base import ContextCap, pick_backend, think_prefill
from trace_gen.backends.hf import placement
from trace_gen.backends.openai import assistant_text
from trace_gen.cli import main
from trace_gen.errors import UsageError

CHAT = [{"role": "user", "content": "Ann has 3 apples. She gets 2 more. How many?"}]


@pytest.mark.parametrize(
    "device, dtype, gpus, bf16, expected",
    [
        ("auto", "auto", 0, False, (None, "float32")),
        ("auto", "auto", 1, True, ("cuda:0", "bfloat16")),
        ("auto", "auto", 1, False, ("cuda:0", "float16")),  # e.g. V100/T4: no bf16
        ("auto", "auto", 8, True, ("auto", "bfloat16")),  # spread over all GPUs
        ("cpu", "auto", 8, True, (None, "float32")),
        ("cpu", "bfloat16", 0, False, (None, "bfloat16")),
        ("cuda", "float32", 2, True, ("auto", "float32")),
        ("cuda:1", "auto", 2, True, ("cuda:1", "bfloat16")),
    ],
)
def test_placement(device, dtype, gpus, bf16, expected):
    assert placement(device, dtype, gpus, bf16) == expected


@pytest.mark.parametrize(
    "device, gpus, message",
    [
        ("cuda", 0, "no GPU is visible"),
        ("cuda:2", 2, "only 2 GPU(s) are visible"),
        ("gpu", 1, "not one of auto, cpu, cuda, cuda:N"),
        ("cuda:x", 1, "not one of auto, cpu, cuda, cuda:N"),
    ],
)
def test_placement_refuses(device, gpus, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        placement(device, "auto", gpus, True)


def test_pick_backend():
    assert pick_backend(True, 4)[0] == "vllm"
    assert pick_backend(True, 0)[0] == "hf" and "no GPU" in pick_backend(True, 0)[1]
    assert pick_backend(False, 4)[0] == "hf" and "not installed" in pick_backend(False, 4)[1]
    assert pick_backend(False, 0)[0] == "hf"


def test_context_cap_warns_once_with_the_numbers(capsys):
    cap = ContextCap(512)
    assert cap(100, 400) == 100 and capsys.readouterr().err == ""
    assert cap(32768, 114) == 398
    assert cap(32768, 500) == 12
    assert cap(32768, 600) == 1  # a prompt over the context still ends at once
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "32768" in err and "512 - 114 = 398" in err


@pytest.mark.parametrize(
    "rendered, prefill",
    [
        ("<｜User｜>1+1?<｜Assistant｜><think>\n", "<think>\n"),  # R1-Distill
        ("<|im_start|>assistant\n<think>\n", "<think>\n"),  # QwQ, Qwen3-Thinking-2507
        ("<|im_start|>assistant\n", ""),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", ""),  # Qwen3, thinking off: closed
        ("<|im_start|>user\nWhat does <think> mean?<|im_end|>\n<|im_start|>assistant\n", ""),  # quoted
    ],
)
def test_think_prefill(rendered, prefill):
    assert think_prefill(rendered) == prefill


RAW = "Okay, 1 + 1 = 2.\n</think>\n\nThe answer is \\boxed{2}."


@pytest.mark.parametrize(
    "content, reasoning, prefill, whole, used",
    [
        # no reasoning parser: the text starts inside the reasoning; the prefill comes back
        (RAW, None, "<think>\n", "<think>\n" + RAW, "<think>\n"),
        ("Okay, 1 + 1", None, "<think>\n", "<think>\nOkay, 1 + 1", "<think>\n"),  # cut inside it
        # a reasoning parser (vLLM's deepseek_r1) split RAW at </think>: folded back exactly
        ("\n\nThe answer is \\boxed{2}.", "Okay, 1 + 1 = 2.\n", "<think>\n", "<think>\n" + RAW, "<think>\n"),
        (None, "Okay, 1 + 1", "<think>\n", "<think>\nOkay, 1 + 1", "<think>\n"),
        # a template without prefill; the model opened the block itself and the parser dropped the tag
        ("\n\nA", "\nhm\n", "", "<think>\nhm\n</think>\n\nA", ""),
        ("plain answer", None, "", "plain answer", ""),
        # the server could not render its prompt: inferred
        (RAW, None, None, "<think>\n" + RAW, "<think>\n"),
        ("<think>\nhm</think>A", None, None, "<think>\nhm</think>A", ""),
        ("no tags", None, None, "no tags", ""),
        ("\n\nThe answer is \\boxed{2}.", "Okay, 1 + 1 = 2.\n", None, "<think>\n" + RAW, "<think>\n"),
        ("\n\nA", "\nhm\n", None, "<think>\nhm\n</think>\n\nA", ""),
    ],
)
def test_assistant_text(content, reasoning, prefill, whole, used):
    assert assistant_text(content, reasoning, prefill) == (whole, used)


@pytest.fixture(scope="module")
def short_context_teacher(tiny_teacher, tmp_path_factory):
    """The tiny teacher with a 48-position context (its weights do not depend on it)."""
    out = tmp_path_factory.mktemp("short")
    shutil.copytree(tiny_teacher, out, dirs_exist_ok=True)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 48}))
    return out


def test_hf_caps_new_tokens_to_the_context(short_context_teacher, capsys):
    backend = make_backend("hf", str(short_context_teacher), 4, device="cpu")
    ids = backend.prompt_token_ids(CHAT)
    assert 20 < len(ids) < 48
    # eos never wins here: every row runs to the cap (random weights do not end on EOS)
    backend.eos_ids = [len(backend.tokenizer) + 1]
    (samples,) = backend.generate([ids], SamplingConfig(n=2, temperature=1.0, max_new_tokens=10_000), seed=0)
    assert [s.num_tokens for s in samples] == [48 - len(ids)] * 2
    assert {s.finish_reason for s in samples} == {"length"}
    backend.generate([ids], SamplingConfig(n=1, temperature=1.0, max_new_tokens=10_000), seed=1)
    err = capsys.readouterr().err
    assert err.count("warning: max_new_tokens 10000") == 1 and f"48 - {len(ids)} = {48 - len(ids)}" in err


def test_hf_loads_the_dtype_asked(tiny_teacher):
    fp32 = make_backend("hf", str(tiny_teacher), 4, device="cpu", dtype="auto")
    bf16 = make_backend("hf", str(tiny_teacher), 4, device="cpu", dtype="bfloat16")
    assert fp32.model.dtype == torch.float32 and bf16.model.dtype == torch.bfloat16
    assert fp32.model.device.type == "cpu"
    ids = bf16.prompt_token_ids(CHAT)
    (samples,) = bf16.generate([ids], SamplingConfig(n=1, temperature=0, max_new_tokens=6), seed=0)
    assert samples[0].num_tokens > 0 and samples[0].prefill == ""  # the toy template prefills nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cli_bad_device_is_one_line_and_writes_nothing(tiny_teacher, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["--backend", "hf", "--teacher", str(tiny_teacher), "--device", "cuda", "--out", str(out)]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "no GPU is visible" in err[0] and "--device cpu" in err[0]
    assert not out.exists()


def test_cli_prints_the_backend_it_picked(tmp_path, capsys):
    # --logprobs needs vllm: on a machine where the auto pick is hf, that is the error (nothing loads)
    import importlib.util

    if importlib.util.find_spec("vllm") and torch.cuda.device_count():
        pytest.skip("the auto pick here is vllm")
    assert main(["--logprobs", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "backend: hf (" in err and "--backend chooses" in err and "--backend vllm" in err
