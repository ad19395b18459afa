"""Keep policies: which of a prompt's verified samples go into training.

- "all": every verified sample;
- "max_per_prompt": at most `m` per prompt, lowest sample_idx first;
- "shortest": the one shortest verified sample per prompt (by num_tokens, else characters).

Independently of the policy, `flag_reason(row)` names the first sandbox flag of a row (an attempted
network connection, write outside its directory, signal, new process, resource cap or tampering,
from the `verdict_flags` column): the filter drops such rows unless `drop_flagged` is off, also when
their tests passed.
"""

from collections import defaultdict
from collections.abc import Sequence

POLICIES = ("all", "max_per_prompt", "shortest")


def apply_policy(rows: Sequence[dict], policy: str = "all", m: int = 1) -> list[bool]:
    """Per row (all candidates for keeping): True to keep it under `policy`."""
    assert policy in POLICIES, f"unknown keep policy {policy!r}; choose from {POLICIES}"
    if policy == "all":
        return [True] * len(rows)
    by_prompt: dict[object, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_prompt[row["prompt_id"]].append(i)
    keep = [False] * len(rows)
    for indices in by_prompt.values():
        if policy == "max_per_prompt":
            chosen = sorted(indices, key=lambda i: rows[i].get("sample_idx", i))[:m]
        else:
            chosen = [min(indices, key=lambda i: (_length(rows[i]), rows[i].get("sample_idx", i)))]
        for i in chosen:
            keep[i] = True
    return keep


def _length(row: dict) -> int:
    tokens = row.get("num_tokens")
    return int(tokens) if tokens is not None else len(row.get("completion") or "")


def flag_reason(row: dict) -> str | None:
    """The row's first sandbox flag ("network:connect", "tamper:...", ...), or None when it has none."""
    flags = row.get("verdict_flags") or ()
    return str(flags[0]) if len(flags) else None
