"""transformers `generate` on CPU (or one GPU): the backend of the embedded toy default.

Prompts are sorted by length and cut into batches of similar length (length bucketing), so little
compute is spent on padding; each batch samples all n completions of its prompts in one call.
"""

import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trace_gen.backends.base import Sample, SamplingConfig


@dataclass
class HFBackend:
    tokenized = True  # class attribute: prompts are token ids (the pipeline checks their budget)
    model_path: str
    batch_size: int = 64  # prompts per generate call (sequences = batch_size * n)
    dtype: str = "float32"
    trust_remote_code: bool = False

    def __post_init__(self):
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_path, trust_remote_code=self.trust_remote_code
        )
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=getattr(torch, self.dtype), trust_remote_code=self.trust_remote_code
        )
        self.model.eval()
        self.max_prompt_tokens = self.model.config.max_position_embeddings - 1
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def prompt_token_ids(self, messages: list[dict]) -> list[int]:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        """Sample `sampling.n` completions for each tokenised prompt; results in the input order."""
        assert not sampling.logprobs, "top-k logprobs come from the vllm backend (--backend vllm)"
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[list[Sample]] = [[] for _ in prompts]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            torch.manual_seed(seed + start)
            for i, samples in zip(
                idx, self._generate_batch([prompts[i] for i in idx], sampling), strict=True
            ):
                results[i] = samples
        return results

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[Sample]]:
        batch = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
        greedy = sampling.temperature == 0
        t0 = time.perf_counter()
        out = self.model.generate(
            **batch,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=sampling.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            stop_strings=list(sampling.stop) or None,
            tokenizer=self.tokenizer if sampling.stop else None,
        )
        self.generate_seconds += time.perf_counter() - t0
        new = out[:, batch["input_ids"].shape[1] :]
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        samples = []
        for row in new.tolist():
            if eos in row:
                row, finish = row[: row.index(eos) + 1], "stop"
            else:
                row = [t for t in row if t != pad]
                finish = "length" if len(row) >= sampling.max_new_tokens else "stop"  # a stop string
            self.generated_tokens += len(row)
            text = self.tokenizer.decode(row, skip_special_tokens=False).removesuffix(
                self.tokenizer.eos_token
            )
            samples.append(Sample(text=text, num_tokens=len(row), finish_reason=finish))
        n = sampling.n
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]
