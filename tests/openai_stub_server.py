"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, in its own process, for the openai backend's
tests of what a real server may do to it: 429/503 with Retry-After, dropped connections, ignored `n`,
`reasoning_content`, 400/401/404 with a message. It is a test double of the server only; the client
under test talks real HTTP to it (the real `vllm serve` tests stay the ground truth for answers).

Script (a JSON object; every key optional):
    model:        the served name (default "stub"); a chat request for another model gets vLLM's 404
    api_key:      when set, requests without "Authorization: Bearer <api_key>" get 401
    ignore_n:     answer one choice whatever `n` asks
    reasoning:    "reasoning_content" or "reasoning": split the text at </think> into that field and
                  `content`, as vLLM's deepseek_r1 reasoning parser does
    rendered:     what /detokenize returns as the rendered prompt (absent: /tokenize answers 404)
    rules:        answers that replace the normal one, first match wins, each used `times` times
                  (absent: always): {"path": "/v1/chat/completions", "times": 2, "contains": "TEXT",
                  "status": 429, "headers": {"Retry-After": "1"}, "message": "slow down"} or
                  {"path": ..., "drop": "before" | "mid"} (close the connection before answering, or
                  after half of a 200 answer's body)

The normal chat answer for choice i of a request with seed s is the text
`text_for(s + i)` (`seed + i`, so that n choices equal n one-choice requests with seeds s..s+n-1),
cut to max_tokens words (finish_reason "length"); usage.completion_tokens counts words.
Every request is logged as one JSON line (path, body, authorization, client port, answer).

Usage (tests):
    with stub_server(tmp_path, ignore_n=True) as server:
        backend = make_backend("openai", "stub", base_url=server.url)
        ...
        assert len(server.requests("/v1/chat/completions")) == 3
"""

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def text_for(seed: int) -> str:
    """The stub teacher's whole answer for one seed (it starts inside a prefilled <think>)."""
    return f"Let me add the numbers (seed {seed}).\n</think>\n\nThe answer is \\boxed{{5}}."


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the log's client ports show connection reuse
    server: "StubServer"

    def log_message(self, *args):  # no per-request stderr lines
        pass

    def do_GET(self):
        self._handle(None)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(json.loads(self.rfile.read(length) or b"{}"))

    def _handle(self, body: dict | None) -> None:
        script, path = self.server.script, self.path
        auth = self.headers.get("Authorization")
        rule = self.server.take_rule(path, json.dumps(body))
        entry = {"path": path, "body": body, "authorization": auth, "port": self.client_address[1]}
        if rule is not None and rule.get("drop"):
            self.server.log({**entry, "answer": f"drop {rule['drop']}"})
            if rule["drop"] == "mid":
                data = json.dumps(self._chat(body or {})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        if rule is not None:
            status, answer = rule["status"], error(rule["status"], rule.get("message"))
        elif script.get("api_key") and auth != f"Bearer {script['api_key']}":
            status, answer = 401, error(401, "Unauthorized")
        else:
            status, answer = self._answer(path, body)
        self.server.log({**entry, "answer": status})
        data = json.dumps(answer).encode()
        self.send_response(status)
        for name, value in (rule or {}).get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, path: str, body: dict | None) -> tuple[int, dict]:
        script = self.server.script
        model = script.get("model", "stub")
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "stub"}]}
        if path == "/tokenize" and "rendered" in script:
            return 200, {"tokens": [1, 2, 3], "count": 3, "max_model_len": 256}
        if path == "/detokenize" and "rendered" in script:
            return 200, {"prompt": script["rendered"]}
        if path == "/v1/chat/completions" and body is not None:
            if body.get("model") != model:
                return 404, error(404, f"The model `{body.get('model')}` does not exist.")
            return 200, self._chat(body)
        return 404, {"detail": "Not Found"}

    def _chat(self, body: dict) -> dict:
        script = self.server.script
        n = 1 if script.get("ignore_n") else int(body.get("n") or 1)
        seed, limit = int(body.get("seed") or 0), int(body.get("max_tokens") or 1 << 30)
        choices, words = [], 0
        for i in range(n):
            tokens = text_for(seed + i).split(" ")
            text, finish = " ".join(tokens[:limit]), "length" if len(tokens) > limit else "stop"
            words += min(len(tokens), limit)
            message = {"role": "assistant", "content": text}
            if script.get("reasoning"):
                reasoning, closed, content = text.partition("</think>")
                message = {"role": "assistant", "content": content if closed and content else None}
                message[script["reasoning"]] = reasoning
            choices.append({"index": i, "message": message, "finish_reason": finish})
        usage = {"prompt_tokens": 7, "completion_tokens": words, "total_tokens": 7 + words}
        head = {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body["model"]}
        return {**head, "choices": choices, "usage": usage}


def error(status: int, message: str | None) -> dict:
    """An error body as vLLM and OpenAI write it."""
    return {"error": {"message": message or f"HTTP {status}", "type": "Error", "param": None, "code": status}}


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: dict, log_path: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = script
        self.rules = [dict(r) for r in script.get("rules", [])]
        self.log_path = log_path
        self.lock = threading.Lock()

    def take_rule(self, path: str, body_text: str) -> dict | None:
        with self.lock:
            for rule in self.rules:
                if (
                    rule["path"] == path
                    and rule.get("contains", "") in body_text
                    and rule.get("times", 1) != 0
                ):
                    if "times" in rule:
                        rule["times"] -= 1
                    return rule
        return None

    def log(self, entry: dict) -> None:
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")


@dataclass
class RunningStub:
    url: str  # the base URL, .../v1
    log_path: Path

    def requests(self, path: str | None = None) -> list[dict]:
        """The requests answered so far (all, or those to `path`), in order."""
        if not self.log_path.exists():
            return []
        entries = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [e for e in entries if path is None or e["path"] == path]


@contextlib.contextmanager
def stub_server(tmp_path: Path, **script) -> Iterator[RunningStub]:
    """Run the stub with `script` (see the module docstring) in a subprocess; stop it afterwards."""
    script_path, log_path = tmp_path / "stub-script.json", tmp_path / "stub-requests.jsonl"
    script_path.write_text(json.dumps(script))
    log_path.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, str(script_path), str(log_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())  # the server prints its port once it listens
        yield RunningStub(f"http://127.0.0.1:{port}/v1", log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    server = StubServer(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
    print(server.server_address[1], flush=True)
    server.serve_forever()
