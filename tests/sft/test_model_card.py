"""The student's model card: built from the run's files, eval numbers added when given."""

import json

import yaml

from sft.model_card import card_text, write_cards

SUMMARY = {
    "base_model": "Qwen/Qwen2.5-1.5B-Instruct",
    "mode": "lora",
    "train_rows": 1234,
    "traces": "runs/r1/traces",
    "global_step": 800,
    "train_loss": 0.42,
    "kd_source": "offline",
    "settings": {"learning_rate": 0.0002, "lora_r": 16, "kd_alpha": 0.5, "seed": 3},
}
EVAL = {
    "benchmarks": {
        "aime24": {
            "n": 30,
            "samples": 64,
            "pass@1": 0.3,
            "pass@1_ci": [0.2, 0.4],
            "avg@64": 0.3,
            "avg@64_std": 0.05,
            "maj@64": 0.4,
            "sampling": {"temperature": 0.6},
        },
    }
}


def _meta(text: str) -> dict:
    return yaml.safe_load(text.split("---")[1])


def test_card_names_base_model_method_and_settings():
    text = card_text(
        SUMMARY, None, {"teacher": "deepseek-ai/DeepSeek-R1", "dataset": "math"}, {"kept": 9}, adapter=True
    )
    meta = _meta(text)
    assert meta["base_model"] == "Qwen/Qwen2.5-1.5B-Instruct" and meta["library_name"] == "peft"
    assert "# Student distilled from `deepseek-ai/DeepSeek-R1`" in text
    assert "1,234 rows of `runs/r1/traces` for 800 steps" in text and "KD from `offline`" in text
    assert "- `learning_rate`: `0.0002`" in text and "`seed`" not in text  # method settings only
    assert "kept 9" in text and "Not evaluated yet" in text and "AutoPeftModelForCausalLM" in text


def test_local_base_model_is_not_hub_metadata(tmp_path):
    text = card_text({**SUMMARY, "base_model": str(tmp_path)}, None, None, None)
    assert "base_model" not in _meta(text) and "AutoModelForCausalLM" in text


def test_eval_numbers_appear_with_interval_and_k():
    text = card_text(SUMMARY, None, None, None, EVAL)
    assert "| aime24 | 30 | 64 | 30.0% [20.0, 40.0] | 30.0% ± 5.0 (K=64) | 40.0% (K=64) |" in text
    assert "Not evaluated yet" not in text


def test_write_cards_replaces_both_model_dirs(tmp_path):
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "config.json").write_text("{}")
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "README.md").write_text("blank PEFT template")
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "run.json").write_text(json.dumps({"teacher": "T", "dataset": "D"}))
    (tmp_path / "run_summary.json").write_text(json.dumps({**SUMMARY, "traces": str(traces)}))
    written = write_cards(tmp_path)
    assert written == [tmp_path / "README.md", tmp_path / "merged" / "README.md"]
    assert "from `T`" in (tmp_path / "README.md").read_text()
    assert _meta((tmp_path / "merged" / "README.md").read_text())["library_name"] == "transformers"


def test_card_command_adds_eval_numbers(tmp_path):
    from sft.cli import main

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "run_summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "summary.json").write_text(json.dumps(EVAL))
    assert main(["card", str(tmp_path)]) == 0
    assert "Not evaluated yet" in (tmp_path / "README.md").read_text()
    assert main(["card", str(tmp_path), "--eval", str(tmp_path / "eval" / "summary.json")]) == 0
    assert "| aime24 | 30 | 64 | 30.0% [20.0, 40.0]" in (tmp_path / "README.md").read_text()
