"""Any OpenAI-compatible chat endpoint (`vllm serve`, SGLang, hosted APIs) as a teacher backend.

Requests run concurrently (at most `concurrency` in flight) from an asyncio loop; each is retried
with exponential backoff and jitter on 429, 5xx, timeouts and connection errors (honouring
Retry-After), and other 4xx answers become a rejected sample with the server's message. When the
server returns fewer than `n` choices (some ignore `n`), the rest are drawn by repeated requests with
seeds `seed + j`. The API key is read from the environment variable named by `api_key_env` and sent
only in the Authorization header: it is never stored in the backend's settings, outputs or logs.

The server applies the teacher's chat template, so a "prompt" here is the chat itself:
`prompt_token_ids(messages)` returns the messages unchanged and `tokenized` is False (the prompt
token budget is then the server's to enforce; a too-long prompt comes back as a 400 and is counted;
vLLM caps max_tokens to its context itself).

R1-style teachers (R1-Distill, QwQ, Qwen3-Thinking-2507) have templates that end the generation
prompt with "<think>\n", so the answer starts inside the reasoning. To store the same whole text as
the hf and vllm backends do, the backend asks the server once how it renders a prompt (vLLM's
/tokenize and /detokenize) and puts that prefill back (`Sample.prefill`). A server-side reasoning
parser's `reasoning`/`reasoning_content` is folded back exactly as the model wrote it: prefill (or the
`<think>` the parser removed) + reasoning + `</think>` + content. A server that cannot render prompts
(not vLLM) gets the prefill inferred from each answer instead (`assistant_text`).

Usage:
    backend = OpenAIBackend("Qwen/QwQ-32B", base_url="http://127.0.0.1:8000/v1", concurrency=128)
"""

import asyncio
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from trace_gen.backends.base import R1_PREFILL, THINK_START, Sample, SamplingConfig, think_prefill
from trace_gen.errors import BackendError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404}  # wrong key or model name: every request would fail the same way
THINK_END = "</think>"


class OpenAIBackend:
    tokenized = False
    max_prompt_tokens = None  # the server enforces its context; a too-long prompt is a counted 400

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        batch_size: int = 64,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 64,
        max_retries: int = 8,
        timeout_s: float = 3600.0,
        backoff_s: float = 1.0,
        extra_body: dict | None = None,
    ):
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.batch_size = batch_size
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.extra_body = dict(extra_body or {})
        self.generated_tokens = 0
        self.generate_seconds = 0.0
        self.retries = 0  # requests retried so far (429/5xx/timeouts)
        self.root = self.url.removesuffix("/chat/completions").removesuffix("/v1")
        self.prefill: str | None = None  # the served template's <think> prefill; None: unknown
        self._rendered = False  # asked the server for its prompt rendering yet
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai")

    def close(self) -> None:
        self._pool.shutdown()

    def prompt_token_ids(self, messages: list[dict]) -> list[dict]:
        """The chat itself: the server renders it with the teacher's template."""
        return [dict(m) for m in messages]

    def generate(self, prompts: list[list[dict]], sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        """`sampling.n` samples per chat, in the input order; prompt i uses seeds seed + i*n + j."""
        if sampling.logprobs:
            raise BackendError("--logprobs needs token ids: use the vllm backend (openai returns text)")
        t0 = time.perf_counter()
        results = asyncio.run(self._generate_all(prompts, sampling, seed))
        self.generate_seconds += time.perf_counter() - t0
        self.generated_tokens += sum(s.num_tokens for samples in results for s in samples)
        return results

    async def _generate_all(self, prompts, sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        if prompts and not self._rendered:
            self.prefill = await self._template_prefill(prompts[0])
            self._rendered = True
        limit = asyncio.Semaphore(self.concurrency)
        tasks = [
            self._samples(limit, chat, sampling, seed + i * sampling.n) for i, chat in enumerate(prompts)
        ]
        return list(await asyncio.gather(*tasks))

    async def _samples(self, limit, chat, sampling: SamplingConfig, seed: int) -> list[Sample]:
        samples: list[Sample] = []
        while len(samples) < sampling.n:  # repeated requests when the server ignores n
            want = sampling.n - len(samples)
            async with limit:
                samples += await self._request(chat, sampling, want, seed + len(samples))
        return samples[: sampling.n]

    def _body(self, chat, sampling: SamplingConfig, n: int, seed: int) -> dict:
        body = {
            "model": self.model,
            "messages": chat,
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
            **self.extra_body,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        return body

    async def _template_prefill(self, chat) -> str | None:
        """The served template's <think> prefill, from the server's own rendering of `chat` (vLLM's
        /tokenize and /detokenize); None when the server has no such endpoints."""
        body = {"model": self.model, "messages": chat, "add_generation_prompt": True}
        for key in ("chat_template", "chat_template_kwargs"):  # they change the rendering
            if key in self.extra_body:
                body[key] = self.extra_body[key]
        status, payload = await self._call(self.root + "/tokenize", body)
        if status == 200 and isinstance(payload, dict) and "tokens" in payload:
            status, payload = await self._call(
                self.root + "/detokenize", {"model": self.model, "tokens": payload["tokens"]}
            )
            if status == 200 and isinstance(payload, dict) and "prompt" in payload:
                return think_prefill(payload["prompt"])
        print(
            f"note: {self.root} does not render prompts (no vLLM /tokenize: HTTP {status}); a <think> "
            "prefill of the server's template is inferred from each answer",
            file=sys.stderr,
        )
        return None

    async def _request(self, chat, sampling: SamplingConfig, n: int, seed: int) -> list[Sample]:
        status, payload = await self._call(self.url, self._body(chat, sampling, n, seed))
        if status == 200:
            return parse_choices(payload, sampling.max_new_tokens, self.prefill)
        if status in FATAL_STATUS:
            raise BackendError(
                f"teacher server {self.url} answered HTTP {status} ({str(payload)[:200]}); "
                f"check --teacher (the served model name) and the key in ${self.api_key_env}"
            )
        message = str(payload.get("error", payload))[:300] if isinstance(payload, dict) else ""
        return [Sample("", 0, f"error: HTTP {status} {message}")]  # a 4xx about this request: reject, go on

    async def _call(self, url: str, body: dict) -> tuple[int, object]:
        """POST `body` with retries on 429/5xx/timeouts/no answer; (status, payload) of any other
        answer. BackendError when the retries run out."""
        data = json.dumps(body).encode()
        loop = asyncio.get_running_loop()
        for attempt in range(self.max_retries + 1):
            status, payload, retry_after = await loop.run_in_executor(self._pool, self._post, url, data)
            if status not in RETRY_STATUS and status != 0:
                return status, payload
            if attempt == self.max_retries:
                what = f"HTTP {status}" if status else payload
                raise BackendError(
                    f"teacher server {url} failed after {self.max_retries + 1} attempts ({what}); "
                    "is it running and reachable? rerun the same command to resume"
                )
            self.retries += 1
            delay = retry_after or self.backoff_s * 2**attempt * (0.5 + random.random())
            await asyncio.sleep(min(delay, 120.0))
        raise AssertionError("unreachable")

    def _post(self, url: str, body: bytes) -> tuple[int, object, float | None]:
        """(status, parsed JSON or error text, Retry-After seconds); status 0 = no HTTP answer."""
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return resp.status, json.loads(resp.read()), None
        except urllib.error.HTTPError as err:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            try:
                payload = json.loads(err.read() or b"{}")
            except (json.JSONDecodeError, OSError):
                payload = {}
            return err.code, payload, float(retry_after) if retry_after and retry_after.isdigit() else None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            return 0, f"{type(err).__name__}: {reason}", None


def assistant_text(content: str | None, reasoning: str | None, prefill: str | None) -> tuple[str, str]:
    """(whole assistant text, the part of it the template prefilled) from one chat completion message.

    content, reasoning: the message's fields (reasoning is None without a server-side reasoning
    parser). prefill: the served template's <think> prefill ("" when it has none), None when unknown.
    A reasoning parser splits "[<think>]reasoning</think>content" at the first </think> and drops both
    tags (content is None when nothing follows </think>, or when the sample ended inside the
    reasoning); that is undone here. With the prefill unknown it is inferred: an answer that closes a
    think block it never opened was prefilled "<think>\n"; reasoning that does not start with a
    newline followed a prefilled "<think>\n" (a model that opens the block itself writes "<think>\n").
    """
    if reasoning is None:
        text = content or ""
        if prefill is None:
            closes, opens = text.find(THINK_END), text.find(THINK_START)
            prefill = R1_PREFILL if closes != -1 and not 0 <= opens < closes else ""
        return prefill + text, prefill
    if prefill is None:
        prefill = "" if reasoning.startswith("\n") else R1_PREFILL
    tail = "" if content is None else THINK_END + content
    return (prefill or THINK_START) + reasoning + tail, prefill


def parse_choices(payload: dict, max_tokens: int, prefill: str | None = "") -> list[Sample]:
    """Samples from a chat completion (whole texts, see `assistant_text`).

    `usage.completion_tokens` counts all choices together: with one choice it is exact; with several,
    a choice cut at the limit has `max_tokens` and the rest is shared by text length (an estimate).
    """
    choices = sorted(payload.get("choices") or [], key=lambda c: c.get("index", 0))
    texts, prefills, finish = [], [], []
    for choice in choices:
        message = choice.get("message") or {}
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        text, used = assistant_text(message.get("content"), reasoning, prefill)
        texts.append(text)
        prefills.append(used)
        finish.append(str(choice.get("finish_reason") or "stop"))
    total = int((payload.get("usage") or {}).get("completion_tokens") or 0)
    counts = [max_tokens if f == "length" and len(texts) > 1 else None for f in finish]
    rest = [i for i, c in enumerate(counts) if c is None]
    left = max(0, total - sum(c for c in counts if c is not None))
    chars = sum(len(texts[i]) for i in rest) or 1
    for i in rest:
        counts[i] = min(max_tokens, round(left * len(texts[i]) / chars))
    return [Sample(t, c, f, prefill=p) for t, c, f, p in zip(texts, counts, finish, prefills, strict=True)]
