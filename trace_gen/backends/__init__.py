"""Generation backends. Each takes chat prompts and returns, per prompt, n samples (a `Sample` each)."""

from trace_gen.backends.base import Sample, SamplingConfig

__all__ = ["Sample", "SamplingConfig"]
