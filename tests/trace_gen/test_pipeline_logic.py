"""The pipeline's bookkeeping with a scripted teacher: exact --n, acceptance (verified / sampled) apart
from kept, skips and rejections by reason, inline dedup, sandbox-flagged passes, code verdicts from the
sandbox, logprob columns round-tripping with their dtypes, exact final progress counters, and a rerun
with another --n giving exactly what a fresh run with that --n gives."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from trace_gen.backends.base import Sample, SamplingConfig
from trace_gen.config import RunConfig
from trace_gen.errors import BackendError
from trace_gen.pipeline import run
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


def config(out, **kw):
    """A run of the scripted teacher into `out` (allow_short: the scripts are small)."""
    fields = {"n": 100, "batch_size": 2, "keep_rejected": True, "allow_short": True, "dataset": "scripted"}
    return RunConfig(**{**fields, "teacher": "scripted", "output_dir": out, **kw})


def read(out, sub="data"):
    files = sorted((out / sub).glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_exact_n_and_acceptance_apart_from_kept(tmp_path):
    prompts = [prompt(f"p{i}", f"q{i}") for i in range(6)]
    teacher = ScriptedTeacher({f"q{i}": [GOOD, WRONG, GOOD] for i in range(6)})
    stats = run(teacher, prompts, config(tmp_path, n=5, samples_per_prompt=3, dedup="off"))
    kept = read(tmp_path)
    assert len(kept) == 5 == stats["kept"]
    assert len({(r["prompt_id"], r["sample_idx"]) for r in kept}) == 5
    # two batches of 2 prompts x 3 samples: 8 verified of 12 sampled, the last 3 verified past --n
    assert (stats["sampled"], stats["verified"], stats["rejected"], stats["over_target"]) == (12, 8, 4, 3)
    assert stats["acceptance"] == round(8 / 12, 4)  # not kept / sampled: correct samples past --n count
    assert stats["reasons"] == {"kept": 5, "over_target": 3, "wrong": 4}
    assert len(read(tmp_path, "rejected")) == 4 and len(read(tmp_path, "unused")) == 3
    assert teacher.calls == 3  # a third batch was generated while batch 2 verified, then not needed
    assert stats["num_tokens_percentiles"]["p50"] == len(GOOD)
    timing = ("seconds", "generated_tokens_per_s")  # of this process; the file holds the run's numbers
    assert json.loads((tmp_path / "stats.json").read_text()) == {
        k: v for k, v in stats.items() if k not in timing
    }


def test_skips_counted_by_reason(tmp_path):
    prompts = [prompt("a", "q"), prompt("b", ""), prompt("a", "q again"), prompt("c", "x" * 60)]
    teacher = ScriptedTeacher({"q": [GOOD]})
    stats = run(teacher, prompts, config(tmp_path, samples_per_prompt=1))
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
    stats = run(teacher, prompts, config(tmp_path, samples_per_prompt=3, dedup="exact"))
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
    stats = run(teacher, [p], config(out, samples_per_prompt=2))
    assert stats["kept"] == 1 and stats["reasons"]["failed"] == 1
    (row,) = read(out)
    assert row["verdict"] == "passed" and row["sample_idx"] == 0


@pytest.mark.parametrize("k", [5])
def test_logprob_columns_round_trip(tmp_path, k):
    prompts = [prompt("a", "qa")]
    teacher = ScriptedTeacher({"qa": [GOOD, GOOD]}, logprobs_k=k)
    run(teacher, prompts, config(tmp_path, samples_per_prompt=2, logprobs=k, backend="vllm"))
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


def test_flagged_passes_are_rejected_unless_keep_flagged(tmp_path):
    tests = [{"input": "2 3\n", "output": "5\n"}]
    data = tmp_path / "code.jsonl"
    data.write_text(json.dumps({"id": "add", "question": "Add two ints.", "tests": tests}) + "\n")
    (p,) = dataset_prompts(str(data), "train", "question", None, "id", None, "", "tests")
    clean = "a, b = map(int, input().split())\nprint(a + b)\n"
    sneaky = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept OSError:\n    pass\n"
    script = {
        "Add two ints.": [f"<think>\nx\n</think>\n\n```python\n{code}```" for code in (sneaky + clean, clean)]
    }
    stats = run(ScriptedTeacher(script), [p], config(tmp_path / "a", samples_per_prompt=2))
    flagged = {k: v for k, v in stats["reasons"].items() if k.startswith("flagged:network:")}
    assert stats["kept"] == 1 and sum(flagged.values()) == 1, stats["reasons"]
    (rejected,) = read(tmp_path / "a", "rejected")
    assert rejected["verdict"] == "passed" and "network:connect" in rejected["verdict_flags"]
    assert rejected["verdict_reason"].startswith("flagged by the sandbox: network:")
    stats = run(ScriptedTeacher(script), [p], config(tmp_path / "b", samples_per_prompt=2, keep_flagged=True))
    assert stats["kept"] == 2 and stats["rejected"] == 0


def test_progress_line_ends_with_the_exact_counters(tmp_path, capsys):
    prompts = [prompt(f"p{i}", f"q{i}") for i in range(6)]
    teacher = ScriptedTeacher({f"q{i}": [GOOD, WRONG, GOOD] for i in range(6)})
    capsys.readouterr()
    stats = run(teacher, prompts, config(tmp_path, n=5, samples_per_prompt=3, dedup="off"))
    err = capsys.readouterr().err
    shown = re.findall(r"(\d+)/5 \[[^\]]*, sampled=(\d+), verified=(\d+), acceptance=([\d.]+), "
                       r"rejected=(\d+), skipped=(\d+)", err)  # fmt: skip
    assert shown, err[-500:]
    kept, sampled, verified, acceptance, rejected, skipped = shown[-1]
    assert (int(kept), int(sampled), int(verified), int(rejected), int(skipped)) == (
        stats["kept"], stats["sampled"], stats["verified"], stats["rejected"], stats["skipped"]
    )  # fmt: skip
    assert float(acceptance) == round(stats["acceptance"], 2) and int(kept) == 5
    assert re.search(r"trace/s", err) and "<" in err  # tqdm's rate and ETA


class FailingTeacher(ScriptedTeacher):
    """Generates `ok` batches, then fails as an unreachable server does."""

    def __init__(self, script, ok: int):
        super().__init__(script)
        self.ok = ok

    def generate(self, prompts, sampling, seed):
        if self.calls >= self.ok:
            raise BackendError("teacher server unreachable")
        return super().generate(prompts, sampling, seed)


def test_a_run_that_fails_before_its_first_commit_leaves_nothing(tmp_path):
    prompts = [prompt(f"p{i}", f"q{i}") for i in range(4)]
    script = {f"q{i}": [GOOD] for i in range(4)}
    out = tmp_path / "out"
    with pytest.raises(BackendError):
        run(FailingTeacher(script, ok=0), prompts, config(out, samples_per_prompt=1))
    assert not out.exists()  # no run.json left to refuse the corrected rerun
    with pytest.raises(BackendError):
        run(FailingTeacher(script, ok=1), prompts, config(out, samples_per_prompt=1))
    # batch 0 generated, then batch 1 fails while batch 0 verifies: batch 0 is committed, not lost
    assert [json.loads(line)["batch"] for line in (out / "manifest.jsonl").read_text().splitlines()] == [0]
    stats = run(ScriptedTeacher(script), prompts, config(out, samples_per_prompt=1))
    assert stats["kept"] == 4 and stats["prompts"] == 4


def snapshot(out) -> dict:
    """Everything a reader sees: kept and rejected rows, the stats and the card (unused/ is internal)."""

    def rows(sub):
        return sorted((r["prompt_id"], r["sample_idx"], r["completion"]) for r in read(out, sub))

    stats = json.loads((out / "stats.json").read_text())
    card = (out / "README.md").read_text()
    return {"data": rows("data"), "rejected": rows("rejected"), "stats": stats, "card": card}


def test_a_rerun_with_another_n_equals_a_fresh_run(tmp_path):
    """The --n rule: the directory always holds exactly what a fresh run with the last --n holds;
    growing reuses the verified rows past the old --n, shrinking sets rows aside (nothing regenerated)."""
    prompts = [prompt(f"p{i}", f"q{i}") for i in range(10)]
    script = {f"q{i}": [GOOD.replace("2", f"2 ({i}, {j})") if j != 1 else WRONG for j in range(3)]
              for i in range(10)}  # fmt: skip
    fresh = {}
    for n in (3, 5, 9, 30):
        stats = run(
            ScriptedTeacher(script), prompts, config(tmp_path / f"fresh-{n}", n=n, samples_per_prompt=3)
        )
        fresh[n] = snapshot(tmp_path / f"fresh-{n}")
        assert stats["kept"] == min(n, 20)
    out = tmp_path / "reruns"
    generated, largest = set(), 0
    for n in (5, 9, 3, 9, 30, 5):
        teacher = ScriptedTeacher(script)
        run(teacher, prompts, config(out, n=n, samples_per_prompt=3))
        assert snapshot(out) == fresh[n], n
        unused = {(r["prompt_id"], r["sample_idx"]) for r in read(out, "unused")}
        assert {(r["prompt_id"], r["sample_idx"]) for r in read(tmp_path / f"fresh-{n}", "unused")} <= unused
        everything = {(r["prompt_id"], r["sample_idx"]) for sub in ("data", "rejected", "unused")
                      for r in read(out, sub)}  # fmt: skip
        if n <= largest:  # every batch this --n needs is on disk already: nothing is generated again
            assert teacher.calls == 0, n
        largest = max(largest, n)
        assert generated <= everything  # nothing that was generated is ever lost
        generated |= everything
    assert not list(out.rglob("*.tmp"))
