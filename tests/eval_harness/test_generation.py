"""Generation through the backends with a tiny locally built model: greedy equivalence across every
backend available here, resumable per-sample rows, the single-model CLI and the compare contract."""

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from eval_harness.benchmarks import toy
from eval_harness.cli import main
from eval_harness.evaluate import evaluate_model, read_sample_rows, sampling_for
from tests.vllm_server import vllm_server
from trace_gen.backends import BACKENDS, make_backend
from trace_gen.verify import MathVerifierPool

pytestmark = pytest.mark.integration
TEACHER = Path(__file__).resolve().parents[2] / "trace_gen" / "toy" / "assets" / "teacher"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The trained toy teacher when it is committed; else a random tiny Qwen3 whose weights are
    scaled up so greedy outputs are varied text (a sharper equivalence check than repeated newlines)."""
    if (TEACHER / "config.json").exists():
        return str(TEACHER)
    import torch
    from transformers import AutoModelForCausalLM

    from trace_gen.toy.models import init_model
    from trace_gen.toy.task import make_splits
    from trace_gen.toy.tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("tiny_model")
    init_model("student", build_tokenizer(make_splits(300, 1, seed=7)[0]), str(out), seed=0)
    model = AutoModelForCausalLM.from_pretrained(out)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def pool():
    with MathVerifierPool(workers=1, timeout_s=20) as p:
        yield p


def _run(backend, pool, out: Path, limit: int, **overrides) -> tuple[dict, list[dict]]:
    sampling = sampling_for(toy, overrides.pop("n", 1), 0, overrides)
    items = {"toy": toy.load(limit)}
    summaries, _ = evaluate_model(backend, [toy], items, {"toy": sampling}, pool, out, "m", "hf")
    summary = summaries["toy"]
    return summary, read_sample_rows(Path(summary["samples_file"]))


@pytest.fixture(scope="module")
def greedy_reference(model_dir, pool, tmp_path_factory):
    """hf, one prompt at a time (no padding): the reference every backend must reproduce."""
    return _run(make_backend("hf", model_dir, 1), pool, tmp_path_factory.mktemp("ref"), 8, max_new_tokens=24)


def _backend(kind: str, model_dir: str, log: Path, stack: contextlib.ExitStack):
    """The backend `kind` on model_dir; for openai, a real vLLM server on 127.0.0.1 serving it."""
    if kind == "openai":
        pytest.importorskip(
            "vllm", reason="the openai backend is tested against a vLLM server (make test-vllm)"
        )
        url = stack.enter_context(vllm_server(model_dir, "m", log))
        # keep <think> in the text: vLLM detokenizes with skip_special_tokens=True by default
        extra = {"skip_special_tokens": False}
        return make_backend(kind, "m", 4, base_url=url, api_key_env="NO_KEY_NEEDED", extra_body=extra)
    try:
        return make_backend(kind, model_dir, 4)
    except ImportError as err:
        pytest.skip(f"backend {kind!r} cannot run on this machine: {err}")


@pytest.mark.parametrize("kind", BACKENDS)
def test_every_backend_gives_the_same_greedy_accuracy(kind, model_dir, pool, greedy_reference, tmp_path):
    with contextlib.ExitStack() as stack:
        backend = _backend(kind, model_dir, tmp_path / "server.log", stack)
        summary, rows = _run(backend, pool, tmp_path, 8, max_new_tokens=24)
    ref_summary, ref_rows = greedy_reference
    assert summary["pass@1"] == ref_summary["pass@1"]
    pairs = [(a["completion"], b["completion"]) for a, b in zip(rows, ref_rows, strict=True)]
    same = sum(a == b for a, b in pairs)
    diff = next(((a, b) for a, b in pairs if a != b), None)  # the first mismatch, to read in the failure
    assert same == len(rows), f"{kind}: {same}/{len(rows)} greedy completions equal the hf reference; {diff}"


def test_rerun_resumes_and_gives_the_rows_of_an_uninterrupted_run(model_dir, pool, tmp_path):
    backend = make_backend("hf", model_dir, 2)
    settings = dict(n=2, temperature=1.0, top_p=0.95, max_new_tokens=8)
    full, full_rows = _run(backend, pool, tmp_path / "a", 6, **settings)
    assert len(full_rows) == 12 and full["samples"] == 2 and full["n"] == 6
    generated_once = backend.generated_tokens

    # Interrupted after the first chunk (2 items x 2 samples) and killed half-way through a line.
    path = tmp_path / "b" / Path(full["samples_file"]).name
    path.parent.mkdir()
    lines = Path(full["samples_file"]).read_text().splitlines()
    path.write_text("\n".join(lines[:4]) + "\n" + lines[4][:30])
    backend = make_backend("hf", model_dir, 2)
    resumed, rows = _run(backend, pool, tmp_path / "b", 6, **settings)
    assert 0 < backend.generated_tokens < generated_once  # only the two missing chunks were generated
    assert rows == full_rows  # the torn line is skipped; regenerated chunks reproduce their rows
    assert _without_path(resumed) == _without_path(full)

    backend = make_backend("hf", model_dir, 2)
    again, _ = _run(backend, pool, tmp_path / "b", 6, **settings)
    assert backend.generated_tokens == 0 and again == resumed  # everything reused
    other, _ = _run(backend, pool, tmp_path / "b", 6, **{**settings, "temperature": 0.9})
    assert other["samples_file"] != resumed["samples_file"]  # other settings: another file, nothing mixed


def _without_path(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "samples_file"}


def test_cli_single_model_with_k_samples(model_dir, tmp_path):
    out = tmp_path / "o"
    args = [
        "--model",
        model_dir,
        "--benchmarks",
        "toy",
        "--limit",
        "4",
        "--samples-per-prompt",
        "2",
        "--temperature",
        "1.0",
    ]
    assert main([*args, "--max-new-tokens", "8", "--output-dir", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())["benchmarks"]["toy"]
    assert s["n"] == 4 and s["samples"] == 2 and {"pass@1", "pass@2", "maj@2", "pass@1_ci"} <= set(s)
    expected = {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 0}
    assert {k: s["sampling"][k] for k in expected} == expected
    assert 0 <= s["truncation_rate"] <= 1 and s["mean_response_tokens"] > 0


def test_compare_writes_the_report_the_demo_reads(model_dir, tmp_path):
    out = tmp_path / "demo"
    models = f"teacher={model_dir},student={model_dir}"  # comma- and space-separated pairs both work
    args = ["compare", "--models", models, f"student_untrained={model_dir}", "--benchmarks", "toy"]
    args += ["--limit", "4", "--latency-prompts", "2"]
    assert main([*args, "--max-new-tokens", "8", "--output-dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == ["teacher", "student", "student_untrained"]
    for m in report["models"].values():
        assert 0 <= m["accuracy"] <= 1 and m["params"] > 0 and m["size_mb"] > 0 and m["tokens_per_s"] > 0
        assert (
            m["latency"]["ttft_s"] > 0 and m["latency"]["prompts"] == 2 and m["benchmarks"]["toy"]["n"] == 4
        )
    assert report["sampling"]["toy"]["temperature"] == 0.0  # the toy stays greedy by default
    # the same model three times: same greedy answers, so every paired difference is 0 (with an interval)
    for name in ("student", "student_untrained"):
        d = report["delta_vs_teacher"][name]["benchmarks"]["toy"]
        assert d["delta"] == 0 and d["ci"][0] < 0 < d["ci"][1] and d["n"] == 4
    assert "teacher" not in report["delta_vs_teacher"]
    md = (out / "report.md").read_text()
    assert md.count("| teacher |") == 2 and "(reference)" in md  # overview + per-benchmark row
    assert (out / "report.png").stat().st_size > 0 and (out / "report.svg").stat().st_size > 0
    shutil.rmtree(out / "samples")


def test_r1_budget_on_a_short_context_model_is_capped_and_finishes(tmp_path, capsys):
    """A real benchmark's default budget (R1: 32,768 new tokens) on models whose context is 512: each
    sample is capped to what the context leaves, with one warning per model, and the compare ends."""
    data = tmp_path / "mine.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(2))
    )
    out = tmp_path / "cmp"
    models = [f"teacher={TEACHER}", f"student={TEACHER.parent / 'student_base'}"]
    args = ["compare", "--models", *models, "--custom", str(data), "--latency-prompts", "1"]
    assert main([*args, "--backend", "hf", "--max-new-tokens", "1000000", "--output-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: max_new_tokens 1000000 does not fit the model's context of 512") == 2
    report = json.loads((out / "report.json").read_text())
    for m in report["models"].values():
        s = m["benchmarks"]["mine"]
        assert s["n"] == 2 and 0 < s["mean_response_tokens"] < 512


def test_cli_engine_args_reach_vllm(model_dir, tmp_path, capsys):
    pytest.importorskip("vllm", reason="runs in the vLLM environment (make test-vllm)")
    engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 128}
    args = ["--model", model_dir, "--backend", "vllm", "--engine-args", json.dumps(engine)]
    args += ["--benchmarks", "toy", "--limit", "2", "--max-new-tokens", "5000"]
    assert main([*args, "--output-dir", str(tmp_path / "o")]) == 0
    assert "does not fit the model's context of 128" in capsys.readouterr().err  # max_model_len arrived
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["backend"] == "vllm" and s["benchmarks"]["toy"]["n"] == 2
