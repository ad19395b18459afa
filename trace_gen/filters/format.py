"""Format checks on one completion: think tags, answer, truncation, length, repetition, language.

`format_problem(...)` returns the first problem found as a short reason ("truncated",
"think_not_closed", ...) or None when the completion is well formed. Pure functions only.
"""

import re
import unicodedata
import zlib

from trace_gen.verify.completion import THINK_END, THINK_START, split_think

# Scripts told apart for the mixed-language check; Greek is left out (it is maths notation).
_LATIN_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}")
_SCRIPTS = (
    "LATIN",
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "HANGUL",
    "CYRILLIC",
    "ARABIC",
    "HEBREW",
    "DEVANAGARI",
    "THAI",
)


def script_counts(text: str) -> dict[str, int]:
    """Letters per writing system (hiragana and katakana count as "CJK").

    ASCII letters count only inside words of 4+ letters that are not LaTeX commands, so variable
    names and \\frac in a non-Latin text do not make it "mixed"."""
    counts: dict[str, int] = {}
    latin = sum(len(word) for word in _LATIN_WORD.findall(text))
    if latin:
        counts["LATIN"] = latin
    for ch in text:
        if ch.isascii() or not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        script = next((s for s in _SCRIPTS if name.startswith(s)), None)
        if script in ("HIRAGANA", "KATAKANA"):
            script = "CJK"
        if script:
            counts[script] = counts.get(script, 0) + 1
    return counts


def is_mixed_language(text: str, min_share: float = 0.02, min_chars: int = 20) -> bool:
    """True when a second writing system holds at least `min_share` of letters and `min_chars` of them."""
    counts = sorted(script_counts(text).values(), reverse=True)
    if len(counts) < 2:
        return False
    second = sum(counts[1:])
    return second >= min_chars and second >= min_share * sum(counts)


def compression_ratio(text: str) -> float:
    """zlib-compressed size over raw size (UTF-8); degenerate loops compress far below prose (~0.3)."""
    raw = text.encode("utf-8")
    return len(zlib.compress(raw, 6)) / max(1, len(raw))


def is_repetitive(text: str, min_ratio: float = 0.1, tail_chars: int = 4000) -> bool:
    """Heavy repetition: the whole text, or its last `tail_chars`, compresses below `min_ratio`."""
    if len(text) < 2000:
        return False
    return compression_ratio(text) < min_ratio or compression_ratio(text[-tail_chars:]) < min_ratio


def format_problem(
    completion: str,
    finish_reason: str | None = None,
    require_think: bool = True,
    min_chars: int = 1,
    max_chars: int | None = None,
    check_repetition: bool = True,
    check_language: bool = True,
) -> str | None:
    """The first format problem of a completion as a short reason, or None if it is well formed."""
    if finish_reason == "length":
        return "truncated"
    if finish_reason not in (None, "stop"):
        return f"finish_reason_{finish_reason}"
    if require_think:
        if completion.count(THINK_END) != 1:
            return "think_not_closed_once"
        if completion.count(THINK_START) > 1 or completion.find(THINK_START) > completion.find(THINK_END):
            return "think_malformed"
    _, answer = split_think(completion)
    if not answer:
        return "no_answer"
    if len(completion) < min_chars:
        return "too_short"
    if max_chars is not None and len(completion) > max_chars:
        return "too_long"
    if check_repetition and is_repetitive(completion):
        return "repetition"
    if check_language and is_mixed_language(completion):
        return "mixed_language"
    return None
