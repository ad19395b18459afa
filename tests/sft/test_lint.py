"""The template lint catches a template without {% generation %}, a mask that drops </think>, trained
prompt tokens, eval/train template drift, truncation and a KD vocabulary mismatch."""

import copy

from datasets import Dataset

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
    return lint(tokenizer, rows(toy), **kw)


def test_good_template_passes(toy):
    report = run_lint(toy)
    assert not report.errors and not report.warnings, report.format()
    text = report.format()
    assert "6/6 rendered rows train exactly" in text and "0/6 rows (0%) truncated" in text and "ok" in text


def test_template_without_generation_block(toy):
    no_generation = toy.tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""
    )
    report = run_lint(toy, chat_template=no_generation)
    assert report.errors and "no {% generation %} block" in report.errors[0]
    assert "FAIL" in report.format()


def test_mask_that_drops_think(toy):
    report = run_lint(toy, chat_template=DROPS_THINK)
    assert any("drops the <think>...</think>" in e for e in report.errors), report.format()


def test_mask_that_drops_end_of_turn(toy):
    no_eot = toy.tokenizer.chat_template.replace(
        "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{- message['content'] }}{% endgeneration %}{{- '<|im_end|>' }}",
    )
    report = run_lint(toy, chat_template=no_eot)
    assert any("end-of-turn token '<|im_end|>' is not trained on" in e for e in report.errors), (
        report.format()
    )


def test_prompt_tokens_trained_on(toy):
    whole = toy.tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    whole = "{% generation %}" + whole + "{% endgeneration %}"
    report = run_lint(toy, chat_template=whole)
    assert any("prompt tokens are trained on" in e for e in report.errors), report.format()
    assert "assistant_only_loss is off" in run_lint(toy, assistant_only_loss=False).errors[0]


def test_generation_prompt_differs_from_training_render(toy):
    drift = toy.tokenizer.chat_template.replace(
        "{{- '<|im_start|>assistant\\n' }}{%- endif %}", "{{- '<|im_start|>Assistant:\\n' }}{%- endif %}"
    )
    report = run_lint(toy, chat_template=drift)
    assert any("train and eval templates differ" in e for e in report.errors), report.format()


def test_truncation_rate_is_reported(toy):
    report = run_lint(toy, max_length=40)
    assert "6/6 rows (100%) truncated at max_length=40" in report.format()
    assert report.warnings and not report.errors


def test_vocab_mismatch_names_both_sizes(toy):
    report = run_lint(toy, student_vocab=512, teacher_vocab=520)
    assert "student 512, teacher 520" in report.errors[0]


def test_known_template_without_markers_uses_trl_training_version(toy):
    from trl.chat_template_utils import qwen2_5_chat_template

    report = run_lint(toy, chat_template=qwen2_5_chat_template)
    assert not report.errors, report.format()
    assert "TRL's {% generation %} version" in report.format()
    # TRL's Qwen2.5 training template masks from the '\n' after 'assistant': reported, not fatal
    assert "tokens of the generation prompt ('\\n') are trained on" in report.warnings[0]
