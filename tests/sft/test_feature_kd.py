"""Feature distillation and several online teachers through `sft run` on toy models (in process).

Each feature term trains a few steps (finite, logged, the student moves); FitNets projections train, are in
every checkpoint and not in the exported model, and come back on resume; two teachers mixed and routed;
the teacher runs once per batch; bad combinations are one line (exit 2) before any step.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from sft.cli import main
from sft.config import DEFAULT_CONFIG
from sft.data import load_traces
from sft.feature_losses import (
    attention_map_loss,
    hidden_cosine_loss,
    pooled,
    rkd_angle_loss,
    rkd_distance_loss,
)
from sft.kd_trainer import PROJECTIONS_FILE, DistillSFTTrainer
from trace_gen.toy.models import init_model, toy_config

from .conftest import write_traces

pytestmark = pytest.mark.integration

STEPS = 3


def run(toy, out, *extra, traces=None) -> dict:
    """`sft run` with full fine-tuning, a checkpoint at the last step; returns that step's logged rows."""
    argv = ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student),
            "--traces", str(traces or toy.traces), "--output_dir", str(out), "--use_peft", "false",
            "--max_steps", str(STEPS), "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
            "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", str(STEPS), "--lint", "false",
            "--max_length", "128", "--disable_tqdm", "true", "--kd_source", "online", *extra]  # fmt: skip
    assert main(argv) == 0
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [h for h in state["log_history"] if "loss" in h]


def fails(toy, tmp_path, capsys, *extra) -> str:
    """The one-line error of a run that must stop before any step (exit 2, nothing trained or saved)."""
    out = tmp_path / "bad"
    capsys.readouterr()  # drop earlier output
    argv = ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student),
            "--traces", str(toy.traces), "--output_dir", str(out), "--use_peft", "false", "--lint", "false",
            "--max_steps", "1", *extra]  # fmt: skip
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, lines  # (the rest of stderr is progress bars)
    err = lines[0]
    assert not out.exists() or not any(out.iterdir())
    return err


@pytest.fixture(scope="module")
def twin(toy, tmp_path_factory):
    """A teacher as wide and deep as the student (cosine and attention maps compare like shapes)."""
    path = tmp_path_factory.mktemp("twin") / "teacher"
    init_model("student", toy.tokenizer, str(path), seed=5)
    return path


def changed(toy, out) -> bool:
    before = load_file(str(toy.student / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_hidden_cosine_attention_and_relational_terms_train(toy, twin, tmp_path):
    out = tmp_path / "feat"
    logs = run(toy, out, "--teacher_model_name_or_path", str(twin), "--kd_alpha", "0.5", "--kd_hidden_weight",
               "1", "--kd_attn_weight", "1", "--kd_rel_weight", "1", "--kd_rel_start_step", "1")  # fmt: skip
    assert len(logs) == STEPS
    for term in ("ce", "kd", "hidden", "attn", "rel"):
        values = [h[term] for h in logs]
        assert all(torch.isfinite(torch.tensor(values))), (term, values)
    assert all(h["hidden"] > 0 and h["attn"] > 0 for h in logs)
    assert logs[0]["rel"] == 0 and all(h["rel"] > 0 for h in logs[1:]), "rel starts at step 1"
    assert changed(toy, out)
    assert not (out / f"checkpoint-{STEPS}" / PROJECTIONS_FILE).exists(), "equal widths: no projection"


def test_fitnets_projections_train_checkpoint_and_stay_out_of_the_export(toy, tmp_path):
    out = tmp_path / "fitnets"  # toy student hidden 64, toy teacher 128: one projection per layer pair
    logs = run(toy, out, "--teacher_model_name_or_path", str(toy.teacher), "--kd_hidden_weight", "1",
               "--kd_hidden_loss", "mse", "--kd_layer_map", "pkd-last", "--save_steps", "1")  # fmt: skip
    assert all(h["hidden"] > 0 for h in logs) and changed(toy, out)
    first = load_file(str(out / "checkpoint-1" / PROJECTIONS_FILE))
    last = load_file(str(out / f"checkpoint-{STEPS}" / PROJECTIONS_FILE))
    assert sorted(last) == ["0.weight", "1.weight", "2.weight"]  # pkd-last, 4 -> 4 layers: 3 pairs
    assert last["0.weight"].shape == (128, 64)
    assert any(not torch.equal(first[k], last[k]) for k in first), "the projections must train"
    exported = load_file(str(out / "model.safetensors"))  # exactly the student's tensors, no projection
    assert sorted(exported) == sorted(load_file(str(toy.student / "model.safetensors")))
    AutoModelForCausalLM.from_pretrained(out)  # loads as a plain student


def sft_args(tmp_path, **kw):
    from trl import SFTConfig

    defaults = dict(output_dir=str(tmp_path / "r"), max_steps=2, per_device_train_batch_size=4, bf16=False,
                    assistant_only_loss=True, max_length=128, report_to="none", disable_tqdm=True,
                    learning_rate=1e-2, save_strategy="no")  # fmt: skip
    return SFTConfig(**{**defaults, **kw})


def test_loss_adds_the_weighted_terms_against_eager_attention(toy, twin, tmp_path):
    """loss(with terms) - loss(without) = sum of weight * term, terms rebuilt from eager `output_attentions`."""
    load = AutoModelForCausalLM.from_pretrained
    student, teacher = load(toy.student), load(twin)
    pairs = [(1, 2), (3, 4)]

    def trainer(**kw):
        return DistillSFTTrainer(
            model=student, args=sft_args(tmp_path), train_dataset=load_traces(str(toy.traces), ["all"]),
            processing_class=toy.tokenizer, kd_alpha=0.5, teacher_model=teacher, kd_layer_pairs=pairs, **kw,
        )  # fmt: skip

    base, full = trainer(), trainer(kd_hidden_weight=0.5, kd_attn_weight=2.0, kd_rel_weight=1.0)
    batch = next(iter(full.get_train_dataloader()))
    got = full.compute_loss(student, dict(batch)) - base.compute_loss(student, dict(batch))

    ids = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    eager = {"output_hidden_states": True, "output_attentions": True}
    with torch.no_grad():
        s = load(toy.student, attn_implementation="eager")(**ids, **eager)
        t = load(twin, attn_implementation="eager")(**ids, **eager)
    mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
    mask[:, :-1] = batch["labels"][:, 1:] != -100  # positions whose next token is trained
    hidden = sum(hidden_cosine_loss(s.hidden_states[i], t.hidden_states[j], mask) for i, j in pairs) / 2
    attn = sum(attention_map_loss(s.attentions[i - 1], t.attentions[j - 1], mask) for i, j in pairs) / 2
    s_pool, t_pool = pooled(s.hidden_states[-1], mask), pooled(t.hidden_states[-1], mask)
    rel = rkd_distance_loss(s_pool, t_pool) + rkd_angle_loss(s_pool, t_pool)
    assert attn > 0 and hidden > 0 and rel > 0
    torch.testing.assert_close(got.detach(), 0.5 * hidden + 2.0 * attn + rel, rtol=1e-4, atol=1e-6)

    # the attention term's gradient reaches the student's q_proj of a mapped layer (through the captured maps)
    attn_only = trainer(kd_attn_weight=1.0)
    diff = attn_only.compute_loss(student, dict(batch)) - base.compute_loss(student, dict(batch))
    grad = torch.autograd.grad(diff, student.model.layers[2].self_attn.q_proj.weight)[0]
    assert grad.abs().sum() > 0


def test_resume_restores_the_projections(toy, tmp_path):

    def trainer(seed):
        torch.manual_seed(seed)  # a different fresh projection each time
        return DistillSFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(toy.student), processing_class=toy.tokenizer,
            args=sft_args(tmp_path, save_steps=2, save_strategy="steps"),
            train_dataset=load_traces(str(toy.traces), ["all"]), kd_alpha=0.5,
            teacher_model=AutoModelForCausalLM.from_pretrained(toy.teacher), kd_hidden_weight=1.0,
            kd_hidden_loss="mse", kd_layer_pairs=[(2, 2), (4, 4)],
        )  # fmt: skip

    trainer(0).train()
    saved = load_file(str(tmp_path / "r" / "checkpoint-2" / PROJECTIONS_FILE))
    resumed = trainer(1)
    assert not torch.equal(resumed.kd_projections[0].weight.detach(), saved["0.weight"])
    resumed.train(resume_from_checkpoint=str(tmp_path / "r" / "checkpoint-2"))  # at max_steps: loads, no step
    for k, v in resumed.kd_projections.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    groups = resumed.optimizer.param_groups
    assert any(p is resumed.kd_projections[0].weight for g in groups for p in g["params"])


def count_teacher_forwards(teachers: dict):
    """{path: backbone forward calls} for the models loaded from these paths (a global forward hook)."""
    counts = dict.fromkeys(map(str, teachers), 0)

    def hook(module, args, output):
        name = str(getattr(getattr(module, "config", None), "_name_or_path", ""))
        if type(module).__name__ == "Qwen3Model" and name in counts:
            counts[name] += 1

    return counts, torch.nn.modules.module.register_module_forward_hook(hook)


def test_teacher_runs_once_per_batch(toy, tmp_path):
    counts, handle = count_teacher_forwards([toy.teacher])
    try:
        run(toy, tmp_path / "once", "--teacher_model_name_or_path", str(toy.teacher), "--kd_alpha", "0.5",
            "--kd_hidden_weight", "1", "--kd_hidden_loss", "mse", "--kd_rel_weight", "1")  # fmt: skip
    finally:
        handle.remove()
    assert counts[str(toy.teacher)] == STEPS


def test_two_teachers_mixed_and_routed(toy, twin, tmp_path):
    teachers = ["--teachers", f"a={toy.teacher}", f"b={twin}", "--kd_alpha", "0.5"]
    logs = run(toy, tmp_path / "mix", *teachers, "--teacher_weights", "0.7", "0.3")
    assert all(h["kd_a"] > 0 and h["kd_b"] > 0 for h in logs)
    assert changed(toy, tmp_path / "mix")

    rows = [
        {**r, "teacher": "ab"[i % 2]} for i, r in enumerate(load_traces(str(toy.traces), ["all"]).to_list())
    ]
    traces = write_traces(tmp_path / "routed_traces", rows)
    counts, handle = count_teacher_forwards([toy.teacher, twin])
    try:
        logs = run(toy, tmp_path / "route", *teachers, "--teacher_column", "teacher", traces=traces)
    finally:
        handle.remove()
    assert all("kd_a" in h and "kd_b" in h for h in logs)  # batches of 4 alternate teachers: both every step
    assert counts == {str(toy.teacher): STEPS, str(twin): STEPS}
    assert changed(toy, tmp_path / "route")


def test_bad_input_is_one_line_before_any_step(toy, twin, tmp_path, capsys):
    online = ["--kd_source", "online", "--teacher_model_name_or_path"]
    err = fails(
        toy, tmp_path, capsys, *online, str(twin), "--kd_hidden_weight", "1", "--kd_layer_map", "1,2,9,4"
    )
    assert "kd_layer_map" in err and "out of range" in err
    err = fails(toy, tmp_path, capsys, *online, str(toy.teacher), "--kd_hidden_weight", "1")
    assert "cosine" in err and "--kd_hidden_loss mse" in err
    err = fails(toy, tmp_path, capsys, *online, str(twin), "--kd_attn_weight", "1", "--packing", "true")
    assert "--packing false --padding_free false" in err
    err = fails(toy, tmp_path, capsys, *online, str(twin), "--kd_rel_weight", "1", "--packing", "true")
    assert "relational KD" in err and "--packing false --padding_free false" in err
    err = fails(toy, tmp_path, capsys, "--kd_hidden_weight", "1")
    assert "--kd_source online" in err
    two = ["--kd_source", "online", "--teachers", f"a={twin}", f"b={toy.teacher}"]
    for extra, want in (
        ([], "either --teacher_weights"),
        (["--teacher_weights", "1"], "one weight >= 0 per teacher (2)"),
        (["--teacher_weights", "1", "1", "--teacher_model_name_or_path", str(twin)], "not both"),
        (
            ["--teacher_weights", "1", "1", "--kd_hidden_weight", "1"],
            "feature terms (hidden / attn / rel) take one",
        ),
        (["--teacher_column", "teacher"], "no column 'teacher' to route teachers by"),
    ):
        assert want in fails(toy, tmp_path, capsys, *two, *extra)

    wide = tmp_path / "wide_vocab"  # same tokenizer, more embedding rows
    config = toy_config("student", toy.tokenizer)
    config.vocab_size += 8
    AutoModelForCausalLM.from_config(config).save_pretrained(wide)
    toy.tokenizer.save_pretrained(wide)
    err = fails(toy, tmp_path, capsys, "--kd_source", "online", "--teachers", f"a={twin}", f"b={wide}",
                "--teacher_weights", "1", "1")  # fmt: skip
    assert "teacher b" in err and "embedding" in err
    shutil.rmtree(wide)
