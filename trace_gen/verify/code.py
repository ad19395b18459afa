"""Code verdicts: run model code against tests in the sandbox and label the outcome.

Two test styles:
- HumanEval: `prompt + completion`, then the task's `test`, then `check(entry_point)`, run by the
  sandbox's harness (`trace_gen/verify/harness.py`). "passed" only when the harness itself reported
  that `check` returned, through a per-run token the program cannot read before then: an exit status
  of 0 is never taken as a pass, so every early exit is "failed: exited before the tests finished";
- stdin/stdout (APPS, LiveCodeBench): the program is run once per (input, expected output) case and
  passes a case when it exits cleanly and prints the expected output.

Verdicts (see DESIGN.md): passed; failed (a test failed, the program left before the tests finished,
or it tampered with the harness); timeout (wall clock or CPU limit); crashed (any other exception, a
signal, a memory or output limit); sandbox_error (the sandbox itself failed: infrastructure, never
the code's fault). `Verdict.flags` lists what the sandbox observed or blocked (writes outside the run
directory, network, signals, new processes, the memory/output/CPU caps, tampering), also when the
tests then passed. Without namespace isolation (only when allowed) every reason starts "UNISOLATED".
"""

import re
import signal
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from trace_gen.verify.sandbox import DEFAULT_LIMITS, Limits, RunResult, run_program, run_tests
from trace_gen.verify.verdict import Verdict

_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
EARLY_EXIT = "exited before the tests finished"


def _last_exception(stderr: str) -> str | None:
    """The exception name on the last traceback line of stderr, or None."""
    if "Traceback (most recent call last)" not in stderr:
        return None
    for line in reversed(stderr.strip().splitlines()):
        match = _EXCEPTION_LINE.match(line)
        if match:
            return match.group(1).rsplit(".", 1)[-1]
    return None


def verdict_from_run(
    result: RunResult, expected_stdout: str | None = None, in_process_tests: bool = False
) -> Verdict:
    """Label one sandboxed run. With `in_process_tests` (HumanEval) only the harness's token passes;
    with `expected_stdout`, a clean exit must also print it."""
    verdict = _label(result, expected_stdout, in_process_tests)
    flags = _flags(result, verdict)
    reason = (
        verdict.reason
        if result.isolation == "namespaces"
        else f"UNISOLATED (no namespaces): {verdict.reason}"
    )
    return Verdict(verdict.verdict, reason, flags)


def _flags(result: RunResult, verdict: Verdict) -> tuple[str, ...]:
    flags = list(result.flags) + [f"tamper:{t}" for t in result.tampered]
    if result.output_truncated:
        flags.append("output_cap")
    if "memory limit" in verdict.reason:
        flags.append("memory_cap")
    if result.returncode == -signal.SIGXCPU:
        flags.append("cpu_cap")
    return tuple(dict.fromkeys(flags))


def _label(result: RunResult, expected_stdout: str | None, in_process_tests: bool) -> Verdict:
    if result.setup_error or result.returncode is None:
        return Verdict("sandbox_error", f"sandbox failed: {result.setup_error or 'did not start'}"[:300])
    if result.tampered:
        return Verdict("failed", f"tampered with the test harness: {result.tampered[0]}")
    if in_process_tests and result.tests_passed:
        return Verdict("passed", "all tests passed")
    if result.timed_out:
        return Verdict("timeout", f"killed after {result.elapsed_s:.1f}s wall clock")
    code = result.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        if -code == signal.SIGXCPU:
            return Verdict("timeout", "CPU time limit exceeded")
        return Verdict("crashed", f"killed by {name}")
    if result.output_truncated:
        return Verdict("crashed", "output exceeded the size cap")
    if in_process_tests:
        if result.result:
            label, _, reason = result.result.partition(" ")
            return Verdict(label if label in ("failed", "crashed") else "failed", reason)
        return Verdict("failed", f"{EARLY_EXIT} (exit code {code})")
    if code != 0:
        exc = _last_exception(result.stderr)
        if exc == "AssertionError":
            return Verdict("failed", "assertion failed")
        if exc == "MemoryError":
            return Verdict("crashed", "memory limit exceeded")
        if exc is not None:
            return Verdict("crashed", f"raised {exc}")
        return Verdict("crashed", f"exit code {code}")
    if expected_stdout is not None and not outputs_match(result.stdout, expected_stdout):
        return Verdict("failed", f"wrong output {result.stdout[:60]!r} != expected {expected_stdout[:60]!r}")
    return Verdict("passed", "ran to the end" if expected_stdout is None else "all tests passed")


def outputs_match(actual: str, expected: str) -> bool:
    """Outputs equal up to trailing whitespace on each line and trailing blank lines."""

    def norm(text: str) -> list[str]:
        lines = [line.rstrip() for line in text.strip("\n").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    return norm(actual) == norm(expected)


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """HumanEval's reference harness as one program (prompt + completion, test, check(entry_point)):
    what bench/verify.py runs unsandboxed for comparison; `check_humaneval` uses the sandbox harness."""
    return f"{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n"


def check_humaneval(
    prompt: str, completion: str, test: str, entry_point: str, limits: Limits = DEFAULT_LIMITS
) -> Verdict:
    """Verdict of a HumanEval-style completion (the function body, after `prompt`)."""
    return verdict_from_run(run_tests(prompt + completion, test, entry_point, limits), in_process_tests=True)


def check_stdio(program: str, cases: Sequence[tuple[str, str]], limits: Limits = DEFAULT_LIMITS) -> Verdict:
    """Verdict of a stdin/stdout program over (input, expected output) cases; stops at the first miss."""
    if not cases:
        return Verdict("sandbox_error", "no test cases given")
    flags: dict[str, None] = {}
    for i, (stdin, expected) in enumerate(cases):
        verdict = verdict_from_run(run_program(program, stdin, limits), expected)
        flags.update(dict.fromkeys(verdict.flags))
        if verdict.verdict != "passed":
            return Verdict(verdict.verdict, f"case {i + 1}/{len(cases)}: {verdict.reason}", tuple(flags))
    return Verdict("passed", f"all {len(cases)} cases passed", tuple(flags))


def check_humaneval_many(
    items: Iterable[dict], workers: int = 2, limits: Limits = DEFAULT_LIMITS
) -> list[Verdict]:
    """Verdicts for dicts with prompt, completion, test, entry_point, run `workers` at a time, in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                check_humaneval, it["prompt"], it["completion"], it["test"], it["entry_point"], limits
            )
            for it in items
        ]
        return [f.result() for f in futures]


def check_stdio_many(
    items: Iterable[tuple[str, Sequence[tuple[str, str]]]], workers: int = 2, limits: Limits = DEFAULT_LIMITS
) -> list[Verdict]:
    """Verdicts for (program, cases) pairs, run `workers` at a time, in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(check_stdio, program, cases, limits) for program, cases in items]
        return [f.result() for f in futures]
