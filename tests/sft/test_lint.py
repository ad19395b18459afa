"""The template lint on the toy tokenizer: a good template passes; a template without {% generation %}, a mask
that drops </think> or the end-of-turn token, trained prompt tokens and a generation prompt that differs from the
training render each fail with the rendered text around the problem; truncation is reported. Real templates and
tokenizers: tests/sft/test_lint_real.py."""

import copy

from datasets import Dataset

from sft.config import REPO_ROOT
from sft.lint import lint

from .conftest import conversation

# ChatML like the toy's, with the assistant body split so that <think>...</think> is rendered OUTSIDE
# the generation block (as templates that strip reasoning from history effectively do)
DROPS_THINK = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- set parts = message['content'].split('</think>') %}"
    "{{- '<|im_start|>assistant\\n' + parts[0] + '</think>' }}"
    "{% generation %}{{- parts[1] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def rows(toy, n=6):
    return Dataset.from_list([{"messages": conversation(p)} for p in toy.problems[:n]])


def run_lint(toy, chat_template=None, **kw):
    """Lint with the toy tokenizer, or a copy of it carrying another chat template."""
    tokenizer = toy.tokenizer
    if chat_template is not None:
        tokenizer = copy.deepcopy(toy.tokenizer)
        tokenizer.chat_template = chat_template
    kw = {"assistant_only_loss": True, "max_length": 256, "n_samples": 8, **kw}
    return lint(tokenizer, rows(toy), stock_template=tokenizer.chat_template, **kw)


def kinds(report) -> set[str]:
    return {f.kind for f, _ in report.of_level("error")}


def test_good_template_passes(toy):
    report = run_lint(toy)
    assert not report.errors and not report.warnings, report.format()
    text = report.format()
    assert "6/6 rows train exactly" in text and "0/6 rows (0%) truncated" in text and text.endswith("-> ok")


def test_template_without_generation_block(toy):
    no_generation = toy.tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""
    )
    report = run_lint(toy, chat_template=no_generation)
    assert kinds(report) == {"no_training_template"}, report.format()
    assert "TRL ships no training version" in report.errors[0] and "FAIL" in report.format()
    # the toy's ChatML renders prompts as Qwen3's does, so the shipped Qwen3 training template is offered; it passes
    assert report.fix == "--chat_template_path configs/templates/qwen3_training.jinja", report.fix
    fixed = copy.deepcopy(toy.tokenizer)
    fixed.chat_template = (REPO_ROOT / "configs/templates/qwen3_training.jinja").read_text()
    report = lint(fixed, rows(toy), assistant_only_loss=True, max_length=256, stock_template=no_generation)
    assert not report.errors, report.format()


def test_mask_that_drops_think(toy):
    report = run_lint(toy, chat_template=DROPS_THINK)
    assert kinds(report) == {"mask_drops"}, report.format()
    assert "<think>...</think>" in report.errors[0] and "rendered: …" in report.format()


def test_mask_that_drops_end_of_turn(toy):
    no_eot = toy.tokenizer.chat_template.replace(
        "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{- message['content'] }}{% endgeneration %}{{- '<|im_end|>' }}",
    )
    report = run_lint(toy, chat_template=no_eot)
    assert kinds(report) == {"eos_untrained"}, report.format()
    assert "'<|im_end|>' is rendered but not trained" in report.errors[0]


def test_prompt_tokens_trained_on(toy):
    whole = toy.tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    whole = "{% generation %}" + whole + "{% endgeneration %}"
    report = run_lint(toy, chat_template=whole)
    assert kinds(report) == {"prompt_trained"}, report.format()
    assert "⟦<|im_start|>user" in report.format()  # the trained prompt is shown between ⟦ ⟧
    assert "assistant_only_loss is off" in run_lint(toy, assistant_only_loss=False).errors[0]


def test_generation_prompt_differs_from_training_render(toy):
    drift = toy.tokenizer.chat_template.replace(
        "{{- '<|im_start|>assistant\\n' }}{%- endif %}", "{{- '<|im_start|>Assistant:\\n' }}{%- endif %}"
    )
    report = run_lint(toy, chat_template=drift)
    assert kinds(report) == {"train_eval_differ"}, report.format()
    text = report.format()
    assert "train: " in text and "eval:  " in text and "^ first difference" in text


def test_truncation_rate_is_reported(toy):
    report = run_lint(toy, max_length=40)
    assert "6/6 rows (100%) truncated at max_length=40" in report.format()
    assert report.warnings and not report.errors
