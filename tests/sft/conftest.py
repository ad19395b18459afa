"""Tiny toy models, tokenizer and traces built in temporary directories (no hub, no committed assets).

`toy` (session): student and teacher (Qwen3, toy sizes) sharing the toy BPE tokenizer, a traces dir of
verified chat rows, and a traces dir whose rows also carry the teacher's top-k log-probs per generated
token in trace_gen's layout (token_ids (T,), topk_ids / topk_logprobs (T*K,) row-major).
"""

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trace_gen.toy.models import init_model
from trace_gen.toy.task import make_splits
from trace_gen.toy.tokenizer import build_tokenizer

K = 4
N_ROWS = 24


def conversation(problem) -> list[dict]:
    return [
        {"role": "user", "content": problem.user_message()},
        {"role": "assistant", "content": problem.gold_completion()},
    ]


def teacher_topk(teacher, tokenizer, messages, k=K):
    """(token_ids, topk_ids, topk_logprobs) of the assistant turn, as trace_gen stores them."""
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = torch.tensor(enc["input_ids"])
    pos = torch.tensor([i for i, m in enumerate(enc["assistant_masks"]) if m])
    with torch.no_grad():
        logprobs = teacher(input_ids=ids[None]).logits[0].float().log_softmax(-1)  # (L, V)
    lps, top = logprobs[pos - 1].topk(k, dim=-1)  # the distribution each generated token was drawn from
    return ids[pos].int().tolist(), top.int().flatten().tolist(), lps.half().flatten().tolist()


def write_traces(path: Path, rows: list[dict]) -> Path:
    path.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    for name, dtype in (("token_ids", pa.int32()), ("topk_ids", pa.int32()), ("topk_logprobs", pa.float16())):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table[name].cast(pa.list_(dtype)))
    pq.write_table(table, path / "part-00000.parquet")
    return path


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("toy")
    problems, _ = make_splits(n_train=200, n_test=4, seed=7)
    tokenizer = build_tokenizer(problems)
    init_model("student", tokenizer, str(root / "student"), seed=0)
    init_model("teacher", tokenizer, str(root / "teacher"), seed=1)
    tokenizer = AutoTokenizer.from_pretrained(root / "student")
    teacher = AutoModelForCausalLM.from_pretrained(root / "teacher").eval()
    with torch.no_grad():  # an opinionated teacher: random init is near-uniform, so sharpen its logits
        teacher.model.norm.weight.mul_(30.0)
    teacher.save_pretrained(root / "teacher")
    rows, topk_rows = [], []
    for i, p in enumerate(problems[:N_ROWS]):
        messages = conversation(p)
        row = {"prompt_id": p.prompt_id, "sample_idx": 0, "messages": messages, "verdict": "correct"}
        rows.append(row)
        token_ids, ids, lps = teacher_topk(teacher, tokenizer, messages)
        topk_rows.append({**row, "token_ids": token_ids, "topk_ids": ids, "topk_logprobs": lps})
        rows[-1]["sample_idx"] = topk_rows[-1]["sample_idx"] = i % 2
    return SimpleNamespace(
        root=root,
        student=root / "student",
        teacher=root / "teacher",
        tokenizer=tokenizer,
        problems=problems,
        traces=write_traces(root / "traces", rows),
        traces_topk=write_traces(root / "traces_topk", topk_rows),
        topk_rows=topk_rows,
    )
