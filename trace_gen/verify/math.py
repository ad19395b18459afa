"""Math verdicts: compare an extracted answer with the gold answer, "correct" only when both parsed faithfully.

Both sides are first put in the one normal form (`trace_gen.verify.answers.normalise_answer`).
Then, in order:
1. identical normal forms are "correct" without parsing (the fast path; `fast_path=False` turns it
   off, so tests can check that equivalence itself holds);
2. a side that math-verify cannot represent is "unverifiable" with the reason, never "wrong":
   set-builder notation, piecewise/cases, prose (words mixed with maths: "No. This would lead to 0=1.");
3. word answers ("\\text{Evelyn}", "odd") are compared as lower-cased words;
4. math-verify parses both sides, and a parse that does not account for the text is "unverifiable":
   math-verify reduces some answers to one stray number (a set, an inequality, a sentence, a list or a
   matrix read as `1`), and then unrelated answers compare equal. A parse is rejected when it is a
   lone number but the text has variables, a relation, several comma-separated parts or a matrix;
   when the text has several parts or a matrix and the parse is not a tuple/set/interval/matrix;
   when the text has variables and the parse has none;
5. otherwise math-verify's `verify` decides "correct" or "wrong".

math-verify's own timeouts use SIGALRM (main thread only) and its parsed objects can hang when
stringified; here its timeouts are off and nothing parsed is ever turned into a string. For a hard
wall-clock limit run `verify_answer` through `trace_gen.verify.pool.MathVerifierPool`.
"""

import functools
import re

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from sympy import Basic, FiniteSet, Interval, Tuple, Union
from sympy.matrices import MatrixBase

from trace_gen.verify.answers import extract_answer, no_answer_reason, normalise_answer, plain_text
from trace_gen.verify.completion import answer_part
from trace_gen.verify.verdict import Verdict

_PARSE_CONFIGS = (LatexExtractionConfig(), ExprExtractionConfig())
_INTEGER = re.compile(r"[-+]?\d+")
_MATH_WORDS = frozenset(
    [
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "log",
        "ln",
        "exp",
        "max",
        "min",
        "gcd",
        "lcm",
        "det",
        "mod",
        "sqrt",
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
        "inf",
        "sup",
        "lim",
        "and",
        "or",
    ]
)
_RELATIONS = frozenset(["le", "ge", "leq", "geq", "ne", "neq", "lt", "gt", "approx", "equiv", "sim"])
_OPEN, _CLOSE = "([{", ")]}"


def _words(text: str) -> list[str]:
    """Runs of 3+ letters that are not LaTeX commands or function names (\\text{} contents count)."""
    body = re.sub(r"\\(?:begin|end)\{[A-Za-z*]+\}", " ", text)
    body = re.sub(r"\\(?:text|textrm|mathrm|mbox)\s*\{([^{}]*)\}", r" \1 ", body)
    body = re.sub(r"\\[A-Za-z]+", " ", body)
    return [w for w in re.findall(r"[A-Za-z]{3,}", body) if w.lower() not in _MATH_WORDS]


def _variables(text: str) -> set[str]:
    """Single-letter variables of a formula (not in commands or \\text{}; e and i are constants)."""
    body = re.sub(r"\\(?:begin|end)\{[A-Za-z*]+\}", " ", text)
    body = re.sub(r"\\(?:text|textrm|mathrm|mbox|operatorname)\s*\{[^{}]*\}", " ", body)
    body = re.sub(r"\\[A-Za-z]+", " ", body)
    body = re.sub(r"[A-Za-z]{2,}", lambda m: " " if m.group(0).lower() in _MATH_WORDS else m.group(0), body)
    return set(re.findall(r"[A-Za-z]", body)) - {"e", "i"}


def _parts(text: str) -> int:
    """Comma-separated parts at the top level (inside one pair of brackets wrapping the whole text)."""
    inner = text
    if len(text) >= 2 and text[0] in _OPEN and text[-1] in _CLOSE:
        inner = text[1:-1]
    elif text.startswith("\\{") and text.endswith("\\}"):
        inner = text[2:-2]
    depth, parts = 0, 1
    for ch in inner:
        depth += (ch in _OPEN) - (ch in _CLOSE)
        parts += ch == "," and depth == 0
    return parts


def _has_relation(text: str) -> bool:
    commands = set(re.findall(r"\\([A-Za-z]+)", text))
    return bool(re.search(r"[=<>]", text)) or bool(commands & _RELATIONS)


def shape_problem(text: str) -> str | None:
    """Why a normalised answer cannot be checked by math-verify (set-builder, piecewise, prose), or None."""
    if re.search(r"\\begin\{(?:cases|array)\}", text):
        return "is piecewise (cases/array)"
    if re.search(r"\\\{[^{}]*?(?:\\mid|\||:)", text):
        return "is set-builder notation"
    words = _words(text)
    if words and (re.search(r"[\d=<>+^]|\\frac|\\sqrt", text) or len(words) > 4):
        return f"is prose ({' '.join(words[:4])}...)"
    return None


def is_word_answer(text: str) -> bool:
    """A word answer ("\\text{Evelyn}", "odd"): words of 2+ letters and nothing mathematical."""
    return bool(re.fullmatch(r"[A-Za-z]{2,}(?: [A-Za-z]+)*", plain_text(text))) and not re.search(
        r"[\d=<>+^_]|\\(?!text|mathrm|textrm|mbox)[A-Za-z]", text
    )


def collapse_reason(text: str, parsed) -> str | None:
    """Why `parsed` (math-verify's reading of `text`) does not account for the text, or None.

    Looks only at types and free symbols: parsed objects are never stringified (that can hang)."""
    if not isinstance(parsed, Basic | MatrixBase):
        return "was not read as an expression"
    lone_number = bool(getattr(parsed, "is_Number", False))
    variables, parts = _variables(text), _parts(text)
    matrix = "matrix}" in text
    container = isinstance(parsed, Tuple | FiniteSet | Interval | Union | MatrixBase)
    if lone_number and variables:
        return f"was read as one number (its {', '.join(sorted(variables))} dropped)"
    if lone_number and _has_relation(text):
        return "was read as one number (its relation dropped)"
    if parts > 1 and not container:
        return f"has {parts} parts but was read as one expression"
    if matrix and not isinstance(parsed, MatrixBase):
        return "is a matrix but was not read as one"
    if isinstance(parsed, Tuple) and parts > 1 and len(parsed) != parts:
        return f"has {parts} parts but was read as {len(parsed)}"
    if variables and not parsed.free_symbols:
        return f"lost its variables ({', '.join(sorted(variables))})"
    return None


@functools.lru_cache(maxsize=8192)
def _parse(text: str) -> list:
    """math-verify's parse of one normalised answer, cached per process: a prompt's samples share its
    gold and often their answers (parsing costs ~5 ms; the cached objects are never stringified)."""
    return parse(f"${text}$", extraction_config=_PARSE_CONFIGS, parsing_timeout=None)


def _checked_parse(text: str, side: str, original: str) -> tuple[list | None, Verdict | None]:
    """(parsed, None), or (None, an "unverifiable" verdict naming the side and why)."""
    parsed = _parse(text)
    if not parsed:
        return None, Verdict("unverifiable", f"could not parse {side} {original[:60]!r}")
    why = collapse_reason(text, parsed[0])
    if why:
        return None, Verdict("unverifiable", f"{side} {original[:60]!r} {why}")
    return parsed, None


def verify_answer(answer: str, gold: str, fast_path: bool = True) -> Verdict:
    """Compare an extracted answer with the gold answer (see the module docstring for the steps)."""
    g, a = normalise_answer(gold), normalise_answer(answer)
    if not g:
        return Verdict("unverifiable", "the gold answer is empty")
    if not a:
        return Verdict("unverifiable", "the answer is empty")
    if fast_path and a == g:
        return Verdict("correct", "matches gold (same text)")
    for side, text, original in (("gold", g, gold), ("answer", a, answer)):
        problem = shape_problem(text)
        if problem:
            return Verdict("unverifiable", f"{side} {original[:60]!r} {problem}")
    wrong = Verdict("wrong", f"answer {answer[:40]!r} != gold {gold[:40]!r}")
    if is_word_answer(g) or is_word_answer(a):
        same = is_word_answer(g) and is_word_answer(a) and plain_text(g) == plain_text(a)
        return Verdict("correct", "matches gold (same words)") if same else wrong
    if fast_path and _INTEGER.fullmatch(a) and _INTEGER.fullmatch(g):
        return Verdict("correct", "matches gold") if int(a) == int(g) else wrong
    gold_parsed, problem = _checked_parse(g, "gold", gold)
    if problem:
        return problem
    answer_parsed, problem = _checked_parse(a, "answer", answer)
    if problem:
        return problem
    if verify(gold_parsed, answer_parsed, timeout_seconds=None):
        return Verdict("correct", "matches gold")
    return wrong


def verify_math(
    completion: str, gold: str, extractors: tuple[str, ...] = ("boxed",), fast_path: bool = True
) -> Verdict:
    """Extract the completion's final answer and compare it with the gold answer, in this process.

    No wall-clock limit: callers that need one use `MathVerifierPool`. The reason names the extractor
    when it was not "boxed" (e.g. "matches gold (extracted by prose:answer_is)")."""
    found = extract_answer(completion, extractors)
    if found is None:
        return Verdict("unverifiable", no_answer_reason(completion, extractors))
    return verify_extracted(found[0], str(gold), found[1], fast_path)


def verify_extracted(answer: str, gold: str, extractor: str = "boxed", fast_path: bool = True) -> Verdict:
    """`verify_answer`, with the extractor that found the answer recorded in the reason (unless "boxed")."""
    verdict = verify_answer(answer, gold, fast_path)
    if extractor == "boxed":
        return verdict
    return Verdict(verdict.verdict, f"{verdict.reason} (extracted by {extractor})", verdict.flags)


def verify_whole_text(completion: str, gold: str) -> bool:
    """math-verify alone: its own extraction from the whole answer part against the gold (the baseline
    the prose extractor chain is measured against in tests and bench/verify.py). Run it in a pool."""
    answer = parse(answer_part(completion), parsing_timeout=None)
    return bool(answer) and verify(parse(f"${gold}$", parsing_timeout=None), answer, timeout_seconds=None)
