"""DistillSFTTrainer on toy models: alpha = 0 is plain SFT; KD steps move weights and lower the KD;
offline top-k alignment; vocabulary mismatch; temperature annealing."""

import pytest
import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, Qwen3Config
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from sft.data import load_traces
from sft.kd_data import KD_COLUMNS, OfflineKDCollator, format_alignment, prepare_offline_kd
from sft.kd_trainer import DistillSFTTrainer

pytestmark = pytest.mark.integration


def sft_args(tmp_path, **kw) -> SFTConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=6, learning_rate=1e-2,
        bf16=False, assistant_only_loss=True, max_length=128, logging_steps=1, save_strategy="no",
        report_to="none", seed=0, dataloader_num_workers=0, lr_scheduler_type="constant", disable_tqdm=True,
    )  # fmt: skip
    return SFTConfig(**{**defaults, **kw})


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def offline_parts(toy, tmp_path):
    ds = load_traces(str(toy.traces_topk), ["correct"], extra_columns=KD_COLUMNS)
    prepared, stats = prepare_offline_kd(ds, toy.tokenizer, max_length=128)
    collator = OfflineKDCollator(
        DataCollatorForLanguageModeling(pad_token_id=toy.tokenizer.pad_token_id), stats["k"]
    )
    args = sft_args(tmp_path, remove_unused_columns=False, assistant_only_loss=False)  # labels come masked
    return prepared, collator, args, stats


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def test_alpha_zero_equals_plain_sft_loss(toy, tmp_path):
    student = load(toy.student).eval()
    plain = SFTTrainer(model=student, args=sft_args(tmp_path), train_dataset=load_traces(str(toy.traces), ["all"]),
                       processing_class=toy.tokenizer)  # fmt: skip
    batch = first_batch(plain)
    want = plain.compute_loss(student, dict(batch))
    online = DistillSFTTrainer(
        model=student, args=sft_args(tmp_path), train_dataset=load_traces(str(toy.traces), ["all"]),
        processing_class=toy.tokenizer, kd_alpha=0.0, teacher_model=load(toy.teacher), kd_temperature=2.0,
    )  # fmt: skip
    torch.testing.assert_close(online.compute_loss(student, dict(batch)), want, rtol=1e-5, atol=1e-6)
    # gradient of the fused path equals the plain one
    g_want = torch.autograd.grad(plain.compute_loss(student, dict(batch)), student.model.embed_tokens.weight)[
        0
    ]
    g_got = torch.autograd.grad(online.compute_loss(student, dict(batch)), student.model.embed_tokens.weight)[
        0
    ]
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-7)

    prepared, collator, args, _ = offline_parts(toy, tmp_path)
    offline = DistillSFTTrainer(model=student, args=args, train_dataset=prepared, processing_class=toy.tokenizer,
                                data_collator=collator, kd_alpha=0.0)  # fmt: skip
    kd_batch = first_batch(offline)
    lm_batch = {k: kd_batch[k] for k in ("input_ids", "attention_mask", "labels")}
    torch.testing.assert_close(
        offline.compute_loss(student, dict(kd_batch)),
        plain.compute_loss(student, lm_batch),
        rtol=1e-5,
        atol=1e-6,
    )


def kd_value(trainer, batch) -> float:
    """The KD term alone (alpha = 1) on a fixed batch."""
    alpha, trainer.kd_alpha = trainer.kd_alpha, 1.0
    with torch.no_grad():
        value = trainer.compute_loss(trainer.model, dict(batch)).item()
    trainer.kd_alpha = alpha
    return value


def train_and_check(trainer):
    batch = first_batch(trainer)
    before_kd = kd_value(trainer, batch)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after_kd = kd_value(trainer, batch)
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no weight moved"
    assert after_kd < 0.9 * before_kd, (before_kd, after_kd)
    logged = [h for h in trainer.state.log_history if "kd" in h]
    assert logged and {"ce", "kd", "kd_temperature"} <= set(logged[0])
    return before_kd, after_kd


def test_online_teacher_kd_steps(toy, tmp_path):
    trainer = DistillSFTTrainer(
        model=load(toy.student), args=sft_args(tmp_path), train_dataset=load_traces(str(toy.traces), ["all"]),
        processing_class=toy.tokenizer, kd_alpha=0.9, kd_beta=0.5, teacher_model=load(toy.teacher), kd_chunk_size=64,
    )  # fmt: skip
    train_and_check(trainer)


@pytest.mark.parametrize("confidence_weighted", [False, True])
def test_offline_topk_kd_steps(toy, tmp_path, confidence_weighted):
    prepared, collator, args, stats = offline_parts(toy, tmp_path)
    assert stats["misaligned"] == 0 and stats["k"] == 4
    trainer = DistillSFTTrainer(
        model=load(toy.student), args=args, train_dataset=prepared, processing_class=toy.tokenizer,
        data_collator=collator, kd_alpha=0.9, kd_confidence_weighted=confidence_weighted,
        kd_temperature=2.0, kd_temperature_end=1.0,
    )  # fmt: skip
    train_and_check(trainer)
    temps = [h["kd_temperature"] for h in trainer.state.log_history if "kd_temperature" in h]
    assert temps[0] == 2.0 and temps[-1] < 2.0


def test_misaligned_rows_are_counted_and_dropped(toy):
    ds = load_dataset("parquet", data_files=str(toy.traces_topk / "*.parquet"), split="train")
    broken = ds.map(lambda r, i: {"token_ids": r["token_ids"][:-1] if i in (1, 5) else r["token_ids"]},
                    with_indices=True).select_columns(["messages", *KD_COLUMNS])  # fmt: skip
    prepared, stats = prepare_offline_kd(broken, toy.tokenizer, max_length=None)
    assert (stats["rows"], stats["aligned"], stats["misaligned"]) == (len(ds), len(ds) - 2, 2)
    assert len(prepared) == len(ds) - 2
    line = format_alignment(stats)
    assert "DROPPED 2 misaligned rows" in line and "row 1" in line and "differ from stored token_ids" in line


def test_offline_rows_align_topk_with_labels(toy):
    ds = load_traces(str(toy.traces_topk), ["all"], extra_columns=KD_COLUMNS)
    start = prepare_offline_kd(ds, toy.tokenizer, max_length=None)[0][0]["kd_start"]
    length = start + 10  # truncates inside the assistant turn (TRL's keep_start)
    prepared, stats = prepare_offline_kd(ds, toy.tokenizer, max_length=length)
    collator = OfflineKDCollator(DataCollatorForLanguageModeling(pad_token_id=0), stats["k"])
    batch = collator([prepared[0], prepared[1]])
    labels, top = batch["labels"], batch["topk_ids"]
    assert top.shape == (*labels.shape, 4) and labels.shape[1] == length
    row = toy.topk_rows[0]
    # position t holds the teacher's top-k for the token at t (= labels[t]); the trainer shifts both alike
    assert labels[0, start:].tolist() == row["token_ids"][:10]
    assert top[0, start:].flatten().tolist() == row["topk_ids"][:40]
    lps = batch["topk_logprobs"][0, start:].flatten()
    torch.testing.assert_close(lps, torch.tensor(row["topk_logprobs"][:40]).half().float())
    assert (labels[0, :start] == -100).all()


def test_vocab_mismatch_names_both_sizes(toy, tmp_path):
    config = Qwen3Config.from_pretrained(toy.teacher)
    config.vocab_size += 7
    other = AutoModelForCausalLM.from_config(config)
    student = load(toy.student)
    with pytest.raises(ValueError, match=rf"student lm_head has {student.config.vocab_size} rows, teacher has "
                                         rf"{config.vocab_size}"):  # fmt: skip
        DistillSFTTrainer(model=student, args=sft_args(tmp_path), train_dataset=load_traces(str(toy.traces), ["all"]),
                          processing_class=toy.tokenizer, kd_alpha=0.5, teacher_model=other)  # fmt: skip


def test_temperature_anneals_linearly(toy, tmp_path):
    trainer = DistillSFTTrainer(
        model=load(toy.student), args=sft_args(tmp_path, max_steps=8), processing_class=toy.tokenizer,
        train_dataset=load_traces(str(toy.traces), ["all"]), teacher_model=load(toy.teacher),
        kd_temperature=5.0, kd_temperature_end=1.0,
    )  # fmt: skip
    trainer.state.max_steps = 8
    temps = []
    for step in (0, 4, 8):
        trainer.state.global_step = step
        temps.append(trainer.kd_temperature_now())
    assert temps == [5.0, 3.0, 1.0]
