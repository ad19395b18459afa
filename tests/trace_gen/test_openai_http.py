"""The openai backend's HTTP behaviour against a real server process on 127.0.0.1 that misbehaves on
cue (tests/openai_stub_server.py): retries on 429/503 honouring Retry-After, dropped connections,
servers that ignore `n`, reasoning_content folding, fatal 400/401/404 with the server's message, an
unreachable server failing at once, connection reuse, the API key, and the one shared flag group.
What a real vLLM server answers is tested in test_openai_backend.py and test_r1_prefill.py."""

import email.utils
import json
import socket
import time

import pytest

from eval_harness.cli import main as eval_main
from eval_harness.cli import make_parser as eval_parser
from tests.openai_stub_server import stub_server, text_for
from trace_gen.backends import SamplingConfig, make_backend
from trace_gen.backends import openai as openai_backend
from trace_gen.backends.openai import retry_after_seconds, retry_delay, retryable
from trace_gen.backends.openai_options import OpenAIOptions
from trace_gen.cli import main as trace_main
from trace_gen.cli import make_parser as trace_parser
from trace_gen.errors import BackendError, UsageError

CHAT = [{"role": "user", "content": "What is 2 + 3?"}]
CHATS = "/v1/chat/completions"
R1 = "<｜User｜>What is 2 + 3?<｜Assistant｜><think>\n"  # how vLLM renders an R1-Distill prompt


def backend_for(server, **options):
    return make_backend("openai", "stub", 4, base_url=server.url, api_key_env="STUB_KEY", **options)


def generate(server, prompts=(CHAT,), n=2, seed=0, max_new_tokens=100, **options):
    backend = backend_for(server, **options)
    try:
        return backend, backend.generate(
            list(prompts), SamplingConfig(n=n, max_new_tokens=max_new_tokens), seed
        )
    finally:
        backend.close()


def rule(status=None, times=None, **fields) -> dict:
    out = {"path": CHATS, **fields}
    if status is not None:
        out["status"] = status
    if times is not None:
        out["times"] = times
    return out


def test_429_with_retry_after_is_retried(tmp_path):
    limited = rule(429, 2, headers={"Retry-After": "1"}, message="rate limited")
    with stub_server(tmp_path, rendered=R1, rules=[limited]) as server:
        backend, out = generate(server)
        chats = server.requests(CHATS)
    assert [r["answer"] for r in chats] == [429, 429, 200] and backend.retries == 2
    assert all(r["body"] == chats[0]["body"] for r in chats)  # the same request, same seed
    assert [s.text for s in out[0]] == ["<think>\n" + text_for(0), "<think>\n" + text_for(1)]


def test_503_and_dropped_connections_are_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(openai_backend, "BACKOFF_S", 0.1)  # the backoff itself: test_retry_after_and_backoff
    rules = [rule(503, 1), rule(drop="before", times=1), rule(drop="mid", times=1)]
    with stub_server(tmp_path, rendered=R1, rules=rules) as server:
        backend, out = generate(server, n=1)
        answers = [r["answer"] for r in server.requests(CHATS)]
    assert answers == [503, "drop before", "drop mid", 200] and backend.retries == 3
    assert out[0][0].text == "<think>\n" + text_for(0) and out[0][0].num_tokens == len(text_for(0).split(" "))


def test_retries_running_out_is_one_line(tmp_path):
    with stub_server(tmp_path, rendered=R1, rules=[rule(503, headers={"Retry-After": "0"})]) as server:
        with pytest.raises(BackendError) as err:
            generate(server, n=1, max_retries=2)
        assert len(server.requests(CHATS)) == 3
    message = str(err.value)
    assert "failed 3 times in a row" in message and "HTTP 503" in message and "\n" not in message


def test_a_server_that_ignores_n_is_topped_up(tmp_path):
    prompts = [CHAT, [{"role": "user", "content": "And 3 + 2?"}]]
    with stub_server(tmp_path, rendered=R1, ignore_n=True) as server:
        _, topped = generate(server, prompts, n=3, seed=10)
        chats = server.requests(CHATS)
    with stub_server(tmp_path, rendered=R1) as server:
        _, honoured = generate(server, prompts, n=3, seed=10)
        assert len(server.requests(CHATS)) == 2
    assert [len(ss) for ss in topped] == [3, 3] and len(chats) == 6
    seeds = sorted((r["body"]["messages"][0]["content"], r["body"]["seed"], r["body"]["n"]) for r in chats)
    assert [s[1:] for s in seeds] == [(13, 3), (14, 2), (15, 1), (10, 3), (11, 2), (12, 1)]
    assert [s.text for ss in topped for s in ss] == [s.text for ss in honoured for s in ss]
    assert len({s.text for ss in topped for s in ss}) == 6  # distinct seeds, distinct samples


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
@pytest.mark.parametrize("rendered", [R1, None])  # None: a server without /tokenize (prefill inferred)
def test_reasoning_is_folded_back_as_written(tmp_path, field, rendered):
    script = {"reasoning": field} | ({"rendered": rendered} if rendered else {})
    with stub_server(tmp_path, **script) as server:
        backend, out = generate(server, n=2, seed=3)
        _, cut = generate(server, n=1, seed=3, max_new_tokens=3)  # ends inside the reasoning
        message = server.requests(CHATS)[0]
    assert backend.prefill == ("<think>\n" if rendered else None)
    assert [s.text for s in out[0]] == ["<think>\n" + text_for(3), "<think>\n" + text_for(4)]
    assert [s.prefill for s in out[0]] == ["<think>\n", "<think>\n"]
    assert cut[0][0].text == "<think>\nLet me add" and cut[0][0].finish_reason == "length"
    assert message["answer"] == 200


def test_a_server_without_prompt_rendering_is_noted(tmp_path, capsys):
    with stub_server(tmp_path) as server:
        backend, out = generate(server, n=1)
    assert backend.prefill is None and out[0][0].prefill == "<think>\n"  # inferred from "</think>"
    assert "does not render prompts (no vLLM /tokenize: HTTP 404)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "script, options, expected",
    [
        (
            {"rules": [rule(400, message="extra_body: unknown field 'bogus'")]},
            {"extra_body": {"bogus": 1}},
            ["HTTP 400", "unknown field 'bogus'", "--extra-body"],
        ),
        ({"api_key": "sk-right"}, {}, ["HTTP 401", "Unauthorized", "$STUB_KEY (it is not set)"]),
        ({"model": "served-name"}, {}, ["HTTP 404", "`stub` does not exist", "serves: served-name"]),
    ],
)
def test_4xx_is_fatal_with_the_servers_message(tmp_path, script, options, expected):
    with stub_server(tmp_path, rendered=R1, **script) as server:
        with pytest.raises(BackendError) as err:
            generate(server, [CHAT] * 3, n=2, **options)
        chats = server.requests(CHATS)
    assert all(part in str(err.value) for part in expected), err.value
    assert "\n" not in str(err.value) and len(chats) <= 3  # never retried (401: refused at GET /models)


def test_a_prompt_over_the_context_rejects_only_its_samples(tmp_path):
    too_long = "This model's maximum context length is 256 tokens. However, your prompt contains 900 tokens."
    long_chat = [{"role": "user", "content": "LONG " * 900}]
    with stub_server(
        tmp_path, rendered=R1, rules=[rule(400, contains="LONG LONG", message=too_long)]
    ) as server:
        _, out = generate(server, [CHAT, long_chat], n=2)
    assert [s.text for s in out[0]] == ["<think>\n" + text_for(0), "<think>\n" + text_for(1)]
    assert [s.finish_reason for s in out[1]] == [f"error: HTTP 400 {too_long}"] * 2


def test_connections_are_reused(tmp_path):
    with stub_server(tmp_path, rendered=R1) as server:
        backend = backend_for(server, concurrency=2)
        cfg = SamplingConfig(n=1, max_new_tokens=20)
        backend.generate([CHAT] * 12, cfg, seed=0)
        first = {r["port"] for r in server.requests()}
        backend.generate([CHAT] * 12, cfg, seed=0)
        backend.close()
        every = {r["port"] for r in server.requests()}
    assert len(server.requests(CHATS)) == 24 and len(first) <= 2 and every == first


def test_the_key_is_sent_per_request_and_never_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-stub-secret")
    with stub_server(tmp_path, rendered=R1, api_key="sk-stub-secret") as server:
        backend = backend_for(server)
        backend.generate([CHAT], SamplingConfig(n=1, max_new_tokens=20), seed=0)
        assert {r["authorization"] for r in server.requests()} == {"Bearer sk-stub-secret"}
        assert "sk-stub-secret" not in repr(backend.options) + json.dumps(backend.options.as_kwargs())
        monkeypatch.delenv("STUB_KEY")  # unset: no Authorization header at all
        with pytest.raises(BackendError, match="HTTP 401"):
            backend.generate([CHAT], SamplingConfig(n=1, max_new_tokens=20), seed=0)
        backend.close()
        assert server.requests()[-1]["authorization"] is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_at_the_first_request(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = make_backend("openai", "m", 4, base_url=url)  # default --max-retries 8
    with pytest.raises(BackendError) as err:
        backend.generate([CHAT], SamplingConfig(n=1), seed=0)
    backend.close()
    assert str(err.value).startswith(f"cannot reach the teacher server at {url} (connection refused)")
    assert "--base-url" in str(err.value) and backend.retries == 0


def error_lines(capsys) -> list[str]:
    """The `error:` lines on stderr (a progress bar's last frame may share the line)."""
    err = capsys.readouterr().err
    return [line[line.index("error: ") :] for line in err.splitlines() if "error: " in line]


def test_both_clis_fail_in_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "eval"
    assert (
        eval_main(["--model", "m", "--backend", "openai", "--base-url", url, "--output-dir", str(out)]) == 2
    )
    [line] = error_lines(capsys)
    assert f"cannot reach the teacher server at {url}" in line and not (out / "summary.json").exists()

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "2+3?", "answer": "5"}) + "\n")
    argv = ["--backend", "openai", "--teacher", "stub", "--dataset", str(data), "--out", str(tmp_path / "o")]
    with stub_server(tmp_path, rendered=R1, rules=[rule(400, message="unknown field 'bogus'")]) as server:
        assert trace_main([*argv, "--base-url", server.url, "--extra-body", '{"bogus": 1}']) == 2
        assert server.requests(CHATS)[0]["body"]["bogus"] == 1
    [line] = error_lines(capsys)
    assert "HTTP 400" in line and "unknown field 'bogus'" in line
    assert not list((tmp_path / "o").rglob("part-*"))


def test_the_flag_group_is_shared():
    argv = ["--base-url", "https://h/v1", "--api-key-env", "K", "--extra-body", '{"top_k": 20}']
    argv += ["--concurrency", "8", "--max-retries", "2", "--request-timeout", "60"]
    from_trace = OpenAIOptions.from_args(trace_parser().parse_args([*argv, "--out", "x"]))
    from_eval = OpenAIOptions.from_args(
        eval_parser(False).parse_args([*argv, "--model", "m", "--output-dir", "x"])
    )
    assert from_trace == from_eval == OpenAIOptions("https://h/v1", "K", {"top_k": 20}, 8, 2, 60.0)
    defaults = OpenAIOptions.from_args(eval_parser(True).parse_args(["--models", "a=b", "--output-dir", "x"]))
    assert defaults == OpenAIOptions()
    with pytest.raises(UsageError, match="--concurrency"):
        OpenAIOptions(concurrency=0)
    with pytest.raises(UsageError, match="--base-url"):
        OpenAIOptions(base_url="127.0.0.1:8000/v1")


def test_retry_after_and_backoff():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 25 < retry_after_seconds({"retry-after": later}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None
    assert retry_delay(0, 0.0) == 0.0 and retry_delay(3, 7200.0) == 600.0
    assert 0.5 <= retry_delay(0, None) <= 1.5 and retry_delay(20, None) == retry_delay(10_000, None) == 60
    assert [s for s in (400, 401, 404, 408, 409, 413, 422, 429, 500, 503) if retryable(s)] == [
        408,
        409,
        429,
        500,
        503,
    ]
