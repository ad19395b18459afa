"""End to end on real shapes: an R1-Distill-Qwen-7B-shaped teacher → `python -m trace_gen` (hf) →
`python -m sft run` with a shipped real recipe on a Qwen2.5-1.5B-Instruct-shaped student → `python -m
eval_harness` on the shipped math500 set. The vllm and openai legs of trace_gen: tests/test_real_e2e_vllm.py.

What is real: the Qwen vocabulary and each family's added tokens at their ids, the R1-Distill and Qwen2.5 chat
templates, the embedding sizes (teacher 152,064 rows, untied; student 151,936, tied), the architecture class
and every loading path (tests/real_models.py); the CLIs' own entry points, the recipe
configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml with only CPU overrides (no GPU, flash-attention, bf16 or Liger
here), TRL's SFTTrainer with best-fit packing and its assistant-only masks, peft's LoRA and merge, math-verify
verdicts, the shipped benchmark data.

What is rigged: the teacher's weights. A random tiny model never solves a problem, so trace_gen would keep
nothing. `rig_teacher` turns the R1-shaped checkpoint into a lookup of next tokens: attention and MLP outputs
are zeroed (the residual stream is the token's embedding), each token of one fixed completion gets its own
embedding direction, and the lm_head row of the token that must follow gets that direction (logit 40 against
< 1 for every other row). So after R1's "<think>\\n" prefill any prompt, at any temperature, continues with
COMPLETION: reasoning, "</think>", a boxed 5, and R1's end-of-sentence token. PROBLEMS are chosen so that gold
5 is right for four and wrong for one (the verifier rejects it). The student is random: it learns nothing in
one step, and its math500 accuracy is whatever it is (the test checks the numbers match the files, not them).
"""

import itertools
import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import torch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "sft" / "r1_distill_qwen2.5_1.5b_lora.yaml"
PREFILL = "<think>\n"  # R1-Distill's template ends the generation prompt with it
COMPLETION = "Two plus three makes five.\n</think>\n\nThe answer is $\\boxed{5}$."  # what the teacher writes
PROBLEMS = [  # (id, problem, gold): the teacher's "5" is right for all but the last
    ("sum", "What is 2 + 3?", "5"),
    ("difference", "Compute 10 - 5.", "5"),
    ("hand", "How many fingers are on one hand?", "5"),
    ("quotient", "What is 25 divided by 5?", "5"),
    ("seven", "What is 3 + 4?", "7"),
]
SAMPLES = 2  # per prompt: 8 kept, 2 rejected
# max_position_embeddings of the real checkpoints (the tiny ones say 2048): vLLM sizes max_model_len from it
R1_7B_CONTEXT, QWEN25_1_5B_CONTEXT = 131_072, 32_768
CPU_SFT = ["--attn_implementation", "sdpa", "--dtype", "float32", "--bf16", "false", "--use_liger_kernel", "false",
           "--max_steps", "1", "--max_length", "512", "--save_strategy", "no", "--dataset_num_proc", "1",
           "--lint_samples", "8", "--logging_steps", "1", "--disable_tqdm", "true"]  # fmt: skip


def with_context(src: Path, out: Path, positions: int) -> Path:
    """A copy of the checkpoint `src` at `out` whose config gives the real model's context length."""
    shutil.copytree(src, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "max_position_embeddings": positions}, indent=2))
    return out


def rig_teacher(src: Path, out: Path) -> Path:
    """Copy the checkpoint `src` (R1-Distill family, untied lm_head) to `out` with R1-Distill-Qwen-7B's context,
    rigged to write PREFILL + COMPLETION + eos after any prompt (see the module docstring). Asserts the chain of
    tokens is unambiguous."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with_context(src, out, R1_7B_CONTEXT)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert not model.config.tie_word_embeddings, "needs separate input and output rows"
    prefill_end = tok(PREFILL, add_special_tokens=False)["input_ids"][-1]
    chain = [prefill_end, *tok(COMPLETION, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert len(set(chain)) == len(chain) <= model.config.hidden_size, "each token needs its own direction"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for k, (token, following) in enumerate(itertools.pairwise(chain)):
            model.model.embed_tokens.weight[token] = 0.0
            model.model.embed_tokens.weight[token, k] = 1.0  # RMSNorm makes it sqrt(hidden) = 8 along k
            model.lm_head.weight[following] = 0.0
            model.lm_head.weight[following, k] = 5.0  # logit 40
    model.save_pretrained(out)
    return out


def write_problems(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a}) + "\n" for i, p, a in PROBLEMS))
    return path


def trace_gen_argv(backend: str, teacher, problems, out, *extra) -> list[str]:
    return ["--backend", backend, "--teacher", str(teacher), "--dataset", str(problems), "--id-column", "id",
            "--n", "100", "--samples-per-prompt", str(SAMPLES), "--max-new-tokens", "64", "--keep-rejected",
            # the rigged teacher writes the same text for every sample of a problem: inline dedup (on by
            # default, as in `filter`) would keep one; 5 problems cannot give --n 100 (exit 3 without this)
            "--dedup", "off", "--allow-short", "--output-dir", str(out), *extra]  # fmt: skip


def check_traces(out: Path) -> list[dict]:
    """The kept rows: whole R1 text, verified; the wrong one rejected. Returns kept rows sorted."""
    from datasets import load_dataset

    stats = json.loads((out / "stats.json").read_text())
    assert (stats["kept"], stats["rejected"]) == (4 * SAMPLES, SAMPLES), stats
    kept = load_dataset(str(out), split="train").to_list()
    rejected = load_dataset(str(out), data_dir="rejected", split="train").to_list()
    assert {r["prompt_id"] for r in rejected} == {"seven"} and {r["verdict"] for r in rejected} == {"wrong"}
    assert len(kept) == 4 * SAMPLES and {r["verdict"] for r in kept} == {"correct"}
    for row in kept + rejected:
        assert row["prefill"] == PREFILL and row["completion"] == PREFILL + COMPLETION, row["completion"]
        assert row["messages"][-1] == {"role": "assistant", "content": row["completion"]}
        assert row["answer"] == "The answer is $\\boxed{5}$." and row["finish_reason"] == "stop"
    return sorted(kept, key=lambda r: (r["prompt_id"], r["sample_idx"]))


@pytest.fixture(scope="module")
def teacher(real_model, tmp_path_factory) -> Path:
    return rig_teacher(real_model("qwen2", "r1-distill", 152_064), tmp_path_factory.mktemp("e2e") / "teacher")


@pytest.fixture(scope="module")
def student(real_model, tmp_path_factory) -> Path:
    """Qwen2.5-1.5B-Instruct-shaped: 151,936 rows (tied), its template and eos, its context length."""
    return with_context(
        real_model("qwen2", "qwen2.5"), tmp_path_factory.mktemp("e2e") / "student", QWEN25_1_5B_CONTEXT
    )


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> Path:
    return write_problems(tmp_path_factory.mktemp("e2e") / "problems.jsonl")


@pytest.fixture(scope="module")
def traces(teacher, problems, tmp_path_factory) -> Path:
    from trace_gen.cli import main

    out = tmp_path_factory.mktemp("e2e") / "traces"
    assert main(trace_gen_argv("hf", teacher, problems, out, "--device", "cpu")) == 0
    return out


def test_trace_gen_keeps_the_verified_r1_traces(traces):
    check_traces(traces)


class RecordingTrainer:
    """Mixed into TRL's SFTTrainer by the test: records each batch the loss is computed on (what is trained)."""

    batches: ClassVar[list] = []

    def compute_loss(self, model, inputs, *args, **kwargs):
        RecordingTrainer.batches.append({k: inputs[k].detach().clone() for k in ("input_ids", "labels")})
        return super().compute_loss(model, inputs, *args, **kwargs)


def trained_spans(batch: dict) -> list[list[int]]:
    """Maximal runs of trained label ids (label != -100) in a batch, per sequence: (B, T) tensors."""
    spans = []
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        current = []
        for token, label in zip(ids, labels, strict=True):
            if label != -100:
                assert label == token, "labels are the input ids, unshifted"
                current.append(token)
            elif current:
                spans, current = [*spans, current], []
        spans += [current] if current else []
    return spans


@pytest.fixture(scope="module")
def student_run(student, traces, tmp_path_factory):
    """`python -m sft run` with the real LoRA recipe; the trainer's batches recorded."""
    import sft.train
    from sft.cli import main

    recording = type("RecordingSFTTrainer", (RecordingTrainer, sft.train.SFTTrainer), {})
    RecordingTrainer.batches.clear()
    out = tmp_path_factory.mktemp("e2e") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft.train, "SFTTrainer", recording)
        rc = main(["run", "--config", str(RECIPE), "--model_name_or_path", str(student), "--traces", str(traces),
                   "--output_dir", str(out), *CPU_SFT])  # fmt: skip
    assert rc == 0
    return out, list(RecordingTrainer.batches)


def test_sft_trains_exactly_reasoning_answer_and_eos(student_run):
    """The loss sees, per trace, `<think>…</think>` + answer + `<|im_end|>` (the student's eos) and nothing of the
    prompt. TRL's Qwen2.5 training template also puts the newlines around the turn inside `{% generation %}`:
    the '\\n' ending `<|im_start|>assistant\\n` (the lint reports it: evaluation supplies it) and the '\\n'
    after `<|im_end|>` (generation has stopped by then); both are asserted here, so a change shows."""
    from transformers import AutoTokenizer

    out, batches = student_run
    lint = (out / "lint_report.txt").read_text()
    assert lint.rstrip().endswith("-> ok") and "ERROR" not in lint, lint
    assert "mask: 8/8 rows train exactly the reasoning, the answer and '<|im_end|>'" in lint
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["mode"] == "lora" and summary["train_rows"] == 4 * SAMPLES and summary["global_step"] == 1
    assert summary["final_model"] == str(out / "merged")
    tok = AutoTokenizer.from_pretrained(out / "merged")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token_id == eos
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    trace = tok(PREFILL + COMPLETION, add_special_tokens=False)["input_ids"]
    spans = [s for batch in batches for s in trained_spans(batch)]
    # one step: best-fit packing puts all 8 traces (~75 tokens each) in one row of max_length 512
    assert len(batches) == 1 and len(spans) == 4 * SAMPLES
    for span in spans:
        assert span == newline + trace + [eos] + newline, repr(tok.decode(span))


def test_eval_harness_scores_the_merged_student_on_math500(student_run, tmp_path):
    from eval_harness.cli import main

    merged = student_run[0] / "merged"
    argv = ["--model", str(merged), "--benchmarks", "math500", "--limit", "2", "--max-new-tokens", "16",
            "--samples-per-prompt", "1", "--backend", "hf", "--device", "cpu", "--output-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == str(merged) and summary["limit"] == 2
    math500 = summary["benchmarks"]["math500"]
    rows = [json.loads(line) for line in Path(math500["samples_file"]).read_text().splitlines()]
    assert_summary_matches(math500, rows, n_items=2)
    assert all(r["num_tokens"] <= 16 for r in rows)


def test_eval_harness_scores_the_teacher_on_its_own_problems(teacher, problems, tmp_path):
    """A number that is not zero: the rigged teacher answers 5, right for 4 of the 5 problems."""
    from eval_harness.cli import main

    argv = ["--model", str(teacher), "--custom", str(problems), "--id-field", "id", "--max-new-tokens", "64",
            "--backend", "hf", "--device", "cpu", "--output-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "summary.json").read_text())["benchmarks"]["problems"]
    rows = [json.loads(line) for line in Path(result["samples_file"]).read_text().splitlines()]
    assert_summary_matches(result, rows, n_items=len(PROBLEMS))
    assert result["pass@1"] == pytest.approx(0.8)
    assert all(r["completion"] == PREFILL + COMPLETION for r in rows)


def assert_summary_matches(summary: dict, rows: list[dict], n_items: int) -> None:
    """summary.json's numbers are those of its per-sample file (one sample per item)."""
    assert len(rows) == n_items == summary["n"] and len({r["id"] for r in rows}) == n_items
    correct = [r["verdict"] == "correct" for r in rows]
    assert summary["pass@1"] == pytest.approx(sum(correct) / n_items)
    assert summary["verdicts"] == {
        v: sum(r["verdict"] == v for r in rows) for v in {r["verdict"] for r in rows}
    }
    assert summary["truncation_rate"] == pytest.approx(
        sum(r["finish_reason"] == "length" for r in rows) / n_items
    )
