"""The vllm backend on the real engine (vllm-cpu on CPU): top-k logprobs from the sampling pass match
the teacher's own distribution, seeds reproduce, prompts over the context are skipped, and the
pipeline writes the logprob columns. Runs in the vLLM environment (`make test-vllm`)."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("vllm")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from trace_gen.backends import SamplingConfig, make_backend
from trace_gen.config import RunConfig
from trace_gen.pipeline import run
from trace_gen.prompts import PromptRecord
from trace_gen.records import topk_arrays

pytestmark = pytest.mark.integration
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 256}
CHAT = [{"role": "user", "content": "Ann has 3 apples. She gets 2 more. How many?"}]


@pytest.fixture(scope="module")
def backend(tiny_teacher):
    backend = make_backend("vllm", str(tiny_teacher), batch_size=8, engine_args=ENGINE)
    yield backend
    backend.close()


def test_topk_logprobs_are_the_teachers_distribution(backend, tiny_teacher):
    import torch
    from transformers import AutoModelForCausalLM

    ids = backend.prompt_token_ids(CHAT)
    (samples,) = backend.generate(
        [ids], SamplingConfig(n=2, temperature=1.0, max_new_tokens=16, logprobs=5), seed=3
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher, dtype=torch.float32).eval()
    for s in samples:
        assert s.topk_ids.shape == (s.num_tokens, 5) and s.topk_ids.dtype == np.int32
        assert s.topk_logprobs.dtype == np.float16 and s.token_ids.shape == (s.num_tokens,)
        assert np.all(np.diff(s.topk_logprobs.astype(np.float32), axis=1) <= 1e-3)  # highest first
        with torch.no_grad():
            logits = model(torch.tensor([ids + s.token_ids.tolist()])).logits[0, len(ids) - 1 : -1]
        ref = torch.log_softmax(logits, -1).topk(5)
        assert np.array_equal(ref.indices.numpy(), s.topk_ids)
        np.testing.assert_allclose(s.topk_logprobs, ref.values.numpy(), atol=2e-2)


def test_seeds_reproduce_and_differ(backend):
    ids = backend.prompt_token_ids(CHAT)
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=12)
    a = [s.text for ss in backend.generate([ids, ids], cfg, seed=11) for s in ss]
    b = [s.text for ss in backend.generate([ids, ids], cfg, seed=11) for s in ss]
    assert a == b
    assert len(set(a)) == 4  # the same prompt twice in a batch still gets 4 different seeds


def test_pipeline_writes_logprob_columns_and_skips_long_prompts(backend, tmp_path):
    prompts = [
        PromptRecord(
            f"p{i}", f"Ben has {i} cards.", str(i), ({"role": "user", "content": f"Ben has {i} cards."},)
        )
        for i in range(3)
    ]
    prompts.append(PromptRecord("long", "x", "0", ({"role": "user", "content": " 7" * 400},)))
    config = RunConfig(
        teacher="tiny", dataset="scripted", backend="vllm", output_dir=tmp_path, n=100, batch_size=2,
        keep_rejected=True, samples_per_prompt=2, temperature=0.6, max_new_tokens=10, logprobs=4,
    )  # fmt: skip
    stats = run(backend, prompts, config)
    assert stats["reasons"]["skipped:prompt_too_long"] == 1 and stats["rejected"] == 6
    rows = [r for f in sorted(tmp_path.glob("rejected/part-*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 6
    for row in rows:
        token_ids, ids, lps = topk_arrays(row)
        assert ids.shape == lps.shape == (row["num_tokens"], 4) and len(token_ids) == row["num_tokens"]
    table = pq.read_table(next(tmp_path.glob("rejected/part-*.parquet")))
    assert str(table.schema.field("topk_logprobs").type) == "list<element: halffloat>"


def test_new_tokens_are_capped_to_max_model_len(backend, capsys):
    ids = backend.prompt_token_ids(CHAT)
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=100_000)
    (samples,) = backend.generate([ids], cfg, seed=7)
    assert all(0 < s.num_tokens <= 256 - len(ids) for s in samples)
    assert "context of 256 tokens" in capsys.readouterr().err


def test_many_seeded_samples_of_long_prompts_survive_on_cpu(backend):
    """vllm-cpu's engine died ("CPU Generator does not use offset") once seeded requests' prefills were
    split into chunks, as 64 samples of 2 AIME problems do; the backend turns chunked prefill off on CPU."""
    long = [{"role": "user", "content": " ".join(["Ann has 3 apples and gets 2 more."] * 18)}]
    prompts = [backend.prompt_token_ids(long), backend.prompt_token_ids(CHAT)]
    cfg = SamplingConfig(n=64, temperature=1.0, max_new_tokens=4)
    samples = backend.generate(prompts, cfg, seed=3)
    assert [len(s) for s in samples] == [64, 64]
