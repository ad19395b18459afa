"""Generation backends. Each takes tokenised chat prompts and returns, per prompt, n `Sample`s.

`make_backend(kind, model, ...)` is the one place that maps a `--backend` name to a backend; the
trace generator and the evaluation harness both build theirs through it.
"""

from trace_gen.backends.base import Sample, SamplingConfig

BACKENDS = ("hf",)


def make_backend(kind: str, model: str, batch_size: int = 64, trust_remote_code: bool = False):
    if kind == "hf":
        from trace_gen.backends.hf import HFBackend

        return HFBackend(model, batch_size=batch_size, trust_remote_code=trust_remote_code)
    raise ValueError(f"unknown backend {kind!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Sample", "SamplingConfig", "make_backend"]
