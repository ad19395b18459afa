"""Math answers: extract the final answer of a completion and check it with math-verify.

Extraction is plain string work and runs wherever it is called. The comparison (`verify_answer`)
calls math-verify, whose own timeouts use SIGALRM (main thread only) and whose parsed objects can
hang when stringified; here those timeouts are off and nothing parsed is ever turned into a string.
For a hard wall-clock limit run it through `trace_gen.verify.pool.MathVerifierPool`.

Extractors, tried in the order given (default: boxed only):
- "boxed": the last \\boxed{...} (or \\fbox{...}) of the answer part;
- "gsm8k": the text after the last "####" of the answer part (GSM8K reference solutions);
- "last_number": the last plain number of the answer part (an explicit, permissive fallback).

The answer part is the text after the last </think>. A completion that opens <think> and never
closes it has no answer part (it was truncated inside its reasoning); one without any think tags is
all answer (non-reasoning models, reference solutions).
"""

import functools
import re

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from trace_gen.verify.verdict import Verdict

THINK_START, THINK_END = "<think>", "</think>"
EXTRACTORS = ("boxed", "gsm8k", "last_number")
_GSM8K = re.compile(r"####\s*([^\n]*)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_INTEGER = re.compile(r"[-+]?\d+")
_PARSE_CONFIGS = (LatexExtractionConfig(), ExprExtractionConfig())


def answer_part(completion: str) -> str:
    """The text after the last </think>; empty if <think> was opened and never closed."""
    if THINK_END in completion:
        return completion.rsplit(THINK_END, 1)[1]
    if THINK_START in completion:
        return ""
    return completion


def _last_boxed_span(text: str) -> str | None:
    """Return the content of the last \\boxed{...} or \\fbox{...} in text, braces balanced, or None."""
    starts = [(text.rfind(cmd), cmd) for cmd in ("\\boxed", "\\fbox")]
    start, cmd = max(starts)
    while start != -1:
        i = start + len(cmd)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j]
                j += 1
        starts = [(text.rfind(c, 0, start), c) for c in ("\\boxed", "\\fbox")]
        start, cmd = max(starts)
    return None


def extract_boxed(completion: str) -> str | None:
    """The last \\boxed{} answer after </think> (reasoning is never searched), or None."""
    return _last_boxed_span(answer_part(completion))


def extract_gsm8k(completion: str) -> str | None:
    """The answer after the last "####" of the answer part, commas and "$" removed, or None."""
    matches = _GSM8K.findall(answer_part(completion))
    if not matches:
        return None
    answer = matches[-1].strip().replace(",", "").replace("$", "").rstrip(".").strip()
    return answer or None


def extract_last_number(completion: str) -> str | None:
    """The last plain number of the answer part (commas removed), or None."""
    matches = _NUMBER.findall(answer_part(completion))
    return matches[-1].replace(",", "") if matches else None


_EXTRACT = {"boxed": extract_boxed, "gsm8k": extract_gsm8k, "last_number": extract_last_number}


def extract_answer(completion: str, extractors: tuple[str, ...] = ("boxed",)) -> tuple[str, str] | None:
    """The first answer found by `extractors` (tried in order) as (answer, extractor name), or None."""
    for name in extractors:
        assert name in _EXTRACT, f"unknown extractor {name!r}; choose from {EXTRACTORS}"
        answer = _EXTRACT[name](completion)
        if answer is not None and answer.strip():
            return answer, name
    return None


def no_answer_verdict(completion: str, extractors: tuple[str, ...]) -> Verdict:
    """The verdict for a completion where no extractor found an answer."""
    if not answer_part(completion):
        return Verdict("unverifiable", "no answer: <think> never closed")
    return Verdict("unverifiable", f"no answer found by {'/'.join(extractors)} after </think>")


def _canonical(text: str) -> str:
    """Spacing-free form of an answer; only drops what never changes a value (spaces, sizing, \\!)."""
    for noise in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\ ", "$"):
        text = text.replace(noise, "")
    return "".join(text.split()).rstrip(".")


def _fast_verdict(answer: str, gold: str) -> Verdict | None:
    """Decide without math-verify when it is trivially sound: identical text, or two plain integers."""
    a, g = _canonical(answer), _canonical(gold)
    if a == g and a:
        return Verdict("correct", "matches gold")
    if _INTEGER.fullmatch(a) and _INTEGER.fullmatch(g):
        if int(a) == int(g):
            return Verdict("correct", "matches gold")
        return Verdict("wrong", f"answer {answer[:40]!r} != gold {gold[:40]!r}")
    return None


@functools.lru_cache(maxsize=8192)
def _parse(text: str) -> list:
    """math-verify's parse of one answer, cached per process: a prompt's samples share its gold and
    often their answers (parsing costs ~5 ms; the cached objects are never stringified)."""
    return parse(f"${text}$", extraction_config=_PARSE_CONFIGS, parsing_timeout=None)


def verify_answer(answer: str, gold: str) -> Verdict:
    """Compare an extracted answer with the gold answer using math-verify (no timeout: see module doc).

    Identical answers (up to spacing) and pairs of plain integers are decided without parsing."""
    fast = _fast_verdict(answer, gold)
    if fast is not None:
        return fast
    gold_parsed = _parse(gold)
    if not gold_parsed:
        return Verdict("unverifiable", f"could not parse gold answer {gold[:40]!r}")
    pred_parsed = _parse(answer)
    if not pred_parsed:
        return Verdict("unverifiable", f"could not parse answer {answer[:40]!r}")
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return Verdict("correct", "matches gold")
    return Verdict("wrong", f"answer {answer[:40]!r} != gold {gold[:40]!r}")


def verify_math(completion: str, gold: str, extractors: tuple[str, ...] = ("boxed",)) -> Verdict:
    """Extract the completion's final answer and compare it with the gold answer, in this process.

    No wall-clock limit: callers that need one use `MathVerifierPool`.
    """
    found = extract_answer(completion, extractors)
    if found is None:
        return no_answer_verdict(completion, extractors)
    return verify_answer(found[0], str(gold))
