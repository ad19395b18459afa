"""Answer verification: the one place that decides "is this answer right".

Both the trace filter (trace_gen) and the benchmarks (eval_harness) import from here, so a trace
kept for training and a benchmark answer scored correct are judged by the same code.

- completion parts: `split_think` (the `</think>` split), `extract_code` (fenced code);
- math: `extract_answer` (boxed / gsm8k / prose / last_number), `normalise_answer` (the one normal
  form), `verify_math` (in-process), `MathVerifierPool` (worker processes, hard wall-clock kill);
- code: `check_humaneval`, `check_stdio` (and their `_many` forms) run model code in the sandbox
  of `trace_gen.verify.sandbox` (namespaces, rlimits, dropped uid, scrubbed env, audit flags).
"""

from trace_gen.verify.answers import extract_answer, extract_boxed, normalise_answer
from trace_gen.verify.code import check_humaneval, check_humaneval_many, check_stdio, check_stdio_many
from trace_gen.verify.completion import extract_code, split_think
from trace_gen.verify.math import verify_answer, verify_math
from trace_gen.verify.pool import MathVerifierPool, WorkerPool
from trace_gen.verify.sandbox import Limits, run_program
from trace_gen.verify.verdict import KEPT_VERDICTS, Verdict

__all__ = [
    "KEPT_VERDICTS",
    "Limits",
    "MathVerifierPool",
    "Verdict",
    "WorkerPool",
    "check_humaneval",
    "check_humaneval_many",
    "check_stdio",
    "check_stdio_many",
    "extract_answer",
    "extract_boxed",
    "extract_code",
    "normalise_answer",
    "run_program",
    "split_think",
    "verify_answer",
    "verify_math",
]
