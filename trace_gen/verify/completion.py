"""The parts of a model completion: reasoning and answer (the `</think>` split), and fenced code.

One implementation each, used by trace rows (`trace_gen.records`), the verifiers, the filters and
the benchmarks, so what is stored as "the answer", what is checked and what is scored agree.

`split_think(completion) -> (reasoning, answer)`:
- `...</think>answer`: reasoning is everything up to and including the last `</think>`, answer what
  follows (a completion may start inside its reasoning, without `<think>`: DeepSeek-R1-Distill, QwQ
  and Qwen3-Thinking-2507 prefill the opening tag in the prompt);
- `<think>...` never closed: all reasoning, no answer (it was cut off inside its reasoning);
- no tags at all: all answer (non-reasoning models, reference solutions).
Both parts are stripped of surrounding whitespace.
"""

import re

THINK_START, THINK_END = "<think>", "</think>"
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def split_think(completion: str) -> tuple[str, str]:
    """(reasoning, answer) of a completion; see the module docstring for the three cases."""
    head, sep, tail = completion.rpartition(THINK_END)
    if sep:
        return (head + sep).strip(), tail.strip()
    if THINK_START in completion:
        return completion.strip(), ""
    return "", completion.strip()


def answer_part(completion: str) -> str:
    """The answer of a completion (what follows the last `</think>`; empty if never closed)."""
    return split_think(completion)[1]


def extract_code(completion: str, prefer_def: bool | str = False) -> str | None:
    """The last fenced code block (```python, ```py or bare ```) of the answer part, or None.

    With `prefer_def` (True: any function; a name: that function), the last block that defines it
    wins when there is one: a worked answer often shows a usage example after the solution."""
    blocks = _FENCE.findall(answer_part(completion))
    if not blocks:
        return None
    if prefer_def:
        name = r"\w+" if prefer_def is True else re.escape(prefer_def)
        defining = re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{name}[ \t]*\(", re.M)
        with_def = [b for b in blocks if defining.search(b)]
        if with_def:
            return with_def[-1]
    return blocks[-1]
