"""Math answers: extract the final answer of a completion and check it with math-verify."""

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from trace_gen.verify.verdict import Verdict

THINK_END = "</think>"


def _last_boxed_span(text: str) -> str | None:
    """Return the content of the last \\boxed{...} in text, braces balanced, or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j]
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


def extract_boxed(completion: str) -> str | None:
    """The last \\boxed{} answer after </think> (reasoning is never searched), or None.

    A completion without any </think> is treated as all answer (non-reasoning models).
    """
    answer_part = completion.rsplit(THINK_END, 1)[-1]
    return _last_boxed_span(answer_part)


def verify_math(completion: str, gold: str) -> Verdict:
    """Compare the completion's final \\boxed{} answer with the gold answer using math-verify.

    math-verify's own timeouts use SIGALRM (main thread only), so they are switched off here;
    callers that need a hard wall-clock limit run this in a worker process.
    """
    boxed = extract_boxed(completion)
    if boxed is None:
        return Verdict("unverifiable", "no \\boxed{} answer after </think>")
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold_parsed = parse(f"${gold}$", extraction_config=configs, parsing_timeout=None)
    if not gold_parsed:
        return Verdict("unverifiable", f"could not parse gold answer {gold[:40]!r}")
    pred_parsed = parse(f"${boxed}$", extraction_config=configs, parsing_timeout=None)
    if not pred_parsed:
        return Verdict("unverifiable", f"could not parse answer {boxed[:40]!r}")
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return Verdict("correct", "matches gold")
    return Verdict("wrong", f"answer {boxed[:40]!r} != gold {gold[:40]!r}")
