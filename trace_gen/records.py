"""One trace row per (prompt, sample): the contract between trace_gen and sft/eval (DESIGN.md).

The assistant text is whole: when the teacher's chat template prefills the reasoning opening
(R1-Distill, QwQ, Qwen3-Thinking-2507 end the generation prompt with "<think>\n"), that `prefill` comes
first, so with every backend `completion` (== the assistant message's content) is `<think>…</think>` +
answer and `reasoning`/`answer` split it; every reader (filters, dedup, eval) sees the same text.
`prefill` was written by the template, not sampled: `token_ids` (and the top-k) cover
`completion[len(prefill):]` only.

Top-k teacher logprobs (asked with `--logprobs K`, vllm backend) are stored flat and compact:
`token_ids` int32 (T,), `topk_ids` int32 (T*K,) and `topk_logprobs` float16 (T*K,), row-major
[position, rank], highest first; 6*K + 4 bytes per generated token before compression. They are null
when not asked. `topk_arrays(row)` gives back the (T, K) arrays; the probability mass outside the
top K at each position (the "tail" a KD loss needs) is `1 - exp(topk_logprobs).sum(-1)`.
"""

import json

import numpy as np
import pyarrow as pa

from trace_gen.backends.base import Sample
from trace_gen.prompts import PromptRecord
from trace_gen.verify import Verdict
from trace_gen.verify.completion import split_think

LOGPROB_COLUMNS = {"token_ids": pa.int32(), "topk_ids": pa.int32(), "topk_logprobs": pa.float16()}
_NUMPY = {"token_ids": np.int32, "topk_ids": np.int32, "topk_logprobs": np.float16}

SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("reasoning", pa.string()),
        ("answer", pa.string()),
        ("completion", pa.string()),
        ("prefill", pa.string()),  # the start of `completion` the template wrote ("" for most)
        ("finish_reason", pa.string()),
        ("num_tokens", pa.int32()),
        ("teacher", pa.string()),
        ("sampling", pa.string()),  # JSON: sampling parameters and the seed used
        ("gold", pa.string()),
        ("verdict", pa.string()),
        ("verdict_reason", pa.string()),
        ("verdict_flags", pa.list_(pa.string())),  # what the code sandbox observed or blocked
        *((name, pa.list_(dtype)) for name, dtype in LOGPROB_COLUMNS.items()),
    ]
)


def trace_row(
    prompt: PromptRecord, sample_idx: int, sample: Sample, verdict: Verdict, teacher: str, sampling: dict
) -> dict:
    reasoning, answer = split_think(sample.text)
    return {
        "prompt_id": prompt.prompt_id,
        "sample_idx": sample_idx,
        "messages": [*prompt.messages, {"role": "assistant", "content": sample.text}],
        "reasoning": reasoning,
        "answer": answer,
        "completion": sample.text,
        "prefill": sample.prefill,
        "finish_reason": sample.finish_reason,
        "num_tokens": sample.num_tokens,
        "teacher": teacher,
        "sampling": json.dumps(sampling, sort_keys=True),
        "gold": prompt.gold,
        "verdict": verdict.verdict,
        "verdict_reason": verdict.reason,
        "verdict_flags": list(verdict.flags),
        "token_ids": sample.token_ids,
        "topk_ids": sample.topk_ids,
        "topk_logprobs": sample.topk_logprobs,
    }


def _list_column(values: list, dtype: pa.DataType, np_dtype) -> pa.Array:
    """A list<dtype> column from per-row numpy arrays (or None), without a Python loop over elements."""
    flat = [np.asarray(v).reshape(-1) for v in values if v is not None]
    lengths = np.array([0 if v is None else np.asarray(v).size for v in values], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    data = np.concatenate(flat) if flat else np.zeros(0)
    mask = pa.array([v is None for v in values])
    arr = pa.ListArray.from_arrays(offsets, pa.array(data.astype(np_dtype)), mask=mask)
    return arr.cast(pa.list_(dtype))


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Trace rows to an Arrow table of SCHEMA (logprob arrays converted column-wise)."""
    plain = [{k: v for k, v in row.items() if k not in LOGPROB_COLUMNS} for row in rows]
    table = pa.Table.from_pylist(
        plain, schema=pa.schema([f for f in SCHEMA if f.name not in LOGPROB_COLUMNS])
    )
    for name, dtype in LOGPROB_COLUMNS.items():
        table = table.append_column(
            SCHEMA.field(name), _list_column([row.get(name) for row in rows], dtype, _NUMPY[name])
        )
    return table


def topk_arrays(row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token_ids (T,) int32, topk_ids (T, K) int32, topk_logprobs (T, K) float16) of one stored row."""
    token_ids = np.asarray(row["token_ids"], dtype=np.int32)
    ids = np.asarray(row["topk_ids"], dtype=np.int32).reshape(len(token_ids), -1)
    logprobs = np.asarray(row["topk_logprobs"], dtype=np.float16).reshape(len(token_ids), -1)
    return token_ids, ids, logprobs
