"""transformers `generate` on CPU or GPU(s): the backend of the embedded toy default, and of any
machine without vLLM.

Placement (`placement`): `device="auto"` puts the model on the GPU when one is visible, spreads it
over all visible GPUs with `device_map="auto"` when there are several, else runs on CPU; `dtype="auto"`
is bfloat16 on a GPU (float16 where bf16 is unsupported) and float32 on CPU.

Prompts are sorted by length and cut into batches of similar length (length bucketing), so little
compute is spent on padding; each batch samples all n completions of its prompts in one call. New
tokens are capped so that the longest prompt of a batch plus its completion fits
`max_position_embeddings`. Generation stops at the tokenizer's EOS and at every EOS id of the model's
generation config (as vLLM does), so the two backends end a sample at the same token.
"""

import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trace_gen.backends.base import DTYPES, ContextCap, Sample, SamplingConfig, think_prefill
from trace_gen.errors import UsageError


def placement(device: str, dtype: str, gpus: int, bf16_supported: bool) -> tuple[str | None, str]:
    """(device_map for from_pretrained, dtype name) for --device/--dtype on a machine with `gpus`
    visible GPUs. device: auto | cpu | cuda | cuda:N; None means plain CPU loading."""
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cpu":
        return None, "float32" if dtype == "auto" else dtype
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")
    index = device[5:]  # "" for plain "cuda": every visible GPU
    if gpus == 0:
        raise UsageError(f"--device {device} but no GPU is visible to torch; use --device cpu (or auto)")
    if index and int(index) >= gpus:
        raise UsageError(f"--device {device} but only {gpus} GPU(s) are visible (cuda:0..cuda:{gpus - 1})")
    device_map = f"cuda:{index}" if index else ("cuda:0" if gpus == 1 else "auto")
    if dtype == "auto":
        dtype = "bfloat16" if bf16_supported else "float16"
    return device_map, dtype


@dataclass
class HFBackend:
    tokenized = True  # class attribute: prompts are token ids (the pipeline checks their budget)
    model_path: str
    batch_size: int = 64  # prompts per generate call (sequences = batch_size * n)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (see `placement`)
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    trust_remote_code: bool = False

    def __post_init__(self):
        gpus = torch.cuda.device_count()
        device_map, dtype = placement(
            self.device, self.dtype, gpus, bool(gpus) and torch.cuda.is_bf16_supported()
        )
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_path, trust_remote_code=self.trust_remote_code
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:  # Llama-3 tokenizers have none; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path,
            dtype=getattr(torch, dtype),
            device_map=device_map,
            trust_remote_code=self.trust_remote_code,
        )
        self.model.eval()
        self.context = ContextCap(self.model.config.max_position_embeddings)
        self.max_prompt_tokens = self.context.context - 1
        eos = self.model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.eos_ids = list(dict.fromkeys([self.tokenizer.eos_token_id, *eos]))
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def close(self) -> None:
        """Free the weights now (compare loads one model after another)."""
        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

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
        batch = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt").to(self.model.device)
        max_new = self.context(sampling.max_new_tokens, max(len(p) for p in prompts))
        greedy = sampling.temperature == 0
        t0 = time.perf_counter()
        out = self.model.generate(
            **batch,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            max_new_tokens=max_new,
            num_return_sequences=sampling.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            stop_strings=list(sampling.stop) or None,
            tokenizer=self.tokenizer if sampling.stop else None,
        )
        self.generate_seconds += time.perf_counter() - t0
        new = out[:, batch["input_ids"].shape[1] :]
        prefills = [think_prefill(self.tokenizer.decode(p)) for p in prompts]
        samples = []
        for j, row in enumerate(new.tolist()):
            end = next((k for k, t in enumerate(row) if t in self.eos_ids), None)
            if end is not None:  # counted like vLLM counts it (EOS included), not in the text
                row, text_ids, finish = row[: end + 1], row[:end], "stop"
            else:  # cut at the limit, or by a stop string (then padded after it)
                while row and row[-1] == self.tokenizer.pad_token_id:
                    row = row[:-1]
                text_ids = row
                finish = "length" if len(row) >= max_new else "stop"  # a stop string
            self.generated_tokens += len(row)
            prefill = prefills[j // sampling.n]
            text = self.tokenizer.decode(text_ids, skip_special_tokens=False)
            samples.append(Sample(prefill + text, len(row), finish, prefill=prefill))
        n = sampling.n
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]
