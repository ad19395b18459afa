"""The teachers of on-policy distillation, and the check that they share the student's vocabulary.

ModelTeacher   a frozen model in this process (teacher_dtype, or nf4 4-bit). The trainer runs its backbone
               on prompt + student sample and fuses its lm_head into the chunked loss (full vocabulary), or
               takes its top-k per position chunk by chunk (`teacher_top_k`); [T, V] logits never exist whole.
ServerTeacher  an OpenAI-compatible server that returns PROMPT log-probs: vLLM's /v1/completions with the
               token ids of prompt + sample as the prompt, `max_tokens: 1` and its `prompt_logprobs: K`
               extension. The server needs `--max-logprobs >= K` (vLLM's default 20). Prefix caching may stay
               on: vLLM (checked in 0.32's SamplingParams) skips reading the prefix cache for any request
               with prompt_logprobs, so no position comes back empty.

Hand-written HTTP (urllib + a thread pool, retries with backoff): sft reads other stages' files and does not
import trace_gen's generation backends, the `openai` package is not a dependency, and `prompt_logprobs` is a
vLLM extension that the OpenAI clients do not model anyway.
"""

import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from sft.errors import UsageError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class ModelTeacher:
    name: str
    model: torch.nn.Module

    @property
    def vocab_rows(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]


def load_model_teacher(name: str, path: str, args, training_args) -> ModelTeacher:
    from sft.train import load_teacher  # the loader `sft run --kd_source online` uses (dtype / nf4)

    # load_teacher reads these three fields of DistillArguments
    spec = SimpleNamespace(
        teacher_model_name_or_path=path,
        teacher_dtype=args.teacher_dtype,
        teacher_load_in_4bit=args.teacher_load_in_4bit,
    )
    model = load_teacher(spec, training_args)
    return ModelTeacher(name, model.requires_grad_(False).eval())


@torch.no_grad()
def model_topk(
    hidden: torch.Tensor, weight: torch.Tensor, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., H) teacher hidden states, (V, H) lm_head weight -> its top-k (ids (..., k) int64, log-probs (..., k)
    fp32) of log_softmax(hidden @ weight.T), computed `chunk_size` rows at a time."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    ids, lps = [], []
    for h in flat.split(chunk_size):
        top = (h @ weight.T).float().log_softmax(-1).topk(k, dim=-1)
        ids.append(top.indices)
        lps.append(top.values)
    shape = (*hidden.shape[:-1], k)
    return torch.cat(ids).reshape(shape), torch.cat(lps).reshape(shape)


class ServerTeacher:
    """Top-k prompt log-probs of token sequences from a vLLM OpenAI-compatible server."""

    def __init__(
        self,
        name: str,
        base_url: str,
        top_k: int,
        model: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 6,
    ):
        self.name, self.top_k = name, top_k
        self.base_url = base_url.rstrip("/")
        self.api_key_env, self.timeout_s, self.max_retries = api_key_env, timeout_s, max_retries
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"teacher-{name}")
        self.model = model or self._served_model()

    def _served_model(self) -> str:
        status, payload = self._request("GET", "/models", None)
        models = payload.get("data") if status == 200 and isinstance(payload, dict) else None
        if not models:
            raise UsageError(
                f"teacher server {self.base_url} did not list its models (GET /models: {status} {str(payload)[:200]}); "
                "is it running? or pass --teacher_server_model NAME"
            )
        return models[0]["id"]

    def probe(self, tokenizer, token_ids: list[int]) -> str:
        """One scoring request before training: the server returns prompt log-probs, and the tokens it reads
        are the student's (decoded the same). Returns a lint line; raises UsageError with one line if not."""
        status, payload, rows = self._score(token_ids)
        if rows is None:
            if status == 0:
                detail = f"unreachable: {payload}"
            elif status != 200:
                detail = f"HTTP {status}: {str(payload.get('error', payload) if isinstance(payload, dict) else payload)[:200]}"
            else:
                detail = "HTTP 200 without prompt_logprobs"
            raise UsageError(
                f"teacher server {self.base_url} returned no prompt logprobs for a scoring request ({detail}); it "
                f"must be vLLM's OpenAI-compatible server with --max-logprobs >= {self.top_k}, e.g. "
                f"`vllm serve TEACHER --max-logprobs {max(self.top_k, 20)}`"
            )
        for pos, entry in enumerate(rows[1:], start=1):
            want = token_ids[pos]
            served = entry.get(str(want), {}).get("decoded_token")
            mine = tokenizer.decode([want])
            if served is not None and served != mine:
                raise UsageError(
                    f"teacher server {self.name} reads token {want} as {served!r}, the student's tokenizer as "
                    f"{mine!r}: token-level distillation needs the student's tokenizer on the teacher"
                )
        return f"teacher {self.name}: server {self.base_url} ({self.model}), top-{self.top_k} prompt logprobs"

    def topk(self, sequences: list[list[int]], starts: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per sequence, the teacher's top-k at positions starts[i] .. len - 1 (the sampled tokens): ids
        (n_i, K) int64 and log-probs (n_i, K) fp32, highest first."""
        results = list(self._pool.map(self._score, sequences))
        out = []
        for seq, start, (status, payload, rows) in zip(sequences, starts, results, strict=True):
            if rows is None or len(rows) != len(seq):
                raise RuntimeError(
                    f"teacher server {self.base_url} gave no prompt logprobs for a sequence of {len(seq)} tokens "
                    f"(HTTP {status}: {str(payload)[:200]})"
                )
            ids = torch.zeros(len(seq) - start, self.top_k, dtype=torch.long)
            lps = torch.zeros(len(seq) - start, self.top_k, dtype=torch.float32)
            for j, entry in enumerate(rows[start:]):
                best = sorted(entry.items(), key=lambda kv: kv[1]["rank"])[: self.top_k]
                ids[j] = torch.tensor([int(token) for token, _ in best])
                lps[j] = torch.tensor([v["logprob"] for _, v in best])
            out.append((ids, lps))
        return out

    def _score(self, token_ids: list[int]) -> tuple[int, object, list[dict] | None]:
        """(status, payload, vLLM's prompt_logprobs) for one sequence: a list (one per position; the first
        None) of {token id: {"logprob", "rank", "decoded_token"}}, the top-K plus the token at that position."""
        body = {"model": self.model, "prompt": list(token_ids), "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": self.top_k}  # fmt: skip
        status, payload = self._request("POST", "/completions", body)
        if status != 200 or not isinstance(payload, dict):
            return status, payload, None
        return status, payload, (payload.get("choices") or [{}])[0].get("prompt_logprobs")

    def _request(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        """(status, parsed JSON or error text); retries 429/5xx/connection errors with jittered backoff."""
        headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                try:
                    status, payload = err.code, json.loads(err.read() or b"{}")
                except (json.JSONDecodeError, OSError):
                    status, payload = err.code, {}
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                status, payload = 0, f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            if status not in RETRY_STATUS and status != 0:
                return status, payload
            if attempt < self.max_retries:
                time.sleep(min(30.0, 2**attempt * (0.5 + random.random())))
        return status, payload


def check_tokenizers(student_tokenizer, teacher_tokenizer, teacher: str) -> None:
    """Every token of the smaller tokenizer at the same id in the larger (the rule of `sft run`'s
    `check_kd_pair`: Qwen2.5 and Qwen3 qualify, R1-Distill-Qwen and Qwen2.5 do not), or one line naming the
    first id where they differ."""
    if teacher_tokenizer is None:
        return
    mine, theirs = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    small, large = sorted((mine, theirs), key=len)
    bad = [i for token, i in small.items() if large.get(token) != i]
    if not bad:
        return
    first = min(bad)
    by_id = [{i: t for t, i in vocab.items()} for vocab in (mine, theirs)]
    raise UsageError(
        f"student and teacher {teacher} tokenizers differ at id {first} ({by_id[0].get(first)!r} vs "
        f"{by_id[1].get(first)!r}): token-level distillation needs one tokenizer; use a teacher of the student's family"
    )


def scored_vocab(student_rows: int, tokenizer_len: int, teacher_rows: dict[str, int]) -> tuple[int, str]:
    """How many vocabulary rows the divergence compares, and a lint line saying so.

    Equal lm_head sizes: all of them. Different sizes (Qwen2.5-1.5B 151,936 vs 7B 152,064, one 151,665-token
    tokenizer): the first `len(tokenizer)` rows, the real tokens (the rows past them are padding no text
    encodes to); both distributions are renormalised over those. Otherwise one UsageError line.
    """
    sizes = {"student": student_rows, **teacher_rows}
    if len(set(sizes.values())) == 1:
        return (
            student_rows,
            f"vocab: student = teacher{'s' if len(teacher_rows) > 1 else ''} = {student_rows:,} rows",
        )
    listed = ", ".join(f"{k} {v:,}" for k, v in sizes.items())
    if tokenizer_len <= min(sizes.values()):
        return tokenizer_len, (
            f"vocab: lm_head rows differ ({listed}); the loss compares the tokenizer's {tokenizer_len:,} real tokens"
        )
    raise UsageError(
        f"student and teacher vocabularies differ ({listed} rows) and the tokenizer's {tokenizer_len:,} tokens do not "
        "fit the smaller: token-level distillation needs the same vocabulary"
    )
