"""What every backend takes and returns, so all of them write the same record schema."""

from dataclasses import asdict, dataclass, field

import numpy as np


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
    text: str
    num_tokens: int
    finish_reason: str  # "stop" | "length" | backend-specific ("abort", "error", ...)
    # With SamplingConfig.logprobs = k (vllm backend): the generated token ids (T,) and, per position,
    # the teacher's k most likely tokens and their log-probabilities, both (T, k), highest first.
    token_ids: np.ndarray | None = field(default=None, repr=False)  # (T,) int32
    topk_ids: np.ndarray | None = field(default=None, repr=False)  # (T, k) int32
    topk_logprobs: np.ndarray | None = field(default=None, repr=False)  # (T, k) float16
