"""The vllm and openai legs of the real-shape end-to-end run (tests/test_real_e2e.py has the rest and says what
is real and what is rigged): `python -m trace_gen` with the in-process vLLM engine and with an OpenAI-compatible
vLLM server, on the rigged R1-Distill-Qwen-7B-shaped teacher, must write the same verified traces as the hf
backend. Runs in the vLLM environment (`make test-vllm`); skipped where vllm is not installed.
"""

import contextlib
import json
import os

import pytest

from tests.test_real_e2e import (
    check_traces,
    problems,  # noqa: F401 (fixture)
    teacher,  # noqa: F401 (fixture)
    trace_gen_argv,
    traces,  # noqa: F401 (fixture): the hf run
)

pytest.importorskip("vllm", reason="vllm and openai run in the vLLM environment (make test-vllm)")
pytestmark = pytest.mark.integration

CPU_ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 256}
SAME = ("prompt_id", "sample_idx", "messages", "completion", "prefill", "reasoning", "answer", "num_tokens",
        "finish_reason", "verdict", "gold")  # fmt: skip


@pytest.mark.parametrize("backend", ["vllm", "openai"])
def test_vllm_and_openai_write_the_hf_traces(backend, teacher, problems, traces, tmp_path):  # noqa: F811
    from tests.vllm_server import vllm_server
    from trace_gen.cli import main

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    out = tmp_path / "traces"
    with contextlib.ExitStack() as stack:
        if backend == "vllm":
            extra = ["--engine-args", json.dumps(CPU_ENGINE)]
            teacher_arg = teacher
        else:
            url = stack.enter_context(vllm_server(str(teacher), "r1-7b", tmp_path / "server.log"))
            body = {
                "skip_special_tokens": False
            }  # keep <think> in the text, as the README says for vLLM servers
            extra = ["--base-url", url, "--api-key-env", "NO_KEY_NEEDED", "--extra-body", json.dumps(body)]
            teacher_arg = "r1-7b"
        assert main(trace_gen_argv(backend, teacher_arg, problems, out, *extra)) == 0
    got, want = check_traces(out), check_traces(traces)
    assert [{k: r[k] for k in SAME} for r in got] == [{k: r[k] for k in SAME} for r in want]


def test_a_context_the_teacher_cannot_hold_is_one_line(teacher, problems, tmp_path, capsys):  # noqa: F811
    """The README's kind of mistake (max_model_len above the model's positions): one line, exit 2, nothing written."""
    from trace_gen.cli import main

    out = tmp_path / "traces"
    engine = json.dumps({**CPU_ENGINE, "max_model_len": 200_000})  # R1-Distill-Qwen-7B has 131,072 positions
    assert main(trace_gen_argv("vllm", teacher, problems, out, "--engine-args", engine)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "max_model_len (200000)" in errors[0] and "131072" in errors[0], errors
    assert not out.exists()
