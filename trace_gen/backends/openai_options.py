"""How to reach an OpenAI-compatible server: one typed options object and the one flag group that fills
it, shared by `python -m trace_gen` and `python -m eval_harness` (flag vocabulary: issue #14).

Kept apart from `openai.py` so that building a parser imports neither the `openai` package nor the
backend (`--help` stays fast, and the hf/vllm backends never need it).

Usage:
    add_openai_arguments(parser)                      # --base-url, --api-key-env, --extra-body, ...
    options = OpenAIOptions.from_args(parser.parse_args())
    backend = make_backend("openai", "Qwen/QwQ-32B", 64, **options.as_kwargs())
"""

import argparse
from dataclasses import asdict, dataclass, field

from trace_gen.errors import UsageError


@dataclass(frozen=True)
class OpenAIOptions:
    base_url: str = "http://127.0.0.1:8000/v1"
    # The NAME of the environment variable holding the key: the key itself is read per request and
    # is never part of the options (nor of any output or log).
    api_key_env: str = "OPENAI_API_KEY"
    extra_body: dict = field(default_factory=dict)  # merged into every chat request body
    concurrency: int = 64  # requests in flight
    max_retries: int = 8  # per request, on 408/409/429/5xx, timeouts and dropped connections
    request_timeout: float = 3600.0  # seconds for one chat request (a long reasoning answer)

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url {self.base_url!r} must start with http:// or https://")
        if self.concurrency < 1 or self.max_retries < 0 or self.request_timeout <= 0:
            raise UsageError(
                "--concurrency must be at least 1, --max-retries at least 0 and --request-timeout positive"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "OpenAIOptions":
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})

    def as_kwargs(self) -> dict:
        """The fields as keyword arguments of `make_backend("openai", ...)`."""
        return asdict(self)


def add_openai_arguments(parser: argparse.ArgumentParser) -> None:
    """The OpenAI-compatible server flags, as one argument group of `parser` (defaults: OpenAIOptions)."""
    from trace_gen.cli import json_object  # the one JSON-object flag type (also --engine-args)

    d = OpenAIOptions()
    g = parser.add_argument_group(
        "OpenAI-compatible server (--backend openai: vllm serve, SGLang, hosted APIs; the model flag is "
        "the served model name)"
    )
    g.add_argument("--base-url", default=d.base_url, metavar="URL", help="server URL, ending in /v1")
    g.add_argument(
        "--api-key-env",
        default=d.api_key_env,
        metavar="NAME",
        help="NAME of the environment variable holding the key (unset: no key is sent)",
    )
    g.add_argument(
        "--extra-body",
        type=json_object,
        default=d.extra_body,
        metavar="JSON",
        help="JSON object merged into every request. vLLM and SGLang drop special tokens such as <think> "
        "from the text unless asked: '{\"skip_special_tokens\": false}'",
    )
    g.add_argument("--concurrency", type=int, default=d.concurrency, metavar="N", help="requests in flight")
    g.add_argument(
        "--max-retries",
        type=int,
        default=d.max_retries,
        metavar="N",
        help="retries per request on 429/5xx, timeouts and dropped connections (backoff, honouring "
        "Retry-After); an unreachable server fails at once",
    )
    g.add_argument(
        "--request-timeout",
        type=float,
        default=d.request_timeout,
        metavar="SECONDS",
        help="seconds allowed for one request",
    )
