"""Answer verification: the one place that decides "is this answer right".

Both the trace filter (trace_gen) and the benchmarks (eval_harness) import from here, so a trace
kept for training and a benchmark answer scored correct are judged by the same code.

- math: `verify_math` (in-process), `MathVerifierPool` (worker processes, hard wall-clock kill);
- code: `check_humaneval`, `check_stdio` (and their `_many` forms) run model code in the sandbox
  of `trace_gen.verify.sandbox` (namespaces, rlimits, dropped uid, scrubbed env).
"""

from trace_gen.verify.code import check_humaneval, check_humaneval_many, check_stdio, check_stdio_many
from trace_gen.verify.math import extract_answer, extract_boxed, verify_answer, verify_math
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
    "run_program",
    "verify_answer",
    "verify_math",
]
