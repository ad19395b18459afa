"""Offline KD data: tokenise trace rows and place the teacher's stored top-k on the assistant tokens.

trace_gen stores, per GENERATED token of the assistant completion (incl. the final end-of-turn token),
`token_ids` (T,), `topk_ids` (T*K,) and `topk_logprobs` (T*K,) row-major. Training re-tokenises the
conversation through the chat template, so a row is usable only if the template's assistant tokens are
exactly the stored `token_ids` (same tokenizer, same template, no re-tokenisation drift). Rows that
differ are counted, reported and dropped; nothing is silently shifted.

The prepared rows carry `input_ids`, `labels` (-100 outside the assistant turn), `kd_start` (index of
the first assistant token) and the top-k lists, already truncated like TRL truncates (`keep_start`).
`OfflineKDCollator` turns them into (B, L, K) tensors aligned with `labels`.
"""

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from sft.errors import UsageError

KD_COLUMNS = ("token_ids", "topk_ids", "topk_logprobs")
TEACHER_INDEX = "teacher_index"  # routed multi-teacher KD: the row's teacher, an index into `teachers`


def _prepare_row(row, tokenizer, chat_template, max_length):
    enc = tokenizer.apply_chat_template(
        list(row["messages"]),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=chat_template,
    )
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    pos = [i for i, m in enumerate(mask) if m]
    stored = list(row["token_ids"])
    n_tok = len(stored)
    k = len(row["topk_ids"]) // max(n_tok, 1)
    reason = ""
    if not pos:
        reason = "no assistant tokens (template without {% generation %}?)"
    elif pos != list(range(pos[0], pos[0] + len(pos))):
        reason = "assistant tokens are not one contiguous turn"
    elif [ids[i] for i in pos] != stored:
        reason = f"template tokens ({len(pos)}) differ from stored token_ids ({n_tok})"
    elif n_tok == 0 or k * n_tok != len(row["topk_ids"]) or len(row["topk_logprobs"]) != k * n_tok:
        reason = f"top-k lists of {len(row['topk_ids'])} entries do not hold K per token for {n_tok} tokens"
    if reason:
        return {"input_ids": [], "labels": [], "kd_start": 0, "kd_k": 0, "topk_ids": [], "topk_logprobs": [],
                "kd_error": reason}  # fmt: skip
    start = pos[0]
    labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
    if max_length is not None and len(ids) > max_length:  # TRL's keep_start truncation
        ids, labels = ids[:max_length], labels[:max_length]
    kept = max(0, min(n_tok, len(ids) - start))  # teacher rows that survive truncation
    return {
        "input_ids": ids,
        "labels": labels,
        "kd_start": start,
        "kd_k": k,
        "topk_ids": list(row["topk_ids"])[: kept * k],
        "topk_logprobs": list(row["topk_logprobs"])[: kept * k],
        "kd_error": "",
    }


def prepare_offline_kd(
    dataset: Dataset, tokenizer, max_length: int | None, chat_template: str | None = None
) -> tuple[Dataset, dict]:
    """Tokenise `messages` and align the stored top-k; returns (prepared rows, alignment stats).

    Stats: {"rows", "aligned", "misaligned", "k", "examples": [(row index, reason), ...]}.
    Raises UsageError when no row is aligned or K differs across rows.
    """
    missing = [c for c in (*KD_COLUMNS, "messages") if c not in dataset.column_names]
    if missing:
        raise UsageError(
            f"kd_source=offline needs columns {', '.join(missing)} in the traces: generate them with "
            "trace_gen's top-k logprobs option, or use --kd_source online"
        )
    prepared = dataset.map(
        _prepare_row,
        fn_kwargs={"tokenizer": tokenizer, "chat_template": chat_template, "max_length": max_length},
        remove_columns=dataset.column_names,
        desc="Aligning teacher top-k with the template's assistant tokens",
    )
    errors = prepared["kd_error"]
    bad = [(i, e) for i, e in enumerate(errors) if e]
    stats = {"rows": len(prepared), "aligned": len(prepared) - len(bad), "misaligned": len(bad),
             "examples": bad[:3]}  # fmt: skip
    good = prepared.filter(lambda e: not e, input_columns="kd_error")
    if len(good) == 0:
        first = f"row {bad[0][0]}: {bad[0][1]}" if bad else "no rows"
        raise UsageError(
            f"offline KD: none of {len(prepared)} rows has top-k aligned with the tokenized assistant turn "
            f"({first}); the traces were written with another tokenizer or chat template"
        )
    ks = set(good["kd_k"])
    if len(ks) != 1:
        raise UsageError(
            f"offline KD: rows store different top-k sizes {sorted(ks)}; use one K per traces dir"
        )
    stats["k"] = ks.pop()
    return good.remove_columns(["kd_error", "kd_k"]), stats


def format_alignment(stats: dict) -> str:
    line = f"offline top-k (K={stats.get('k')}): {stats['aligned']}/{stats['rows']} rows aligned"
    if stats["misaligned"]:
        first = "; ".join(f"row {i}: {reason}" for i, reason in stats["examples"])
        line += f"; DROPPED {stats['misaligned']} misaligned rows (e.g. {first})"
    return line


@dataclass
class OfflineKDCollator:
    """TRL's language-modelling collator plus the teacher's top-k aligned with `labels`.

    Adds `topk_ids` (B, L, K) int64 and `topk_logprobs` (B, L, K) fp32 (padding-free: B = 1, rows
    concatenated like TRL concatenates them). Positions without a teacher row hold id 0 / log-prob 0;
    they are never scored, since every such position has label -100.
    """

    base: DataCollatorForLanguageModeling
    k: int

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.base([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
        ids, lps = [], []
        for e in examples:
            n = len(e["input_ids"])
            rows = torch.tensor(e["topk_ids"], dtype=torch.long).view(-1, self.k)  # (T', K)
            start = e["kd_start"]
            ids.append(torch.zeros(n, self.k, dtype=torch.long))
            lps.append(torch.zeros(n, self.k, dtype=torch.float32))
            ids[-1][start : start + len(rows)] = rows
            lps[-1][start : start + len(rows)] = torch.tensor(e["topk_logprobs"]).float().view(-1, self.k)
        if self.base.padding_free:
            ids, lps = [torch.cat(ids)], [torch.cat(lps)]
        length = batch["labels"].shape[1]
        batch["topk_ids"] = torch.stack([_pad_rows(t, length) for t in ids])  # (B, L, K)
        batch["topk_logprobs"] = torch.stack([_pad_rows(t, length) for t in lps])
        return batch


def _pad_rows(rows: torch.Tensor, length: int) -> torch.Tensor:
    """(n, K) -> (length, K), zero rows appended on the right."""
    return torch.cat([rows, rows.new_zeros(length - rows.shape[0], rows.shape[1])])


def route_rows(dataset: Dataset, column: str, names: list[str]) -> Dataset:
    """Replace `column` (a teacher name per row) by `teacher_index` (its position in `names`)."""
    if column not in dataset.column_names:
        raise UsageError(
            f"the traces have no column {column!r} to route teachers by (columns: {', '.join(dataset.column_names)})"
        )
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in dataset[column]} - set(index))
    if unknown:
        raise UsageError(
            f"rows with {column}={unknown[0]!r} name no teacher; teachers are {', '.join(names)}: add it to --teachers"
        )
    return dataset.map(lambda v: {TEACHER_INDEX: index[v]}, input_columns=column, remove_columns=column)


@dataclass
class TeacherIndexCollator:
    """Wraps SFTTrainer's collator: adds each example's `teacher_index` to the batch as a (B,) long tensor."""

    base: Any

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.base(examples)
        batch[TEACHER_INDEX] = torch.tensor([e[TEACHER_INDEX] for e in examples], dtype=torch.long)
        return batch
