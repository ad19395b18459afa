"""Template lint, run before any training step: is the model trained on what we think it is?

On a few rendered rows it checks that
  - the chat template marks the assistant turn (`{% generation %}`) when `assistant_only_loss` is on,
    itself or through the training version TRL swaps in for known templates (Qwen2.5, Llama 3, ...);
  - the loss mask covers the whole `<think>...</think>`, the answer and the end-of-turn token;
  - nothing of the prompt is trained on;
  - the prompt part of a training row (training template) equals what evaluation/generation renders with
    the tokenizer's own template, the one saved with the model
    (`apply_chat_template(messages[:-1], add_generation_prompt=True)`, as trace_gen and eval_harness do);
  - how many rows `max_length` truncates;
  - for token-level KD, that student and teacher vocabularies have the same size.
The mask is computed the way TRL's SFTTrainer computes it (`return_assistant_tokens_mask=True`).

Usage:
    python -m sft run --config configs/sft/NAME.yaml --lint_only true
"""

from dataclasses import dataclass, field

from datasets import Dataset
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def training_template(tokenizer, assistant_only_loss: bool) -> str | None:
    """The template SFTTrainer renders training rows with: the tokenizer's own, or TRL's training version of
    it (with `{% generation %}`) when assistant-only loss needs markers the template lacks. None: no markers
    and no training version (SFTTrainer would refuse to train)."""
    template = tokenizer.chat_template
    if not assistant_only_loss or template is None or has_generation_markers(template):
        return template
    try:
        return get_training_chat_template(tokenizer)
    except ValueError:
        return None


@dataclass
class LintReport:
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def format(self) -> str:
        out = ["template lint:", *(f"  {line}" for line in self.lines)]
        out += [f"  WARNING {w}" for w in self.warnings]
        out += [f"  ERROR {e}" for e in self.errors]
        out.append(f"  -> {'FAIL' if self.errors else 'ok'}")
        return "\n".join(out)


def _check_row(tokenizer, messages: list[dict], train_template: str) -> tuple[list[str], list[str], int]:
    """(errors, warnings) for one conversation ending in an assistant turn, and its token length."""
    enc = tokenizer.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=train_template,
    )
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    history = tokenizer.apply_chat_template(messages[:-1], tokenize=True, return_dict=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(  # what generation/evaluation feeds the model
        messages[:-1], tokenize=True, return_dict=True, add_generation_prompt=True
    )["input_ids"]
    errors, warnings = [], []
    if ids[: len(prompt)] != list(prompt):
        errors.append(
            "the training render does not start with the generation prompt evaluation uses "
            "(apply_chat_template(..., add_generation_prompt=True)): train and eval templates differ"
        )
    n_prompt = len(prompt)
    trained_history = sum(mask[: len(history)])
    if trained_history:
        errors.append(f"{trained_history} prompt tokens are trained on (loss mask reaches into the prompt)")
    trained_header = [ids[i] for i in range(len(history), n_prompt) if mask[i]]
    if trained_header:  # e.g. TRL's Qwen2.5 training template starts the mask at the '\n' after 'assistant'
        warnings.append(
            f"{len(trained_header)} tokens of the generation prompt ({tokenizer.decode(trained_header)!r}) are "
            "trained on; evaluation supplies them, so this is harmless"
        )
    eos = tokenizer.eos_token_id
    end = next((i for i in range(n_prompt, len(ids)) if ids[i] == eos), None)
    if end is None:
        errors.append(f"no end-of-turn token {tokenizer.eos_token!r} after the prompt")
        end = len(ids) - 1
    elif not mask[end]:
        errors.append(f"the end-of-turn token {tokenizer.eos_token!r} is not trained on")
    body = range(n_prompt, end + 1)
    dropped = [i for i in body if not mask[i]]
    trained_text = tokenizer.decode([ids[i] for i in body if mask[i]])
    content = messages[-1]["content"]
    if THINK_CLOSE in content:
        reasoning = content[: content.index(THINK_CLOSE) + len(THINK_CLOSE)]
        answer = content[content.index(THINK_CLOSE) + len(THINK_CLOSE) :].strip()
        if THINK_CLOSE not in trained_text or (THINK_OPEN in reasoning and THINK_OPEN not in trained_text):
            errors.append("the loss mask drops the <think>...</think> block (or its tags)")
        if answer and answer not in trained_text:
            errors.append("the loss mask drops the answer after </think>")
    if dropped and not errors:
        errors.append(
            f"{len(dropped)} assistant tokens are not trained on: {tokenizer.decode([ids[i] for i in dropped])!r}"
        )
    return errors, warnings, len(ids)


def lint(
    tokenizer,
    dataset: Dataset,
    *,
    assistant_only_loss: bool,
    max_length: int | None,
    n_samples: int = 64,
    student_vocab: int | None = None,
    teacher_vocab: int | None = None,
) -> LintReport:
    """Render up to `n_samples` rows of `dataset` (`messages` or `text` column) and check them."""
    report = LintReport()
    rows = dataset.select(range(min(n_samples, len(dataset))))
    if student_vocab is not None and teacher_vocab is not None:
        if student_vocab != teacher_vocab:
            report.errors.append(
                f"student and teacher vocabularies differ: student {student_vocab}, teacher {teacher_vocab}"
            )
        else:
            report.lines.append(f"vocab: student = teacher = {student_vocab}")
    if "messages" not in rows.column_names:  # plain language-modelling text: every token is trained on
        lengths = [len(tokenizer(t)["input_ids"]) for t in rows["text"]]
        _truncation(report, lengths, max_length)
        return report
    if not assistant_only_loss:
        report.errors.append("assistant_only_loss is off: every prompt token is trained on (set it to true)")
        return report
    template = training_template(tokenizer, assistant_only_loss)
    if template is None:
        report.errors.append(
            "the chat template has no {% generation %} block (and TRL has no training version of it), so "
            "assistant_only_loss cannot mask the prompt; wrap the assistant body in {% generation %}...{% endgeneration %}"
        )
        return report
    if template != tokenizer.chat_template:
        report.lines.append(
            "template: training uses TRL's {% generation %} version of the tokenizer's template"
        )
    lengths, bad_rows = [], 0
    for i, messages in enumerate(rows["messages"]):
        errors, warnings, n = _check_row(tokenizer, list(messages), template)
        lengths.append(n)
        for w in warnings:
            if not any(x.endswith(w) for x in report.warnings):
                report.warnings.append(f"row {i}: {w}")
        if errors:
            bad_rows += 1
            for e in errors:
                line = f"row {i}: {e}"
                if not any(x.endswith(e) for x in report.errors):  # one line per kind of problem
                    report.errors.append(line)
    report.lines.append(
        f"mask: {len(rows) - bad_rows}/{len(rows)} rendered rows train exactly on <think>...</think> + "
        f"answer + {tokenizer.eos_token!r}, no prompt token"
    )
    _truncation(report, lengths, max_length)
    return report


def _truncation(report: LintReport, lengths: list[int], max_length: int | None) -> None:
    if not lengths:
        report.errors.append("no rows to lint")
        return
    over = sum(n > (max_length or float("inf")) for n in lengths)
    longest = max(lengths)
    report.lines.append(
        f"length: max {longest}, mean {sum(lengths) / len(lengths):.0f} tokens; "
        f"{over}/{len(lengths)} rows ({over / len(lengths):.0%}) truncated at max_length={max_length}"
    )
    if over:
        report.warnings.append(
            f"{over} rows lose their end (answer / end-of-turn) to truncation: raise max_length or filter them"
        )
