"""Template lint, run before the model loads: is the student trained on what we think, and evaluated on the
prompt it was trained after?

It renders a sample of rows exactly as SFTTrainer will: with the tokenizer after `--eos_token` and
`--chat_template_path` (sft/templates.py), and TRL's training version of the template where SFTTrainer swaps one
in; the loss mask is TRL's (`return_assistant_tokens_mask=True`, labels = ids where the mask is set). The eval
prompt is rendered with the template that is saved with the student. For the last assistant turn of each row:
  - the training row starts with the eval prompt (apply_chat_template(messages[:-1], add_generation_prompt=True),
    as trace_gen and eval_harness render it): a template that prefills '<think>\\n' needs traces that start with it;
  - no prompt token is trained (earlier assistant turns are, on purpose: SFTTrainer trains every assistant turn);
  - the whole reasoning (with '<think>' and '</think>'), the answer and the end-of-turn token are trained, that
    token is the tokenizer's eos, and no reasoning is replaced by an empty '<think></think>';
  - how many rows max_length truncates.
A failure prints one block per problem: what is wrong, the rendered text around it, and a fix that was checked
to pass (another template, --eos_token, or a data change), naming the closest template TRL ships.

Usage:
    python -m sft run --config configs/sft/NAME.yaml --lint_only true
"""

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from datasets import Dataset
from jinja2 import TemplateError

from sft.templates import (
    REFERENCE_ANSWER,
    SHIPPED_DIR,
    SYNTHETIC_PROMPTS,
    TRL_DIR,
    closest_trl_template,
    describe,
    eval_prompt_ids,
    probe_prompts,
    same_prompts,
    saved_template,
    shipped_templates,
    training_template,
    trl_training_version,
)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = re.compile(r"<think>\s*</think>")
CONTEXT = 40  # characters of rendered text shown either side of a problem
FIX_ROWS = 8  # rows a candidate fix is re-checked on (the failing ones first)


@dataclass
class Finding:
    kind: str
    level: str  # "error" | "warning" | "info"
    what: str
    where: str = ""


@dataclass
class LintReport:
    header: str = ""
    lines: list[str] = field(default_factory=list)
    findings: dict[str, tuple[Finding, list[int]]] = field(default_factory=dict)  # kind -> (first, rows)
    fix: str = ""
    closest: str = ""  # the stock template TRL ships that is most like the failing one, and how they differ
    train_template: str | None = None  # renders the training rows
    saved_template: str | None = None  # saved with the student; renders prompts at evaluation
    first_row: dict | None = None  # input_ids and labels of the first linted row, untruncated

    def add(self, row: int, finding: Finding) -> None:
        if finding.kind in self.findings:
            self.findings[finding.kind][1].append(row)
        else:
            self.findings[finding.kind] = (finding, [row])

    def of_level(self, level: str) -> list[tuple[Finding, list[int]]]:
        return [(f, rows) for f, rows in self.findings.values() if f.level == level]

    @property
    def errors(self) -> list[str]:
        return [f.what for f, _ in self.of_level("error")]

    @property
    def warnings(self) -> list[str]:
        return [f.what for f, _ in self.of_level("warning")]

    def format(self) -> str:
        out = [f"template lint: {self.header}", *(f"  {line}" for line in self.lines)]
        for level, label in (("info", "info"), ("warning", "WARNING"), ("error", "ERROR")):
            for finding, rows in self.of_level(level):
                shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
                out.append(f"  {label} (rows {shown}): {finding.what}")
                if finding.where:
                    out += [f"      {line}" for line in finding.where.splitlines()]
        if self.errors:
            out.append(f"  fix: {self.fix}")
            out += [f"  {line}" for line in self.closest.splitlines()]
        out.append(f"  -> {'FAIL' if self.errors else 'ok'}")
        return "\n".join(out)


# --- rendering helpers ------------------------------------------------------------------------------------


def _render(tokenizer, messages, template, **kw) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=True, return_dict=True, **kw
        )["input_ids"]
    )


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _marked(tokenizer, ids: list[int], start: int, end: int) -> str:
    """Rendered text around tokens [start, end), which are shown between ⟦ and ⟧."""
    before = tokenizer.decode(ids[:start])[-CONTEXT:]
    inside = tokenizer.decode(ids[start:end])
    if len(inside) > 2 * CONTEXT:
        inside = inside[:CONTEXT] + " ... " + inside[-CONTEXT:]
    after = tokenizer.decode(ids[end:])[:CONTEXT]
    return f"rendered: …{_esc(before)}⟦{_esc(inside)}⟧{_esc(after)}…"


def _text_diff(labels: tuple[str, str], a: str, b: str, c: int | None = None, note: str = "") -> str:
    """Two rendered texts around their first differing character `c` (found if None), a caret under it."""
    if c is None:
        c = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, c - CONTEXT)
    lead = "…" if lo else ""
    width = max(len(label) for label in labels) + 2
    first, second = (f"{label}:".ljust(width) for label in labels)
    caret = " " * (width + len(lead) + len(_esc(a[lo:c])))
    return (
        f"{first}{lead}{_esc(a[lo : c + CONTEXT])}\n{second}{lead}{_esc(b[lo : c + CONTEXT])}\n"
        f"{caret}^ first difference{note}"
    )


def _divergence(tokenizer, train_ids: list[int], eval_ids: list[int], j: int) -> str:
    """Training row vs eval prompt, a caret under the first character that differs."""
    train, prompt = tokenizer.decode(train_ids), tokenizer.decode(eval_ids)
    if train.startswith(prompt):  # same text, different tokens: a merge across the prompt/answer boundary
        return _text_diff(
            ("train", "eval"),
            train,
            prompt,
            len(tokenizer.decode(eval_ids[:j])),
            " (same text, tokenized differently)",
        )
    return _text_diff(("train", "eval"), train, prompt)


def _reasoning(message: dict) -> tuple[str, str, bool]:
    """(reasoning body, answer, has reasoning) of an assistant message: `reasoning_content`, or split at </think>."""
    content = message.get("content") or ""
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"].strip():
        return message["reasoning_content"].strip(), content.strip(), True
    if THINK_CLOSE in content:
        head, answer = content.split(THINK_CLOSE, 1)
        return head.split(THINK_OPEN)[-1].strip(), answer.strip(), True
    return "", content.strip(), False


def _lacks_open_tag(message: dict) -> bool:
    content = message.get("content") or ""
    return THINK_CLOSE in content and THINK_OPEN not in content


# --- one row ----------------------------------------------------------------------------------------------


def check_row(tokenizer, messages: list[dict], train_template: str, eval_template: str) -> tuple[list, dict]:
    """Findings for one conversation, and its rendered training row {"input_ids", "labels"}."""
    last = len(messages) - 1
    if messages[last]["role"] != "assistant":
        return [Finding("no_answer", "error", "the row does not end with an assistant turn")], {}
    enc = tokenizer.apply_chat_template(
        messages,
        chat_template=train_template,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    row = {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)]}
    if not any(mask):
        return [
            Finding("nothing_trained", "error", "no token is trained (the template marks no assistant turn)")
        ], row
    prompt = messages[:last]
    history = _render(tokenizer, prompt, train_template)
    h = _common_prefix(history, ids)  # end of the history
    if h < len(history) and mask[h]:
        what = (
            "the end of the prompt and the start of the assistant turn merge into one trained token (the template's "
            "markers are not tokens of this tokenizer)"
        )
        return [Finding("prompt_trained", "error", what, _marked(tokenizer, ids, h, h + 1))], row
    f_train = _common_prefix(_render(tokenizer, prompt, train_template, add_generation_prompt=True), ids)
    eval_ids = eval_prompt_ids(tokenizer, prompt, eval_template)
    earlier = [k for k in range(last) if messages[k]["role"] == "assistant"]
    spans = [
        (
            _common_prefix(_render(tokenizer, messages[:k], train_template), ids),
            _common_prefix(_render(tokenizer, messages[: k + 1], train_template), ids),
        )
        for k in earlier
    ]
    findings = []
    # 1. the training row starts with the prompt evaluation renders
    j = _common_prefix(eval_ids, ids)
    if j < len(eval_ids):
        where = _divergence(tokenizer, ids, eval_ids, j)
        prefilled = THINK_OPEN in tokenizer.decode(eval_ids[h:])
        if prefilled and _lacks_open_tag(messages[last]):
            what = (
                "the template's generation prompt prefills '<think>' but the traces' assistant turns start without "
                "it: the student would be trained after a prompt evaluation never shows"
            )
            return [Finding("think_open_missing_prefill", "error", what, where)], row
        if prefilled and not _reasoning(messages[last])[2]:
            what = (
                "the template's generation prompt prefills '<think>' but the rows carry no reasoning ('</think>' "
                "missing): the student would be trained after a prompt evaluation never shows"
            )
            return [Finding("no_reasoning_prefill", "error", what, where)], row
        if spans and j >= spans[0][0]:
            what = (
                "earlier assistant turns render differently at evaluation (e.g. the saved template drops their "
                "reasoning): the last turn is trained after a history inference never shows"
            )
            findings.append(Finding("history_differs", "warning", what, where))
        else:
            what = "the training row does not start with the prompt evaluation renders: train and eval templates differ"
            return [Finding("train_eval_differ", "error", what, where)], row
    else:
        f_train = max(f_train, len(eval_ids))
    # 2. prompt tokens: only earlier assistant turns may be trained
    allowed = {i for s, e in spans for i in range(s, e)}
    stray = [i for i in range(h) if mask[i] and i not in allowed]
    if stray:
        what = (
            f"prompt tokens are trained on ({len(stray)}: the loss mask reaches outside the assistant turns)"
        )
        return [
            Finding("prompt_trained", "error", what, _marked(tokenizer, ids, stray[0], stray[-1] + 1))
        ], row
    in_earlier = sum(mask[i] for i in allowed if i < h)
    if in_earlier:
        what = f"earlier assistant turns are trained too ({len(earlier)}, {in_earlier} tokens): SFTTrainer trains every assistant turn"
        findings.append(Finding("earlier_turns", "info", what))
    header = [i for i in range(h, f_train) if mask[i]]
    if header:
        what = (
            f"tokens of the generation prompt are trained ({tokenizer.decode([ids[i] for i in header])!r}): "
            "evaluation supplies them, so this is harmless"
        )
        findings.append(Finding("header_trained", "info", what))
    return findings + _check_last_turn(tokenizer, messages[last], ids, mask, h, f_train), row


def _check_last_turn(tokenizer, message, ids, mask, h, f) -> list[Finding]:
    """The last assistant turn, tokens [f, len(ids)) after the eval prompt ([h, f) is the generation prompt)."""
    trained = [i for i in range(f, len(ids)) if mask[i]]
    if not trained:
        return [Finding("nothing_trained", "error", "no token of the last assistant turn is trained")]
    turn = tokenizer.decode(ids[h:])
    trained_text = tokenizer.decode([ids[i] for i in trained])
    reasoning, answer, has_reasoning = _reasoning(message)
    span = _marked(tokenizer, ids, f, len(ids))
    if EMPTY_THINK.search(turn) and has_reasoning:
        what = "the trained turn holds an empty '<think></think>': the template drops the trace's reasoning"
        return [Finding("empty_think", "error", what, span)]
    if EMPTY_THINK.search(turn):
        what = (
            "the trained turn holds an empty '<think></think>': the row has no reasoning in its content (a server "
            "reasoning parser may have moved it out)"
        )
        return [Finding("no_reasoning_empty_think", "error", what, span)]
    if has_reasoning and reasoning not in turn:
        what = "the template removes the reasoning from the assistant turn (only the answer is rendered)"
        return [Finding("reasoning_removed", "error", what, span)]
    if has_reasoning and THINK_OPEN not in turn:
        what = (
            "the traces' assistant turns have '</think>' but no opening '<think>', and the template adds none: the "
            "student would learn to reason without opening the block"
        )
        return [Finding("think_open_missing", "error", what, span)]
    holes = [i for i in range(trained[0], trained[-1]) if not mask[i]]
    if (has_reasoning and (reasoning not in trained_text or THINK_CLOSE not in trained_text)) or holes:
        first = holes[0] if holes else next(i for i in range(f, len(ids)) if not mask[i])
        what = "the loss mask drops part of the assistant turn (" + (
            "the <think>...</think> block)" if has_reasoning and reasoning not in trained_text else "see ⟦⟧)"
        )
        return [Finding("mask_drops", "error", what, _marked(tokenizer, ids, first, first + 1))]
    if answer and answer not in trained_text:
        return [Finding("answer_untrained", "error", "the loss mask drops the answer", span)]
    findings = (
        []
        if has_reasoning
        else [Finding("no_reasoning", "warning", "rows without '</think>': only an answer is trained")]
    )
    return findings + _check_end(tokenizer, ids, mask, f, trained)


def _check_end(tokenizer, ids, mask, f, trained) -> list[Finding]:
    """The last trained token of the turn must be the tokenizer's eos (what generation stops at)."""
    eos = tokenizer.eos_token
    last = next((i for i in reversed(trained) if tokenizer.decode([ids[i]]).strip()), trained[-1])
    if ids[last] == tokenizer.eos_token_id:
        return []
    where = _marked(tokenizer, ids, last, last + 1)
    end = tokenizer.convert_ids_to_tokens(ids[last])
    if ids[last] in set(tokenizer.get_added_vocab().values()):
        what = (
            f"the assistant turn ends with {end!r}, but the tokenizer's eos is {eos!r}: the student would not "
            "stop at the end of its turn"
        )
        return [Finding("eos_mismatch", "error", what, where)]
    if tokenizer.eos_token_id in ids[f:]:
        what = (
            f"the end-of-turn token {eos!r} is rendered but not trained: the student would not learn to stop"
        )
        return [Finding("eos_untrained", "error", what, where)]
    what = f"the assistant turn does not end with the tokenizer's eos {eos!r}"
    foreign = re.findall(r"<[|｜][^<>]*[|｜]>", tokenizer.decode(ids[f:]))
    unknown = sorted(
        {t for t in foreign if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)}
    )
    if unknown:
        what += f"; {', '.join(map(repr, unknown))}: not a token of this tokenizer (the template is another family's)"
    return [Finding("no_eos", "error", what, where)]


# --- the lint ---------------------------------------------------------------------------------------------


def sample_rows(dataset: Dataset, n: int) -> list[int]:
    """Up to `n` row indices spread evenly over the dataset (row 0 first)."""
    step = max(1, len(dataset) // max(n, 1))
    return list(range(0, len(dataset), step))[:n]


def check_rows(
    tokenizer, rows: dict, train_template, eval_template, report: LintReport | None = None, errors_only=False
):
    """Check conversations {label: messages}; returns (report, token lengths of the rows)."""
    report = report or LintReport()
    lengths = []
    for label, messages in rows.items():
        try:
            findings, row = check_row(tokenizer, messages, train_template, eval_template)
        except (TemplateError, TypeError, ValueError) as err:
            findings, row = [Finding("render_error", "error", f"the template fails on this row: {err}")], {}
        lengths.append(len(row.get("input_ids", ())))
        if label == 0:
            report.first_row = row
        for finding in findings:
            if finding.level == "error" or not errors_only:
                report.add(label, finding)
    return report, lengths


def reference_rows() -> dict:
    """Well-formed reasoning conversations, checked beside the data: a failure here is the template's."""
    answer = {"role": "assistant", "content": REFERENCE_ANSWER}
    return {f"reference {i + 1}": [*prompt, answer] for i, prompt in enumerate(SYNTHETIC_PROMPTS)}


def lint(
    tokenizer,
    dataset: Dataset,
    *,
    assistant_only_loss: bool,
    max_length: int | None,
    stock_template: str | None = None,
    n_samples: int = 64,
) -> LintReport:
    """Check `n_samples` rows of `dataset` (`messages` or `text` column), and two reference conversations,
    rendered as SFTTrainer will.

    `tokenizer`: after apply_trainer_settings; `stock_template`: its chat template before (the model's own).
    """
    report = LintReport(saved_template=tokenizer.chat_template)  # refined below for conversations
    picked = sample_rows(dataset, n_samples)
    sample = dataset.select(picked)
    if "messages" not in sample.column_names:  # plain language-modelling text: every token is trained on
        report.header = f"{len(sample)} of {len(dataset)} text rows"
        _truncation(report, [len(tokenizer(t)["input_ids"]) for t in sample["text"]], max_length, picked)
        return report
    # as SFTTrainer passes them (None fields kept), labelled with their row number in the dataset
    rows = {i: list(messages) for i, messages in zip(picked, sample["messages"], strict=True)}
    report.header = f"{len(rows)} of {len(dataset)} rows; tokenizer eos {tokenizer.eos_token!r}"
    if not assistant_only_loss:
        what = "assistant_only_loss is off: every prompt token is trained on"
        report.add(picked[0], Finding("loss_on_prompt", "error", what))
        report.fix = "--assistant_only_loss true"
        return report
    if tokenizer.chat_template is None:
        report.add("reference 1", Finding("no_template", "error", "the tokenizer has no chat template"))
        report.fix = _fix(tokenizer, rows, stock_template, report) or _advice(tokenizer)
        return report
    report.train_template = training_template(tokenizer, assistant_only_loss)
    report.saved_template = saved_template(tokenizer, stock_template, probe_prompts(list(rows.values())))
    report.lines.append(
        f"training template: {describe(report.train_template, tokenizer.chat_template)}; saved with the student "
        f"(renders prompts at evaluation): {describe(report.saved_template, stock_template)}"
    )
    if report.train_template is None:
        what = (
            "the chat template has no {% generation %} markers and TRL ships no training version of it, so "
            "SFTTrainer cannot mask the prompt (it would raise)"
        )
        report.add("reference 1", Finding("no_training_template", "error", what))
    else:
        check_rows(tokenizer, reference_rows(), report.train_template, report.saved_template, report, True)
        _, lengths = check_rows(tokenizer, rows, report.train_template, report.saved_template, report)
        bad = {r for f, rs in report.of_level("error") for r in rs if r in rows}
        report.lines.append(
            f"mask: {len(rows) - len(bad)}/{len(rows)} rows train exactly the reasoning, the answer and "
            f"{tokenizer.eos_token!r}, and start with the eval prompt"
        )
        _truncation(report, lengths, max_length, picked)
    if report.errors:
        report.fix = _fix(tokenizer, rows, stock_template, report) or _advice(tokenizer)
        if not _kinds(report) <= DATA_KINDS:
            report.closest = _closest(tokenizer)
    return report


def _truncation(report: LintReport, lengths: list[int], max_length: int | None, labels: list[int]) -> None:
    if not lengths:
        report.add("-", Finding("no_rows", "error", "no rows to lint"))
        return
    over = sum(n > (max_length or float("inf")) for n in lengths)
    report.lines.append(
        f"length: max {max(lengths)}, mean {sum(lengths) / len(lengths):.0f} tokens; "
        f"{over}/{len(lengths)} rows ({over / len(lengths):.0%}) truncated at max_length={max_length}"
    )
    if over:
        what = f"{over} rows lose their end (answer / end-of-turn) to truncation: raise max_length or filter them"
        report.add(
            next(i for i, n in enumerate(lengths) if n > max_length), Finding("truncated", "warning", what)
        )


# --- fixes: each candidate is linted, and only one under which the rows pass is offered -------------------

OPEN_TAG_KINDS = {"think_open_missing", "think_open_missing_prefill"}
NO_REASONING_KINDS = {"no_reasoning_prefill", "no_reasoning_empty_think"}
DATA_KINDS = OPEN_TAG_KINDS | NO_REASONING_KINDS  # problems of the rows, not of the template
OPEN_TAG_FIX = "prepend '<think>\\n' to each assistant content that lacks it (trace_gen stores it), or regenerate the traces"
NO_REASONING_FIX = (
    "the rows carry no reasoning: regenerate the traces with it in the assistant content ('<think>\\n…</think>"
    "\\n\\nanswer', as trace_gen writes it; a server-side reasoning parser moves it out), or drop such rows"
)


def _errors(tokenizer, rows: dict, stock) -> LintReport:
    train = training_template(tokenizer, True)
    if train is None:
        report = LintReport()
        report.add("reference 1", Finding("no_training_template", "error", ""))
        return report
    saved = saved_template(tokenizer, stock, probe_prompts(list(rows.values())))
    return check_rows(tokenizer, rows, train, saved)[0]


def _kinds(report: LintReport) -> set[str]:
    return {f.kind for f, _ in report.of_level("error")}


def _opened(rows: dict) -> dict:
    """The rows with '<think>\\n' prepended where the reasoning has no opening tag."""
    return {
        k: [*m[:-1], {**m[-1], "content": "<think>\n" + m[-1]["content"]}] if _lacks_open_tag(m[-1]) else m
        for k, m in rows.items()
    }


def _data_fix(tokenizer, rows: dict, stock, kinds: set[str]) -> str | None:
    """The change to the rows that clears the data problems in `kinds` (checked, for a missing '<think>')."""
    if kinds & NO_REASONING_KINDS:
        return NO_REASONING_FIX
    return OPEN_TAG_FIX if not _errors(tokenizer, _opened(rows), stock).errors else None


def _fix(tokenizer, rows: dict, stock, report: LintReport) -> str:
    """A fix under which the reference conversations and the failing rows (and a few others) pass; '' if none.

    The reference conversations pass: only the rows are wrong, so the fix is a data change. Otherwise the
    template (or eos) is: try dropping --chat_template_path, --eos_token, and each shipped training template
    that renders the same prompts as the model's own, most similar first; a data change may follow.
    """
    failing = [r for r in dict.fromkeys(r for f, rs in report.of_level("error") for r in rs) if r in rows]
    probe = {**reference_rows(), **{r: rows[r] for r in failing[:FIX_ROWS]}}
    probe.update({r: m for r, m in rows.items() if r not in failing and len(probe) < 2 + 2 * FIX_ROWS})
    kinds = _kinds(report)
    if kinds <= DATA_KINDS:
        return _data_fix(tokenizer, probe, stock, kinds) or ""
    eos = _end_token(report) or _end_token(_errors(tokenizer, _opened(probe), stock))
    reference = stock if stock is not None else tokenizer.chat_template
    candidates = []  # (flags, template or None to keep the current one, eos or None to keep it)
    if stock is not None and tokenizer.chat_template != stock:
        candidates.append(("drop --chat_template_path (the model's own template passes)", stock, None))
    if eos:
        candidates.append((f"--eos_token '{eos}'", None, eos))
    for path in shipped_templates(like=reference):
        flag = f"--chat_template_path {path.relative_to(SHIPPED_DIR.parents[1])}"
        text = path.read_text(encoding="utf-8")
        candidates += [(flag, text, None)] + ([(f"{flag} --eos_token '{eos}'", text, eos)] if eos else [])
    prompts = probe_prompts(list(probe.values()))
    for flags, template, new_eos in candidates:
        if (
            template is not None
            and reference is not None
            and not same_prompts(tokenizer, template, reference, prompts)
        ):
            continue  # a training template must not change the prompts the student is evaluated with
        with _trying(tokenizer, template, new_eos):
            left = _kinds(_errors(tokenizer, probe, stock))
            if not left:
                return flags
            if left <= DATA_KINDS:
                then = _data_fix(tokenizer, probe, stock, left)
                if then:
                    return f"{flags}, then {then}"
    return ""


@contextmanager
def _trying(tokenizer, template: str | None, eos: str | None):
    """The tokenizer with another template and/or eos for a moment (a deep copy of a 150k vocabulary is slow)."""
    before = tokenizer.chat_template, tokenizer.eos_token
    try:
        if template is not None:
            tokenizer.chat_template = template
        if eos is not None:
            tokenizer.eos_token = eos
        yield tokenizer
    finally:
        tokenizer.chat_template, tokenizer.eos_token = before


def _end_token(report: LintReport) -> str | None:
    entry = report.findings.get("eos_mismatch")
    return re.search(r"ends with '([^']+)'", entry[0].what).group(1) if entry else None


def _closest(tokenizer) -> str:
    """The stock template TRL ships that is most like the tokenizer's, and where their renders first differ."""
    name, ratio = closest_trl_template(tokenizer.chat_template or "")
    training = trl_training_version(name)
    line = f"closest template TRL ships: {name} ({ratio:.1%} alike; " + (
        f"its training version: trl/chat_templates/{training})"
        if training
        else "TRL has no training version)"
    )
    conversation = reference_rows()["reference 1"]
    trl = (TRL_DIR / name).read_text(encoding="utf-8")
    for messages, gen in ((conversation, False), (conversation[:-1], True)):  # the turn, then the prompt
        try:
            ours, theirs = (
                tokenizer.apply_chat_template(
                    messages, chat_template=t, tokenize=False, add_generation_prompt=gen
                )
                for t in (tokenizer.chat_template, trl)
            )
        except (TemplateError, TypeError, ValueError):
            return line
        if ours != theirs:
            return f"{line}; rendered, they first differ here:\n" + _text_diff(("yours", name), ours, theirs)
    return f"{line}; it renders the reference conversation and prompt identically"


def _advice(tokenizer) -> str:
    """No candidate passed: what to change, with the closest template TRL ships as a starting point."""
    return (
        "write a training version of the template that renders the same prompts and wraps each assistant turn's "
        "content and end-of-turn token in {% generation %}...{% endgeneration %}, and pass it with "
        f"--chat_template_path FILE (examples in {SHIPPED_DIR.relative_to(SHIPPED_DIR.parents[1])}/)"
    )
