"""One trace row per (prompt, sample): the contract between trace_gen and sft/eval (DESIGN.md)."""

import json

import pyarrow as pa

from trace_gen.backends.base import Sample
from trace_gen.prompts import PromptRecord
from trace_gen.verify import Verdict

THINK_END = "</think>"

SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("reasoning", pa.string()),
        ("answer", pa.string()),
        ("completion", pa.string()),
        ("finish_reason", pa.string()),
        ("num_tokens", pa.int32()),
        ("teacher", pa.string()),
        ("sampling", pa.string()),  # JSON: sampling parameters and the seed used
        ("gold", pa.string()),
        ("verdict", pa.string()),
        ("verdict_reason", pa.string()),
    ]
)


def split_completion(completion: str) -> tuple[str, str]:
    """(reasoning, answer): the text up to and including the last </think>, and what follows it."""
    head, sep, tail = completion.rpartition(THINK_END)
    if not sep:
        return "", completion.strip()
    return (head + sep).strip(), tail.strip()


def trace_row(
    prompt: PromptRecord, sample_idx: int, sample: Sample, verdict: Verdict, teacher: str, sampling: dict
) -> dict:
    reasoning, answer = split_completion(sample.text)
    return {
        "prompt_id": prompt.prompt_id,
        "sample_idx": sample_idx,
        "messages": [*prompt.messages, {"role": "assistant", "content": sample.text}],
        "reasoning": reasoning,
        "answer": answer,
        "completion": sample.text,
        "finish_reason": sample.finish_reason,
        "num_tokens": sample.num_tokens,
        "teacher": teacher,
        "sampling": json.dumps(sampling, sort_keys=True),
        "gold": prompt.gold,
        "verdict": verdict.verdict,
        "verdict_reason": verdict.reason,
    }
