"""Any OpenAI-compatible chat endpoint (`vllm serve`, SGLang, hosted APIs) as a teacher backend.

Requests go through the `openai` package's AsyncOpenAI client (one connection pool for the backend's
life, at most `concurrency` requests in flight). Before the first one the server is checked (GET
/models): an unreachable server, or a refused key, fails in seconds with one line. Each request is
then retried with exponential backoff and jitter on 408/409/429/5xx, timeouts and dropped connections,
honouring Retry-After. An answer the request itself cannot fix (400 bad parameter, 401/403 key, 404
model name, 422) stops the run with the server's own message, since every other request would fail
the same way; the exception is a prompt longer than the server's context, whose samples are rejected
with the server's message while the run goes on. When the server returns fewer than `n` choices (some
ignore `n`), the rest are drawn by further requests with seeds `seed + j`. The API key is read from
the environment variable named by `api_key_env` for each request and sent only in the Authorization
header: it is never stored in the backend's options, outputs or logs.

The server applies the teacher's chat template, so a "prompt" here is the chat itself:
`prompt_token_ids(messages)` returns the messages unchanged and `tokenized` is False (the prompt
token budget is then the server's to enforce; vLLM caps max_tokens to its context itself).

R1-style teachers (R1-Distill, QwQ, Qwen3-Thinking-2507) have templates that end the generation
prompt with "<think>\n", so the answer starts inside the reasoning. To store the same whole text as
the hf and vllm backends do, the backend asks the server once how it renders a prompt (vLLM's
/tokenize and /detokenize) and puts that prefill back (`Sample.prefill`). A server-side reasoning
parser's `reasoning`/`reasoning_content` is folded back exactly as the model wrote it: prefill (or the
`<think>` the parser removed) + reasoning + `</think>` + content. A server that cannot render prompts
(not vLLM) gets the prefill inferred from each answer instead (`assistant_text`).

Usage:
    backend = OpenAIBackend("Qwen/QwQ-32B", base_url="http://127.0.0.1:8000/v1", concurrency=128)
    samples = backend.generate([chat], SamplingConfig(n=4), seed=0)
    backend.close()
"""

import asyncio
import email.utils
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable

import httpx2  # the openai package's HTTP client (a dependency of openai>=3): only its pool limits
import openai
from openai import APIConnectionError, APIStatusError, AsyncOpenAI

from trace_gen.backends.base import R1_PREFILL, THINK_START, Sample, SamplingConfig, think_prefill
from trace_gen.backends.openai_options import OpenAIOptions
from trace_gen.errors import BackendError

THINK_END = "</think>"
# The retry policy is ours, not the client's (AsyncOpenAI runs with max_retries=0): its backoff stops
# growing at 8 s and it gives up at once on a Retry-After over 2 minutes, so its retries ride out
# ~30 s of a server that restarts or sheds load; at hundreds of thousands of requests a teacher
# server that reloads a 32B model mid-run must not end the run. Ours grows to a minute, honours
# Retry-After up to 10 minutes, and counts the retries (`retries`).
BACKOFF_S = 1.0  # the first backoff; doubled per attempt, times a jitter of 0.5-1.5
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 600.0
CONNECT_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 30.0  # for GET /models before the first request


def retryable(status: int) -> bool:
    """Whether an HTTP status may succeed on a later try (timeouts, conflicts, rate limits, 5xx)."""
    return status in (408, 409, 429) or status >= 500


def retry_after_seconds(headers) -> float | None:
    """Seconds a server asked to wait (`retry-after-ms`, or `Retry-After` as seconds or an HTTP
    date); None when it did not say or said it unreadably."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
    date = headers.get("retry-after")
    parsed = email.utils.parsedate_tz(date) if date else None
    return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry `attempt + 1`: the server's Retry-After when given (at most
    MAX_RETRY_AFTER_S), else exponential backoff with jitter (at most MAX_BACKOFF_S)."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S)
    return min(MAX_BACKOFF_S, BACKOFF_S * 2 ** min(attempt, 20) * (0.5 + random.random()))


def server_message(err: APIStatusError) -> str:
    """The server's own error text on one line (OpenAI/vLLM `error.message`, FastAPI `detail`)."""
    body = err.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body
    text = " ".join(str(body if body is not None else err.message).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def describe(err: openai.APIError) -> str:
    """What went wrong with one request, for a one-line message."""
    if isinstance(err, APIStatusError):
        return f"HTTP {err.status_code}: {server_message(err)}"
    if isinstance(err, openai.APITimeoutError):
        return "no answer within the timeout"
    chain = [err]  # e.g. APIConnectionError <- httpx ConnectError <- ... <- ConnectionRefusedError
    while len(chain) < 10 and (chain[-1].__cause__ or chain[-1].__context__):
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    for cause in reversed(chain):
        if isinstance(cause, OSError) and cause.strerror:  # "connection refused", "name or service not known"
            return (os.strerror(cause.errno) if (cause.errno or 0) > 0 else cause.strerror).lower()
    cause = chain[min(1, len(chain) - 1)]
    return f"{type(cause).__name__}: {cause}" if str(cause) else err.message


class OpenAIBackend:
    tokenized = False
    max_prompt_tokens = None  # the server enforces its context; a too-long prompt is a counted 400

    def __init__(self, model: str, batch_size: int = 64, **options):
        """options: the fields of `OpenAIOptions` (base_url, api_key_env, extra_body, concurrency,
        max_retries, request_timeout)."""
        self.model = model
        self.batch_size = batch_size
        self.options = OpenAIOptions(**options)
        self.base_url = self.options.base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")  # vLLM's /tokenize and /detokenize live here
        self.generated_tokens = 0
        self.generate_seconds = 0.0
        self.retries = 0  # requests retried so far
        self.prefill: str | None = None  # the served template's <think> prefill; None: unknown
        self.served_models: list[str] | None = None  # from GET /models, for a 404's message
        self._checked = False  # checked the server and asked for its prompt rendering yet
        # One loop for the backend's life: the client's pooled connections belong to the loop that
        # opened them, so a fresh asyncio.run() per batch would reconnect every time.
        self._loop = asyncio.new_event_loop()
        c = self.options.concurrency
        self._client = AsyncOpenAI(
            base_url=self.base_url,
            api_key="-",  # never sent: each request sets (or omits) Authorization itself, see _headers
            max_retries=0,  # see BACKOFF_S
            timeout=openai.Timeout(self.options.request_timeout, connect=CONNECT_TIMEOUT_S),
            http_client=openai.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=c, max_keepalive_connections=c)
            ),
        )

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()

    def prompt_token_ids(self, messages: list[dict]) -> list[dict]:
        """The chat itself: the server renders it with the teacher's template."""
        return [dict(m) for m in messages]

    def generate(self, prompts: list[list[dict]], sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        """`sampling.n` samples per chat, in the input order; prompt i uses seeds seed + i*n + j."""
        if sampling.logprobs:
            raise BackendError("--logprobs needs token ids: use the vllm backend (openai returns text)")
        t0 = time.perf_counter()
        results = self._loop.run_until_complete(self._generate_all(prompts, sampling, seed))
        self.generate_seconds += time.perf_counter() - t0
        self.generated_tokens += sum(s.num_tokens for samples in results for s in samples)
        return results

    async def _generate_all(self, prompts, sampling: SamplingConfig, seed: int) -> list[list[Sample]]:
        if prompts and not self._checked:
            await self._check_server()
            self.prefill = await self._template_prefill(prompts[0])
            self._checked = True
        limit = asyncio.Semaphore(self.options.concurrency)
        tasks = [
            asyncio.ensure_future(self._samples(limit, chat, sampling, seed + i * sampling.n))
            for i, chat in enumerate(prompts)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # a fatal answer: stop the other requests too, then report it
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _samples(self, limit, chat, sampling: SamplingConfig, seed: int) -> list[Sample]:
        samples: list[Sample] = []
        while len(samples) < sampling.n:  # a server that ignores n: ask again with the next seeds
            async with limit:
                samples += await self._request(chat, sampling, sampling.n - len(samples), seed + len(samples))
        return samples[: sampling.n]

    def _headers(self) -> dict:
        """Authorization for one request, from the environment now (omitted when the variable is unset)."""
        key = os.environ.get(self.options.api_key_env)
        return {"Authorization": f"Bearer {key}" if key else openai.omit}

    async def _check_server(self) -> None:
        """GET /models before the first request: an unreachable server or a refused key fails here in
        seconds, not after every request's retries. A server without /models is not an error."""
        try:
            page = await self._client.models.list(
                extra_headers=self._headers(), timeout=min(CHECK_TIMEOUT_S, self.options.request_timeout)
            )
        except APIConnectionError as err:
            raise BackendError(
                f"cannot reach the teacher server at {self.base_url} ({describe(err)}); start it (e.g. "
                "`vllm serve MODEL --port 8000`) or pass --base-url of a running one"
            ) from None
        except APIStatusError as err:
            if err.status_code in (401, 403):
                raise BackendError(self._fatal(err, "/models")) from None
            return
        self.served_models = [m.id for m in page.data]

    async def _template_prefill(self, chat) -> str | None:
        """The served template's <think> prefill, from the server's own rendering of `chat` (vLLM's
        /tokenize and /detokenize); None when the server has no such endpoints."""
        body = {"model": self.model, "messages": chat, "add_generation_prompt": True}
        for key in ("chat_template", "chat_template_kwargs"):  # they change the rendering
            if key in self.options.extra_body:
                body[key] = self.options.extra_body[key]
        try:
            tokens = await self._post(self.root + "/tokenize", body)
            if isinstance(tokens, dict) and "tokens" in tokens:
                rendered = await self._post(
                    self.root + "/detokenize", {"model": self.model, "tokens": tokens["tokens"]}
                )
                if isinstance(rendered, dict) and "prompt" in rendered:
                    return think_prefill(rendered["prompt"])
            why = "no rendered prompt in its answer"
        except APIStatusError as err:
            why = f"no vLLM /tokenize: HTTP {err.status_code}"
        print(
            f"note: {self.root} does not render prompts ({why}); a <think> prefill of the server's "
            "template is inferred from each answer",
            file=sys.stderr,
        )
        return None

    async def _post(self, url: str, body: dict) -> object:
        """POST `body` to an endpoint outside the OpenAI API (absolute `url`); its JSON answer."""
        options = {"headers": self._headers()}
        return await self._retrying(
            lambda: self._client.post(url, cast_to=object, body=body, options=options)
        )

    async def _request(self, chat, sampling: SamplingConfig, n: int, seed: int) -> list[Sample]:
        def create():
            return self._client.chat.completions.create(
                model=self.model,
                messages=chat,
                n=n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=seed,
                stop=list(sampling.stop) if sampling.stop else openai.omit,
                extra_body=self.options.extra_body,
                extra_headers=self._headers(),
            )

        try:
            completion = await self._retrying(create)
        except APIStatusError as err:
            message = server_message(err)
            if err.status_code == 413 or "context length" in message.lower():  # this prompt is too long
                return [Sample("", 0, f"error: HTTP {err.status_code} {message}")] * n
            raise BackendError(self._fatal(err, "/chat/completions")) from None
        samples = parse_choices(completion.to_dict(), sampling.max_new_tokens, self.prefill)
        if not samples:
            raise BackendError(f"teacher server {self.base_url} answered a chat request with no choices")
        return samples

    async def _retrying(self, call: Callable[[], Awaitable]):
        """`call()`'s result, calling again after a retryable failure (see `retryable`; timeouts and
        dropped connections too) up to max_retries times. Other HTTP errors are raised as they are;
        BackendError when the retries run out."""
        for attempt in range(self.options.max_retries + 1):
            try:
                return await call()
            except (APIConnectionError, APIStatusError) as err:
                status = err.status_code if isinstance(err, APIStatusError) else None
                if status is not None and not retryable(status):
                    raise
                if attempt == self.options.max_retries:
                    raise BackendError(
                        f"teacher server {self.base_url} failed {attempt + 1} times in a row on one request "
                        f"({describe(err)}); is it overloaded or down? rerun the same command to resume"
                    ) from None
                self.retries += 1
                after = retry_after_seconds(err.response.headers) if status is not None else None
                await asyncio.sleep(retry_delay(attempt, after))
        raise AssertionError("unreachable")

    def _fatal(self, err: APIStatusError, endpoint: str) -> str:
        """One line for an answer no retry can fix: the server's message and what to check."""
        status = err.status_code
        if status in (401, 403):
            unset = "" if os.environ.get(self.options.api_key_env) else " (it is not set)"
            hint = f"check the key in ${self.options.api_key_env}{unset} (--api-key-env names the variable)"
        elif status == 404:
            served = f"; the server serves: {', '.join(self.served_models)}" if self.served_models else ""
            hint = f"check the served model name {self.model!r}{served}, and --base-url"
        else:
            hint = "check --extra-body and the sampling flags"
        return f"teacher server {self.base_url} answered HTTP {status} to {endpoint}: {server_message(err)}; {hint}"


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
