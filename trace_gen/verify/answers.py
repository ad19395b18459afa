"""Final answers as text: extract one from a completion, and the one normal form answers are compared in.

Pure string work (no sympy): it runs wherever it is called. Comparison is `trace_gen.verify.math`.

Extractors (`extract_answer(completion, extractors)` tries them in the order given and records which
one decided, e.g. "prose:answer_is"); all read only the answer part (after the last `</think>`):
- "boxed": the last \\boxed{...} / \\fbox{...} (braces balanced; escaped \\{ \\} are not braces);
- "gsm8k": the text after the last "####" (GSM8K reference solutions);
- "prose": for answers stated without a box, tried only when no \\boxed exists. In order:
    1. answer_is: "the (final) answer is X" / "Answer: X" (the last such phrase);
    2. final_math: the last $...$, \\(...\\), \\[...\\], $$...$$ or display environment, when at most a
       short clause follows it (its right-hand side after the last "=");
    3. final_sentence: in the last sentence, the number after the last "there are / is / = ..."
       (else its last number; a tuple "(6, 5)" is kept whole);
  [asy] drawings and GSM8K's <<calculator>> annotations are ignored;
- "last_number": the last number of the whole answer part (an explicit, permissive fallback).

`normalise_answer(text)` is the one normal form (used by the verifier's identical-text fast path,
maj@k answer groups, the audit's second opinion and GSM8K golds). It drops what never changes a
value: $ and \\( \\) delimiters, \\left/\\right, spacing commands, \\dfrac/\\tfrac (-> \\frac), a
trailing period, degree signs, thousands separators ("1,234" and "1{,}234" -> "1234": a bare
"digits,3 digits" answer is read as one number, a tuple needs parentheses), a leading "x =" or
"x \\in" (the answer is the right-hand side), units written as a trailing \\text{...} after a number
(also with a space: "\\text { years }"), \\mathbf/\\textbf wrappers (spaced digits "9 8 7" -> "987"),
a trailing-dot decimal ("1." -> "1", so "-1./3" is "-1/3"), and the percent sign. Percent
convention (MATH, GSM8K): "62.5\\%" is the number 62.5, so it equals "62.5" and not "0.625".
Spaces are removed except between two letters ("\\pi r" keeps its space).
"""

import re

from trace_gen.verify.completion import THINK_START, answer_part

EXTRACTORS = ("boxed", "gsm8k", "prose", "last_number")

_GSM8K = re.compile(r"####\s*([^\n]*)")
_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUMBER = re.compile(_NUM)
_TUPLE = re.compile(rf"\(\s*(?:{_NUM})(?:\s*,\s*(?:{_NUM}))+\s*\)")
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_ASY = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.DOTALL)
_ANSWER_IS = re.compile(r"(?i)\b(?:final\s+answer|answer)\s*(?:is|:|=|would\s+be|will\s+be)\s*:?\s*")
_MATH_SPAN = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$([^$]+?)\$"
    r"|\\begin\{(?:align|equation|gather|eqnarray)\*?\}(.+?)\\end\{(?:align|equation|gather|eqnarray)\*?\}",
    re.DOTALL,
)
_CONCLUSION_NUMBER = re.compile(
    rf"(?i)(?:there\s+(?:are|is|were|was|will\s+be)|total\s+(?:of|is)|result\s+is|\bis|\bare|\bwas|\bwere"
    rf"|equals?|=)\s*(?:\\\$|\$)?\s*({_NUM})"
)
_PROSE_WORDS = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}\s+[A-Za-z]{3,}")
_FUNCTION_WORDS = frozenset(
    ["sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "max", "min", "gcd", "lcm", "det", "mod"]
)
_MAX_TAIL = 120  # characters of prose allowed after the final math span


def _last_boxed_span(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...} of text, braces balanced, or None."""
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        depth, j = 0, match.end() - 1
        while j < len(text):
            ch = text[j]
            if ch == "\\":  # \{ and \} are characters of the answer, not grouping
                j += 2
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth == 0:
                return text[match.end() : j]
            j += 1
    return None


def unwrap_boxes(text: str) -> str:
    """text with every \\boxed{X} / \\fbox{X} replaced by X (box-free references for measurements)."""
    while (match := re.search(r"\\(?:boxed|fbox)\s*\{", text)) is not None:
        depth, j = 0, match.end() - 1
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        text = text[: match.start()] + text[match.end() : j] + text[j + 1 :]
    return text


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


def _last_number(text: str) -> str | None:
    """The last number of text, or the whole tuple "(a, b)" when the last number is inside one."""
    numbers = list(_NUMBER.finditer(text))
    if not numbers:
        return None
    last = numbers[-1]
    for tup in _TUPLE.finditer(text):
        if tup.start() <= last.start() < tup.end():
            return tup.group(0)
    return last.group(0).replace(",", "")


def extract_last_number(completion: str) -> str | None:
    """The last plain number of the answer part (or the tuple it closes), or None."""
    return _last_number(_prose_text(answer_part(completion)))


def _prose_text(text: str) -> str:
    """The answer text without [asy] drawings, <<calculator>> notes, and with spaced bold digits joined."""
    text = _CALCULATOR.sub("", _ASY.sub("", text))
    return re.sub(
        r"\\(?:mathbf|textbf|boldsymbol)\s*\{([\d\s]+)\}", lambda m: "".join(m.group(1).split()), text
    )


def _last_row(math: str) -> str:
    """The last row of a multi-line display (rows split at \\\\ outside matrix environments)."""
    rows, depth, start = [], 0, 0
    for m in re.finditer(r"\\begin\{|\\end\{|\\\\", math):
        if m.group(0) == "\\begin{":
            depth += 1
        elif m.group(0) == "\\end{":
            depth -= 1
        elif depth == 0:
            rows.append(math[start : m.start()])
            start = m.end()
    rows.append(math[start:])
    rows = [r for r in rows if r.strip()]
    return rows[-1] if rows else math


def _rhs(math: str) -> str:
    """The answer a formula states: its last row, after "\\Rightarrow" and the last top-level "=" or
    "\\equiv" (before any "\\approx"; without "\\pmod"). An equation whose right side is 0 or has
    variables of its own ("5x - 7y + 4 = 0", "x^2 = y + 1") is kept whole: it is the answer."""
    last = re.split(r"\\Rightarrow|\\implies", _last_row(math))[-1]
    last = re.split(r"\\approx|\\simeq", last)[0]
    last = re.sub(r"\\pmod\s*\{[^{}]*\}|\\pmod\s*\d+|\(\s*\\mod\s*\d+\s*\)|\\q?quad", "", last)
    last = re.sub(r"&\s*(?==|\\equiv|<|>|\\[lg]e)|^\s*&", "", last.strip())  # align markers, not matrix &
    depth, cuts = 0, []
    for m in re.finditer(r"\\equiv|[{}()\[\]]|(?<![<>\\])=", last):
        token = m.group(0)
        if token in "{([":
            depth += 1
        elif token in "})]":
            depth -= 1
        elif depth == 0:
            cuts.append(m)
    if not cuts:
        return last.strip()
    rhs = last[cuts[-1].end() :].strip()
    if (
        len(cuts) == 1
        and (rhs.rstrip(".") == "0" or _has_variable(rhs))
        and _has_variable(last[: cuts[0].start()])
    ):
        return last.strip()
    return rhs


def _has_variable(math: str) -> bool:
    body = re.sub(r"\\(?:begin|end)\{\w+\*?\}|\\[A-Za-z]+", " ", math)
    return bool(re.search(r"(?<![A-Za-z])[A-DF-HJ-Za-df-hj-z](?![A-Za-z])", body))  # e, i: constants


def _is_math(m: re.Match) -> bool:
    """A formula, not prose between two dollar amounts ("$5 a day and $3 a week")."""
    span = _span_text(m)
    if not span.strip():
        return False
    if m.group(0).startswith("$") and not m.group(0).startswith("$$"):  # "$" is also a currency sign
        body = re.sub(r"\\(?:begin|end)\{\w+\*?\}|\\text\{[^}]*\}|\\[A-Za-z]+", " ", span)
        words = [
            w
            for w in re.findall(r"[A-Za-z]{3,}", body)
            if w.lower() not in _FUNCTION_WORDS and not w.isupper()
        ]
        return len(span) <= 400 and len(words) < 2 and not re.search(r"[=+\-*/]\s*$", span)
    return not _PROSE_WORDS.search(re.sub(r"\\text\{[^}]*\}", "", span))


def _math_spans(text: str) -> list[re.Match]:
    return [m for m in _MATH_SPAN.finditer(text) if _is_math(m)]


def _span_text(m: re.Match) -> str:
    return next(g for g in m.groups() if g is not None)


def _is_mention(math: str) -> bool:
    """A formula that only names something ("$x$", "$\\mathbf{v}$"): not an answer."""
    return bool(re.fullmatch(r"\s*\\?(?:mathbf\{)?[A-Za-z]+\}?(?:_\{?\w+\}?)?\s*[.,]?\s*", math))


def _sentence_end(text: str) -> int:
    """Where the first sentence of text ends (a period before a space/newline, or a newline)."""
    m = re.search(r"(?<!\d)\.(?=\s|$)|\n\s*\n", text)
    return m.start() if m else len(text)


def _answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    end = _sentence_end(rest)
    spans = [m for m in _math_spans(rest) if m.start() < end and not _is_mention(_span_text(m))]
    if spans:
        return _rhs(_span_text(spans[0]))
    clause = rest[:end].strip()
    if not clause or len(clause) > 60 or re.match(r"(?i)(?:correct|right|wrong|incorrect|not|no)\b", clause):
        return None
    if re.search(r"[A-Za-z]{3,}", clause) and _NUMBER.search(clause):
        return _last_number(clause[: _NUMBER.search(clause).end()])
    return clause


def _final_math(text: str) -> str | None:
    """The last formula that is not a mere mention ("this value of $x$ works"), if only a short clause
    (with at most mentions in it) follows it."""
    spans = _math_spans(text)
    for span in reversed(spans):
        if _is_mention(_span_text(span)):
            continue
        tail = text[span.end() :].strip()
        limit = _MAX_TAIL if span is spans[-1] else _MAX_TAIL + 60
        if len(tail) > limit or "=" in _MATH_SPAN.sub("", tail) or "$" in _MATH_SPAN.sub("", tail):
            return None
        return _rhs(_span_text(span)) or None
    return None


def _final_sentence(text: str) -> str | None:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", lines[-1]) if s.strip()]
    sentence = sentences[-1] if sentences else lines[-1]
    if _NUMBER.search(sentence) is None and len(sentences) > 1:
        sentence = sentences[-2]
    solved = re.search(rf"({_NUM})\s*=\s*[A-Za-z]\s*\.?\s*$", sentence)  # "... or 20 = A."
    if solved:
        return solved.group(1).replace(",", "")
    matches = list(_CONCLUSION_NUMBER.finditer(sentence))
    if matches:
        tup = next(
            (t for t in _TUPLE.finditer(sentence) if t.start() <= matches[-1].start(1) < t.end()), None
        )
        return tup.group(0) if tup else matches[-1].group(1).replace(",", "")
    return _last_number(sentence)


_PROSE = (("answer_is", _answer_is), ("final_math", _final_math), ("final_sentence", _final_sentence))


def extract_prose(completion: str) -> tuple[str, str] | None:
    """(answer, "prose:<step>") for an answer stated without a box (see the module docstring), or None."""
    text = answer_part(completion)
    if "\\boxed" in text or "\\fbox" in text:
        return None
    text = _prose_text(text)
    for name, step in _PROSE:
        answer = step(text)
        if answer is not None and answer.strip():
            return answer.strip(), f"prose:{name}"
    return None


def extract_answer(completion: str, extractors: tuple[str, ...] = ("boxed",)) -> tuple[str, str] | None:
    """The first answer found by `extractors` (tried in order) as (answer, extractor name), or None."""
    single = {"boxed": extract_boxed, "gsm8k": extract_gsm8k, "last_number": extract_last_number}
    for name in extractors:
        assert name in EXTRACTORS, f"unknown extractor {name!r}; choose from {EXTRACTORS}"
        if name == "prose":
            found = extract_prose(completion)
            if found is not None:
                return found
            continue
        answer = single[name](completion)
        if answer is not None and answer.strip():
            return answer, name
    return None


def no_answer_reason(completion: str, extractors: tuple[str, ...]) -> str:
    """Why no extractor found an answer (the reason of an "unverifiable" verdict)."""
    if THINK_START in completion and not answer_part(completion):
        return "no answer: <think> never closed"
    return f"no answer found by {'/'.join(extractors)} after </think>"


# --- the normal form --------------------------------------------------------------------------
_DELIMS = ("\\$", "\\left", "\\right", "\\displaystyle", "~", "$")
# \, \; \: \! "\ " and the \( \) \[ \] delimiters, but not a row break "\\" followed by one of them
_SPACING = re.compile(r"(?<!\\)\\[,;:! ()\[\]]")
_UNIT_TAIL = re.compile(
    r"^(.*?[\d}).])\s*\\(?:text|textrm|mathrm|mbox)\s*\{\s*[A-Za-z][A-Za-z .^/\d-]*\}(?:\^\{?\d\}?)?$"
)
_LEADING_VAR = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(?!.*(?:=|\\in))")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_WRAPPER = re.compile(r"\\(?:mathbf|textbf|boldsymbol|mathrm|textrm|text|mbox|operatorname)\s*\{([^{}]*)\}")


def normalise_answer(text: str) -> str:
    """The one normal form of an answer (see the module docstring); "" for an empty answer."""
    text = str(text).strip()
    text = _SPACING.sub("", text)
    for noise in _DELIMS:
        text = text.replace(noise, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", "")
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\%|%|\\degree", "", text)
    text = text.strip().rstrip(".").strip()
    unit = _UNIT_TAIL.match(text)
    if unit:
        text = unit.group(1)
    text = _LEADING_VAR.sub("", text, count=1)
    text = re.sub(
        r"\\(?:mathbf|textbf|boldsymbol)\s*\{([\d\s]+)\}", lambda m: "".join(m.group(1).split()), text
    )
    text = re.sub(r"(\d)\.(?=$|[/)\],}\s])", r"\1", text)  # "1." -> "1" (also "-1./3" -> "-1/3")
    if _THOUSANDS.match(text.replace(" ", "")):
        text = text.replace(",", "")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"(?<![A-Za-z]) | (?![A-Za-z])", "", text)  # keep a space only between two letters
    choice = re.fullmatch(r"\\text\{\(?([A-E])\)?\}|\(([A-E])\)", text)
    if choice:
        text = choice.group(1) or choice.group(2)
    return text


def plain_text(text: str) -> str:
    """An answer's words without LaTeX wrappers, lower-cased ("\\text{Evelyn}" -> "evelyn")."""
    while _WRAPPER.search(text):
        text = _WRAPPER.sub(r"\1", text)
    return " ".join(re.sub(r"[^\w\s]", " ", text).lower().split())
