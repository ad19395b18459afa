"""What every backend takes and returns, so all of them write the same record schema."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 4
    temperature: float = 0.6  # DeepSeek-R1 defaults
    top_p: float = 0.95
    max_new_tokens: int = 32768
    seed: int = 0

    def as_dict(self, **extra) -> dict:
        return {**asdict(self), **extra}


@dataclass(frozen=True)
class Sample:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" | "length" | backend-specific ("abort", "error", ...)
