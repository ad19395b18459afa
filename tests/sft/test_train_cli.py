"""`python -m sft run` end to end on toy models (in process): LoRA trains the adapter and leaves the base
frozen, QLoRA steps on CPU, resume from a checkpoint, 4-bit export, lint-only, KD from the CLI."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from sft.cli import main
from sft.config import DEFAULT_CONFIG

from .conftest import write_traces

pytestmark = pytest.mark.integration


def run(toy, out, *extra, traces=None):
    argv = ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student), "--traces", str(traces or toy.traces),
            "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--learning_rate", "1e-2", "--logging_steps", "1", "--lint_samples", "4", "--disable_tqdm", "true",
            *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "run_summary.json").read_text())


def test_lora_changes_adapter_and_leaves_base_frozen_then_exports_4bit(toy, tmp_path, capsys):
    pytest.importorskip("bitsandbytes", reason="the qlora extra")
    out = tmp_path / "lora"
    summary = run(toy, out, "--export_4bit", "true")
    assert summary["mode"] == "lora" and summary["train_rows"] == 24 and summary["global_step"] == 2
    assert "template lint:" in capsys.readouterr().out and (out / "lint_report.txt").exists()
    card = (out / "README.md").read_text()  # the filled card, not PEFT's blank template
    assert f"- base model: `{toy.student}`" in card and "`learning_rate`: `0.01`" in card, card
    assert "library_name: transformers" in (out / "merged" / "README.md").read_text()
    adapter = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero; training must move it"
    base = load_file(str(toy.student / "model.safetensors"))
    merged = load_file(str(out / "merged" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert any("q_proj" in k for k in changed)
    # the toy recipe trains the tied embedding (lora_modules_to_save: [embed_tokens]); nothing else may move
    assert not any("norm" in k for k in changed), "only LoRA-targeted linears and modules_to_save may change"
    config = json.loads((out / "merged-4bit" / "config.json").read_text())
    assert config["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    assert any("absmax" in k for k in load_file(str(out / "merged-4bit" / "model.safetensors")))


def test_qlora_step_on_cpu(toy, tmp_path):
    pytest.importorskip("bitsandbytes", reason="the qlora extra")
    out = tmp_path / "qlora"
    summary = run(toy, out, "--load_in_4bit", "true", "--bnb_4bit_quant_type", "nf4", "--dtype", "float32")
    assert summary["mode"] == "qlora" and summary["global_step"] == 2
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    merged = load_file(str(out / "merged" / "model.safetensors"))  # merged into the unquantized base
    assert (
        not any("absmax" in k for k in merged) and merged["model.embed_tokens.weight"].dtype == torch.float32
    )


def test_resume_from_checkpoint(toy, tmp_path):
    out = tmp_path / "resume"
    save = ["--save_strategy", "steps", "--save_steps", "2"]
    run(toy, out, *save)
    assert (out / "checkpoint-2").is_dir()
    summary = run(toy, out, *save, "--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2"))
    assert summary["global_step"] == 4
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4]


def test_lint_only_writes_nothing(toy, tmp_path, capsys):
    out = tmp_path / "lint"
    assert main(["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student), "--traces", str(toy.traces),
                 "--output_dir", str(out), "--lint_only", "true"]) == 0  # fmt: skip
    assert "-> ok" in capsys.readouterr().out and not out.exists()


def test_kd_from_the_cli(toy, tmp_path):
    pytest.importorskip("bitsandbytes", reason="the qlora extra (4-bit teacher)")
    offline = run(
        toy, tmp_path / "off", "--kd_source", "offline", "--kd_alpha", "0.5", traces=toy.traces_topk
    )
    assert offline["offline_alignment"] == {"rows": 24, "aligned": 24, "misaligned": 0, "k": 4}
    online = run(toy, tmp_path / "on", "--kd_source", "online", "--kd_alpha", "0.5", "--teacher_model_name_or_path",
                 str(toy.teacher), "--teacher_load_in_4bit", "true", "--kd_temperature", "2", "--kd_temperature_end", "1")  # fmt: skip
    assert online["kd_source"] == "online" and (tmp_path / "on" / "merged" / "model.safetensors").exists()


def test_offline_kd_padding_free_and_out_of_range_topk(toy, tmp_path, capsys):
    """Padding-free offline KD trains (its collator concatenates the rows); a top-k id beyond the student's
    embedding rows is one line before any model loads."""
    summary = run(toy, tmp_path / "pf", "--kd_source", "offline", "--kd_alpha", "0.5", "--padding_free", "true",
                  "--max_length", "256", traces=toy.traces_topk)  # fmt: skip
    assert summary["global_step"] == 2 and summary["offline_alignment"]["aligned"] == 24
    rows = [dict(r) for r in toy.topk_rows]
    rows[3] = {**rows[3], "topk_ids": [10**6, *rows[3]["topk_ids"][1:]]}
    bad = write_traces(tmp_path / "bad", rows)
    argv = ["run", "--config", str(DEFAULT_CONFIG), "--model_name_or_path", str(toy.student), "--traces", str(bad),
            "--output_dir", str(tmp_path / "o"), "--kd_source", "offline", "--kd_alpha", "0.5"]  # fmt: skip
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert (
        len(err) == 1 and "token id 1,000,000 but the student has" in err[0] and not (tmp_path / "o").exists()
    )


def test_plain_text_rows_keep_the_chat_template(toy, tmp_path):
    """Language-modelling rows (the toy base model's pre-training): the saved tokenizer keeps its template."""
    texts = write_traces(
        tmp_path / "texts", [{"text": f"{i} + 1 = {i + 1}", "verdict": "correct"} for i in range(8)]
    )
    out = tmp_path / "text"
    summary = run(toy, out, "--assistant_only_loss", "false", "--use_peft", "false", traces=texts)
    assert summary["mode"] == "full"
    assert AutoTokenizer.from_pretrained(out).chat_template == toy.tokenizer.chat_template
