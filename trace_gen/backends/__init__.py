"""Generation backends. Each takes prompts and returns, per prompt, n `Sample`s.

`make_backend(kind, model, ...)` is the one place that maps a `--backend` name to a backend; the
trace generator and the evaluation harness both build theirs through it. Every backend has
`prompt_token_ids(messages)`, `generate(prompts, SamplingConfig, seed)`, `close()`, `batch_size`,
`generated_tokens`, `generate_seconds` and `tokenized` (False when a prompt is the chat itself).
Every backend returns whole assistant texts (a `<think>` the template prefilled comes first,
`Sample.prefill`) and caps new tokens to the model's context; `base.auto_backend()` picks one when
the user names none.

- hf: transformers `generate`, length-bucketed batches; `device`, `dtype` (GPU when visible);
- vllm: in-process `vllm.LLM`; `engine_args` are vLLM's own EngineArgs fields;
- openai: an OpenAI-compatible server; `base_url`, `api_key_env`, `concurrency`, `max_retries`, ...
"""

from trace_gen.backends.base import Sample, SamplingConfig

BACKENDS = ("hf", "vllm", "openai")


def make_backend(kind: str, model: str, batch_size: int = 64, trust_remote_code: bool = False, **options):
    """A backend by name; `options` go to its constructor (engine_args for vllm, base_url for openai)."""
    if kind == "hf":
        from trace_gen.backends.hf import HFBackend

        return HFBackend(model, batch_size=batch_size, trust_remote_code=trust_remote_code, **options)
    if kind == "vllm":
        from trace_gen.backends.vllm import VLLMBackend

        return VLLMBackend(model, batch_size=batch_size, trust_remote_code=trust_remote_code, **options)
    if kind == "openai":
        from trace_gen.backends.openai import OpenAIBackend

        return OpenAIBackend(model, batch_size=batch_size, **options)
    raise ValueError(f"unknown backend {kind!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Sample", "SamplingConfig", "make_backend"]
