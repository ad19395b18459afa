"""Training strategies on toy models: EMA self-distillation, born-again, deep mutual learning, multi-teacher
trace weighting, and their bad inputs (one `error:` line, exit 2, before any step)."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from trl import SFTConfig

from sft.cli import main
from sft.config import DEFAULT_CONFIG
from sft.data import load_traces, teacher_counts
from sft.errors import UsageError
from sft.kd_trainer import DistillSFTTrainer
from sft.self_distill import EMATeacherCallback, ema_teacher, ema_update_

from .conftest import write_traces

pytestmark = pytest.mark.integration


def argv(toy, out, *extra, traces=None):
    return ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student),
            "--traces", str(traces or toy.traces), "--output_dir", str(out), "--max_steps", "3",
            "--per_device_train_batch_size", "4", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--lint_samples", "4", "--disable_tqdm", "true", "--warmup_steps", "0",
            "--save_strategy", "steps", "--save_steps", "3", *extra]  # fmt: skip


def run(toy, out, *extra, traces=None) -> dict:
    assert main(argv(toy, out, *extra, traces=traces)) == 0
    return json.loads((out / "run_summary.json").read_text())


def logged(out) -> list[dict]:
    state = json.loads(max(out.glob("checkpoint-*/trainer_state.json")).read_text())
    return [h for h in state["log_history"] if "loss" in h]


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


# --- EMA teacher ----------------------------------------------------------------------------------------


def test_ema_update_rule_full_and_lora(toy):
    student = load(toy.student)
    teacher = ema_teacher(student)
    with torch.no_grad():
        student.model.layers[0].mlp.up_proj.weight.add_(1.0)
    t0 = teacher.model.layers[0].mlp.up_proj.weight.clone()
    s = student.model.layers[0].mlp.up_proj.weight
    ema_update_(teacher, student, 0.9)
    torch.testing.assert_close(teacher.model.layers[0].mlp.up_proj.weight, 0.9 * t0 + 0.1 * s)
    assert not teacher.model.layers[0].mlp.up_proj.weight.requires_grad

    # a bf16 student: the teacher is float32, so small EMA steps are not rounded away
    student = load(toy.student).to(torch.bfloat16)
    teacher = ema_teacher(student)
    assert teacher.model.norm.weight.dtype == torch.float32
    with torch.no_grad():
        student.model.norm.weight.add_(1e-2)
    t0 = teacher.model.norm.weight.clone()
    ema_update_(teacher, student, 0.99)
    torch.testing.assert_close(
        teacher.model.norm.weight, 0.99 * t0 + 0.01 * student.model.norm.weight.float()
    )
    assert not torch.equal(teacher.model.norm.weight, t0)

    # LoRA: the EMA is over the merged weight base + B A * scale, tied embeddings (modules_to_save) once
    student = load(toy.student)
    teacher = ema_teacher(student)
    peft = get_peft_model(student, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                              modules_to_save=["embed_tokens"], ensure_weight_tying=True))  # fmt: skip
    q = peft.base_model.model.model.layers[1].self_attn.q_proj
    emb = peft.base_model.model.model.embed_tokens.modules_to_save["default"].weight
    with torch.no_grad():
        q.lora_B["default"].weight.normal_()
        emb.add_(0.5)
    merged_q = q.base_layer.weight + q.get_delta_weight("default")
    tq0, te0 = (
        teacher.model.layers[1].self_attn.q_proj.weight.clone(),
        teacher.model.embed_tokens.weight.clone(),
    )
    ema_update_(teacher, peft, 0.8)
    torch.testing.assert_close(
        teacher.model.layers[1].self_attn.q_proj.weight, 0.8 * tq0 + 0.2 * merged_q.detach()
    )
    torch.testing.assert_close(teacher.model.embed_tokens.weight, 0.8 * te0 + 0.2 * emb.detach())
    assert teacher.lm_head.weight is teacher.model.embed_tokens.weight


def test_ema_teacher_follows_the_student_after_a_step(toy, tmp_path):
    student = load(toy.student)
    teacher = ema_teacher(student)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    args = SFTConfig(output_dir=str(tmp_path / "o"), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-2,
                     bf16=False, assistant_only_loss=True, max_length=128, save_strategy="no", report_to="none",
                     seed=0, disable_tqdm=True, lr_scheduler_type="constant")  # fmt: skip
    trainer = DistillSFTTrainer(model=student, args=args, train_dataset=load_traces(str(toy.traces), ["all"]),
                                processing_class=toy.tokenizer, kd_alpha=0.5, teacher_model=teacher,
                                callbacks=[EMATeacherCallback(teacher, 0.9)])  # fmt: skip
    trainer.train()
    key = "model.layers.2.self_attn.o_proj.weight"
    s = student.state_dict()[key]
    assert not torch.equal(s, before[key]), "the student must move"
    torch.testing.assert_close(teacher.state_dict()[key], 0.9 * before[key] + 0.1 * s)


def test_ema_from_the_cli(toy, tmp_path):
    out = tmp_path / "ema"
    summary = run(
        toy, out, "--kd_source", "online", "--kd_self", "ema", "--kd_alpha", "0.5", "--kd_ema_decay", "0.9"
    )
    assert summary["global_step"] == 3
    logs = logged(out)
    assert all(torch.isfinite(torch.tensor([h["loss"], h["kd"], h["ce"]])).all() for h in logs)
    assert logs[0]["kd"] < 1e-4 < logs[-1]["kd"], "the EMA teacher starts as the student, then lags behind it"
    assert changed(
        load_file(str(toy.student / "model.safetensors")),
        load_file(str(out / "merged" / "model.safetensors")),
    )


# --- born-again -----------------------------------------------------------------------------------------


def test_born_again_generation_two(toy, tmp_path, capsys):
    gen1 = tmp_path / "gen1"
    run(toy, gen1)
    gen2 = tmp_path / "gen2"
    summary = run(
        toy,
        gen2,
        "--kd_source",
        "online",
        "--kd_alpha",
        "0.5",
        "--teacher_model_name_or_path",
        str(gen1 / "merged"),
    )
    assert summary["kd_source"] == "online" and summary["global_step"] == 3
    assert all(torch.isfinite(torch.tensor(h["kd"])) and h["kd"] > 0 for h in logged(gen2))
    assert changed(
        load_file(str(gen1 / "merged" / "model.safetensors")),
        load_file(str(gen2 / "merged" / "model.safetensors")),
    )
    capsys.readouterr()
    bad = tmp_path / "gen2-bad"
    assert (
        main(
            argv(
                toy,
                bad,
                "--kd_source",
                "online",
                "--kd_alpha",
                "0.5",
                "--teacher_model_name_or_path",
                str(gen1),
            )
        )
        == 2
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert (
        len(err) == 1
        and "adapter directory" in err[0]
        and str(gen1 / "merged") in err[0]
        and not bad.exists()
    )


# --- deep mutual learning -------------------------------------------------------------------------------


def test_mutual_lora_peer_copy(toy, tmp_path):
    out = tmp_path / "dml"
    summary = run(
        toy, out, "--mutual_peer", "true", "--mutual_weight", "1.0", "--gradient_checkpointing", "true"
    )
    logs = logged(out)
    assert all(
        torch.isfinite(torch.tensor([h[k] for k in ("loss", "ce", "kd", "peer_ce", "peer_kd")])).all()
        for h in logs
    )
    # both adapters start as no-ops (B = 0), but their random A differ: the two models part after one step
    assert (
        logs[0]["kd"] == 0
        and logs[-1]["kd"] > 0
        and logs[-1]["peer_kd"] > 0
        and logs[-1]["ce"] != logs[-1]["peer_ce"]
    )
    base = load_file(str(toy.student / "model.safetensors"))
    student, peer = (
        load_file(str(out / "merged" / "model.safetensors")),
        load_file(str(out / "peer" / "model.safetensors")),
    )
    assert changed(base, student) and changed(base, peer) and changed(student, peer)
    assert summary["peer_model"] == str(out / "peer")
    load(out / "peer")(input_ids=torch.tensor([[1, 2, 3]]))  # loads with AutoModelForCausalLM and runs


def test_mutual_full_ft_with_a_peer_path(toy, tmp_path):
    out = tmp_path / "dml-full"
    run(toy, out, "--use_peft", "false", "--mutual_peer", str(toy.teacher), "--mutual_weight", "0.5",
        "--gradient_checkpointing", "true")  # fmt: skip
    assert changed(
        load_file(str(toy.student / "model.safetensors")), load_file(str(out / "model.safetensors"))
    )
    assert changed(
        load_file(str(toy.teacher / "model.safetensors")), load_file(str(out / "peer" / "model.safetensors"))
    )
    assert all(h["peer_kd"] > 0 for h in logged(out))


# --- multi-teacher traces -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_teachers(toy, tmp_path_factory):
    """Two trace dirs as two trace_gen runs write them: 24 rows from teacher A, 12 from B."""
    rows = [{"prompt_id": str(i), "sample_idx": 0, "messages": r["messages"], "verdict": "correct"}
            for i, r in enumerate(toy.topk_rows)]  # fmt: skip
    root = tmp_path_factory.mktemp("teachers")
    a = write_traces(root / "a", [{**r, "teacher": "org/A"} for r in rows])
    b = write_traces(root / "b", [{**r, "teacher": "runs/B"} for r in rows[:12]])
    return f"{a},{b}"


def test_teacher_weights_give_the_proportions(two_teachers):
    assert teacher_counts({"A": 24, "B": 12}, {"A": 1, "B": 0.5}) == {"A": 24, "B": 12}
    assert teacher_counts({"A": 24, "B": 12}, {"A": 1, "B": 1}) == {"A": 12, "B": 12}
    assert teacher_counts({"A": 24, "B": 12}, {"A": 1, "B": 2}) == {"A": 6, "B": 12}
    assert teacher_counts({"A": 24, "B": 12}, {"A": 0, "B": 1}) == {"A": 0, "B": 12}
    ds = load_traces(two_teachers, ["all"], teacher_weights={"org/A": 1, "runs/B": 2}, seed=3)
    assert len(ds) == 18
    again = load_traces(two_teachers, ["all"], teacher_weights={"org/A": 1, "runs/B": 2}, seed=3)
    other = load_traces(two_teachers, ["all"], teacher_weights={"org/A": 1, "runs/B": 2}, seed=4)
    assert ds["messages"] == again["messages"] and ds["messages"] != other["messages"]
    assert len(load_traces(two_teachers, ["all"], teacher_weights={"org/A": 0, "runs/B": 1})) == 12
    assert len(load_traces(two_teachers, ["all"])) == 36
    with pytest.raises(
        UsageError, match=r"unknown teacher\(s\) \['C'\]; teachers in the traces: org/A, runs/B"
    ):
        load_traces(two_teachers, ["all"], teacher_weights={"org/A": 1, "runs/B": 1, "C": 1})
    with pytest.raises(UsageError, match=r"no weight for teacher\(s\) \['runs/B'\]"):
        load_traces(two_teachers, ["all"], teacher_weights={"org/A": 1})


def test_teacher_weights_from_the_cli(toy, tmp_path, two_teachers, capsys):
    out = tmp_path / "mt"
    summary = run(
        toy, out, "--trace_teacher_weights", "org/A=1,runs/B=0.5", "--max_steps", "1", traces=two_teachers
    )
    assert (
        summary["train_rows"] == 36
        and "trace teachers: org/A 24 rows, runs/B 12 rows" in capsys.readouterr().out
    )


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--mutual_peer", "true", "--kd_source", "offline", "--kd_alpha", "0.5"], "use --kd_source none"),
        (
            ["--kd_source", "online", "--kd_self", "ema", "--teacher_model_name_or_path", "x"],
            "drop --teacher_model",
        ),
        (["--kd_self", "ema"], "add --kd_source online"),
        (
            ["--kd_source", "online", "--kd_self", "ema", "--kd_ema_decay", "1"],
            "kd_ema_decay must be in (0, 1)",
        ),
        (["--trace_teacher_weights", "A=1,B=-1"], "'B=-1': write TEACHER=WEIGHT with a weight >= 0"),
        (["--trace_teacher_weights", "A=0,B=0"], "at least one teacher needs a weight > 0"),
        (["--trace_teacher_weights", "A=1"], "needs a `teacher` column"),
        (["--mutual_peer", "true", "--use_peft", "false"], "identical gradients forever"),
        (
            ["--kd_source", "online", "--kd_self", "ema", "--resume_from_checkpoint", "x"],
            "EMA teacher is not checkpointed",
        ),
    ],
)
def test_bad_input_is_one_line(toy, tmp_path, capsys, extra, says):
    out = tmp_path / "bad"
    assert main(argv(toy, out, *extra)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()
