"""Prompt sets for on-policy distillation, and the lint that runs before it.

A prompt set becomes a Dataset with
  prompt         the chat up to the assistant turn (TRL's conversational `prompt` column);
  completion     [the assistant message] of a trace row (only for lmbda < 1: the off-policy batches);
  teacher_index  which teacher scores the row (0 without routing).

Sources: the toy task, a problems file in trace_gen's input format, or a trace_gen traces directory.
Problems become chats through `trace_gen.prompts` (the one implementation of "problem -> chat" that trace_gen
and eval_harness use: the student must be trained on the prompts it is evaluated on). That is the only
import of trace_gen in sft; traces are read as files, like `sft run` reads them.
"""

import json
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, load_dataset, load_from_disk

from sft.data import load_traces
from sft.errors import UsageError
from sft.lint import THINK_OPEN, LintReport, lint
from sft.on_policy_config import OnPolicyArguments


def load_prompt_set(args: OnPolicyArguments, teacher_names: list[str]) -> Dataset:
    """The prompt set of `args.prompts` with `prompt`, optional `completion`, and `teacher_index` columns."""
    path = Path(args.prompts)
    if args.prompts != "toy" and not path.exists() and path.suffix in (".jsonl", ".json", ".parquet"):
        raise UsageError(
            f"prompt set not found: {path}; pass --prompts a problems file, a traces dir or `toy`"
        )
    traces = args.prompts != "toy" and _has_messages(path)
    rows = _trace_rows(args) if traces else _problem_rows(args)
    if args.lmbda < 1 and not all(r.get("completion") for r in rows):
        raise UsageError(
            f"lmbda={args.lmbda} trains {1 - args.lmbda:.0%} of batches on the dataset's own completions, but "
            f"{args.prompts} has no assistant turns: pass a traces directory as --prompts, or set --lmbda 1"
        )
    if args.max_prompts is not None:
        rows = rows[: args.max_prompts]
    if not rows:
        raise UsageError(f"no prompts in {args.prompts}")
    index = {name: i for i, name in enumerate(teacher_names)}
    for row in rows:
        name = row.pop("teacher", None)
        if args.teacher_column and name not in index:
            raise UsageError(
                f"row with {args.teacher_column}={name!r} names no teacher; teachers are {', '.join(index)} "
                "(--teachers name=PATH_OR_URL ...)"
            )
        row["teacher_index"] = index[name] if args.teacher_column else 0
    return Dataset.from_list(rows)


def _has_messages(path: Path) -> bool:
    """A traces source: a directory of Parquet parts, or a .parquet/.jsonl file with a `messages` column."""
    if path.is_dir():
        return any(path.glob("*.parquet"))
    return "messages" in _columns(path)


def _columns(path: Path) -> list[str]:
    """Column names of a local .parquet / .jsonl file or saved dataset directory, read without loading it."""
    if path.suffix == ".parquet" and path.is_file():
        return list(pq.read_schema(path).names)
    if path.suffix in (".jsonl", ".json") and path.is_file():
        with path.open() as f:
            first = next((line for line in f if line.strip()), "{}")
        try:
            return list(json.loads(first))
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}:1 is not valid JSON ({err.msg}); fix or remove it") from err
    if path.is_dir() and (path / "dataset_info.json").exists():
        return list(load_from_disk(str(path)).column_names)
    return []  # a hub dataset: trace_gen's reader reports a missing column itself


def _trace_rows(args: OnPolicyArguments) -> list[dict]:
    extra = tuple(c for c in (args.teacher_column,) if c)
    ds = load_traces(args.prompts, args.keep_verdicts, extra_columns=extra)
    if args.teacher_column and args.teacher_column not in ds.column_names:
        raise UsageError(f"{args.prompts} has no column {args.teacher_column!r} to route teachers by")
    rows, seen = [], set()
    routes = ds[args.teacher_column] if args.teacher_column else None
    for i, messages in enumerate(ds["messages"]):
        messages = list(messages)
        has_answer = bool(messages) and messages[-1]["role"] == "assistant"
        prompt = messages[:-1] if has_answer else messages
        row = {"prompt": prompt, "completion": [messages[-1]] if has_answer else None}
        if args.teacher_column:
            row["teacher"] = routes[i]
        if args.lmbda == 1:  # prompts only: each prompt once, however many traces it has
            key = json.dumps(prompt, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            row.pop("completion")
        rows.append(row)
    return rows


def _problem_rows(args: OnPolicyArguments) -> list[dict]:
    from trace_gen.errors import UsageError as TraceGenUsageError
    from trace_gen.prompts import R1_INSTRUCTION, dataset_prompts, toy_prompts

    instruction = R1_INSTRUCTION if args.instruction is None else args.instruction
    try:
        if args.prompts == "toy":
            records = toy_prompts(args.split, args.system_prompt)
        else:
            columns = _columns(Path(args.prompts))
            if columns and args.problem_column not in columns:
                raise UsageError(
                    f"{args.prompts} has no problem column {args.problem_column!r} (columns: {', '.join(columns)}); "
                    "name yours with --problem_column, or pass a traces directory"
                )
            records = dataset_prompts(
                args.prompts, args.split, args.problem_column, None, None, args.system_prompt, instruction
            )
    except TraceGenUsageError as err:
        raise UsageError(str(err)) from err
    teachers = _column(args) if args.teacher_column else [None] * len(records)
    if len(teachers) != len(records):
        raise UsageError(
            f"{args.prompts}: {len(teachers)} {args.teacher_column} values for {len(records)} problems"
        )
    rows = []
    for record, teacher in zip(records, teachers, strict=True):
        if record.problem.strip():  # trace_gen keeps empty problems as records; nothing to sample from
            rows.append({"prompt": list(record.messages), "teacher": teacher})
    return rows


def _column(args: OnPolicyArguments) -> list:
    """The routing column of a problems file, in file order (the order trace_gen reads the problems in)."""
    path = Path(args.prompts)
    if path.is_dir():
        ds = load_from_disk(str(path))
    else:
        kind = "parquet" if path.suffix == ".parquet" else "json"
        ds = load_dataset(kind, data_files=str(path), split="train")
    if args.teacher_column not in ds.column_names:
        raise UsageError(
            f"{args.prompts} has no column {args.teacher_column!r} to route teachers by "
            f"(columns: {', '.join(ds.column_names)})"
        )
    return list(ds[args.teacher_column])


def lint_on_policy(
    tokenizer,
    dataset: Dataset,
    *,
    max_completion_length: int,
    max_positions: int | None,
    think_close: str,
    n_samples: int,
) -> LintReport:
    """Checks before any generation: the prompts render through the student's chat template and fit its
    context with the sampling budget, how the reasoning opens and closes, and (off-policy rows) sft's
    template lint of the trace rows. Vocabulary checks are added by the caller."""
    report = LintReport()
    if not tokenizer.chat_template:
        report.errors.append(
            "the student's tokenizer has no chat template: prompts are rendered with "
            "apply_chat_template(..., add_generation_prompt=True); save the student with its template"
        )
        return report
    rows = dataset.select(range(min(n_samples, len(dataset))))
    rendered = [
        tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in rows["prompt"]
    ]
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rendered]
    report.lines.append(
        f"prompts: {len(dataset)}; rendered {len(rows)}: max {max(lengths)}, mean {sum(lengths) / len(lengths):.0f} "
        f"tokens + up to {max_completion_length} sampled"
    )
    if max_positions is not None:
        too_long = sum(n >= max_positions for n in lengths)
        over = sum(n + max_completion_length > max_positions for n in lengths)
        if too_long:
            report.errors.append(
                f"{too_long} prompts are longer than the student's context ({max_positions})"
            )
        elif over:
            report.warnings.append(
                f"{over}/{len(lengths)} prompts + max_completion_length exceed the student's context "
                f"({max_positions}): lower max_completion_length"
            )
    prefill = rendered[0].rstrip().endswith(THINK_OPEN)
    report.lines.append(
        f"reasoning: the generation prompt {'prefills' if prefill else 'does not prefill'} {THINK_OPEN!r}; a "
        f"sample counts as closed when it contains {think_close!r} "
        f"({len(tokenizer(think_close, add_special_tokens=False)['input_ids'])} token(s))"
    )
    if "completion" in dataset.column_names:
        conversations = rows.map(lambda r: {"messages": r["prompt"] + r["completion"]})
        rows_report = lint(
            tokenizer, conversations, assistant_only_loss=True, max_length=None, n_samples=n_samples
        )
        report.lines += [f"off-policy rows: {line}" for line in rows_report.lines]
        report.warnings += rows_report.warnings
        report.errors += rows_report.errors
    return report
