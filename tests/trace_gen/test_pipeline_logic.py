"""The pipeline's bookkeeping with a scripted teacher: exact --n, skips and rejections by reason,
inline dedup, code verdicts from the sandbox, logprob columns round-tripping with their dtypes."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from trace_gen.backends.base import Sample, SamplingConfig
from trace_gen.pipeline import RunSettings, run
from trace_gen.prompts import PromptRecord, dataset_prompts
from trace_gen.records import topk_arrays

GOOD = "<think>\n1 + 1 = 2\n</think>\n\n\\boxed{2}"
WRONG = "<think>\n1 + 1 = 3\n</think>\n\n\\boxed{3}"


class ScriptedTeacher:
    """A stand-in teacher that answers from a script (the pipeline, not a model, is under test)."""

    tokenized = True
    max_prompt_tokens = 40
    batch_size = 8

    def __init__(self, script, logprobs_k=None):
        self.script = script  # problem text -> list of completions
        self.k = logprobs_k
        self.generated_tokens, self.generate_seconds, self.calls = 0, 0.0, 0

    def prompt_token_ids(self, messages):
        return [ord(c) for c in messages[-1]["content"]]

    def generate(self, prompts, sampling: SamplingConfig, seed):
        self.calls += 1
        out = []
        for ids in prompts:
            texts = self.script["".join(map(chr, ids))][: sampling.n]
            out.append([self._sample(t) for t in texts])
        return out

    def _sample(self, text):
        if not self.k:
            return Sample(text, len(text), "stop")
        t = len(text)
        rng = np.random.default_rng(t)
        return Sample(
            text,
            t,
            "stop",
            token_ids=np.arange(t, dtype=np.int32),
            topk_ids=rng.integers(0, 150_000, (t, self.k)).astype(np.int32),
            topk_logprobs=-rng.random((t, self.k)).astype(np.float16),
        )


def prompt(pid, problem, gold="2", tests=None):
    return PromptRecord(pid, problem, gold, ({"role": "user", "content": problem},), tests)


def settings(**kw):
    return RunSettings(**{"n": 100, "batch_prompts": 2, "keep_rejected": True, **kw})


def read(out, sub="data"):
    files = sorted((out / sub).glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_exact_n_and_reasons(tmp_path):
    prompts = [prompt(f"p{i}", f"q{i}") for i in range(6)]
    teacher = ScriptedTeacher({f"q{i}": [GOOD, WRONG, GOOD] for i in range(6)})
    stats = run(teacher, "t", prompts, SamplingConfig(n=3), settings(n=5), tmp_path, {"id": 1})
    kept = read(tmp_path)
    assert len(kept) == 5 == stats["kept"]
    assert len({(r["prompt_id"], r["sample_idx"]) for r in kept}) == 5
    assert (
        stats["reasons"]["kept"] == 5
        and stats["reasons"]["wrong"] == 4
        and stats["reasons"]["over_target"] == 3
    )
    assert teacher.calls == 3  # a third batch was generated while batch 2 verified, then not needed
    assert stats["num_tokens_percentiles"]["p50"] == len(GOOD)


def test_skips_counted_by_reason(tmp_path):
    prompts = [prompt("a", "q"), prompt("b", ""), prompt("a", "q again"), prompt("c", "x" * 60)]
    teacher = ScriptedTeacher({"q": [GOOD]})
    stats = run(teacher, "t", prompts, SamplingConfig(n=1), settings(), tmp_path, {"id": 1})
    assert stats["reasons"] == {
        "kept": 1,
        "skipped:duplicate_prompt_id": 1,
        "skipped:empty_prompt": 1,
        "skipped:prompt_too_long": 1,
    }
    assert stats["skipped"] == 3 and stats["prompts"] == 4


def test_inline_dedup_within_prompt(tmp_path):
    prompts = [prompt("a", "qa"), prompt("b", "qb")]
    teacher = ScriptedTeacher({"qa": [GOOD, GOOD, GOOD], "qb": [GOOD, WRONG, GOOD.replace("1 + 1", "1+1")]})
    stats = run(teacher, "t", prompts, SamplingConfig(n=3), settings(dedup="exact"), tmp_path, {"id": 1})
    kept = read(tmp_path)
    assert sorted((r["prompt_id"], r["sample_idx"]) for r in kept) == [("a", 0), ("b", 0)]
    assert stats["reasons"]["dedup:exact_duplicate"] == 3  # normalised text: "1+1" repeats "1 + 1"
    rejected = {(r["prompt_id"], r["sample_idx"]): r for r in read(tmp_path, "rejected")}
    assert "exact_duplicate" in rejected[("a", 1)]["verdict_reason"]


def test_code_dataset_gets_sandbox_verdicts(tmp_path):
    tests = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]
    data = tmp_path / "code.jsonl"
    data.write_text(json.dumps({"id": "add", "question": "Add two ints.", "tests": tests}) + "\n")
    (p,) = dataset_prompts(str(data), "train", "question", None, "id", None, "", "tests")
    right = "<think>\nread, add\n</think>\n\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    wrong = right.replace("a + b", "a - b")
    teacher = ScriptedTeacher({"Add two ints.": [right, wrong]})
    out = tmp_path / "out"
    stats = run(teacher, "t", [p], SamplingConfig(n=2), settings(), out, {"id": 1})
    assert stats["kept"] == 1 and stats["reasons"]["failed"] == 1
    (row,) = read(out)
    assert row["verdict"] == "passed" and row["sample_idx"] == 0


@pytest.mark.parametrize("k", [5])
def test_logprob_columns_round_trip(tmp_path, k):
    prompts = [prompt("a", "qa")]
    teacher = ScriptedTeacher({"qa": [GOOD, GOOD]}, logprobs_k=k)
    run(teacher, "t", prompts, SamplingConfig(n=2, logprobs=k), settings(), tmp_path, {"id": 1})
    table = pq.read_table(next(tmp_path.glob("data/*.parquet")))
    assert str(table.schema.field("topk_ids").type) == "list<element: int32>"
    assert str(table.schema.field("topk_logprobs").type) == "list<element: halffloat>"
    assert str(table.schema.field("token_ids").type) == "list<element: int32>"
    row = table.to_pylist()[0]
    token_ids, ids, lps = topk_arrays(row)
    expected = teacher._sample(GOOD)
    assert ids.shape == (len(GOOD), k) and ids.dtype == np.int32 and lps.dtype == np.float16
    np.testing.assert_array_equal(ids, expected.topk_ids)
    np.testing.assert_array_equal(lps, expected.topk_logprobs)
    np.testing.assert_array_equal(token_ids, expected.token_ids)
    from datasets import load_dataset

    ds = load_dataset(str(tmp_path), split="train")  # the trace dir itself is a Hugging Face dataset
    assert ds.features["topk_logprobs"].feature.dtype == "float16"
