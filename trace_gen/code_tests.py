"""Code problems: pull the program out of a teacher's answer and run the dataset's tests on it.

A `tests` cell (see `trace_gen.prompts`) is JSON in one of two shapes:
- stdin/stdout (APPS, LiveCodeBench, TACO): {"inputs": [...], "outputs": [...]} or
  [{"input": ..., "output": ...}, ...];
- HumanEval: {"test": "def check(candidate): ...", "entry_point": "f", "prompt": "def f(...):\\n"}
  (the program is `prompt + code`, then the test and `check(entry_point)`).
The program is the last fenced code block after `</think>` (`trace_gen.verify.completion.extract_code`;
for HumanEval tests the last block defining the entry point, when there is one).
"""

import json

from trace_gen.verify import Verdict, check_humaneval, check_stdio
from trace_gen.verify.completion import extract_code


def stdio_cases(tests) -> list[tuple[str, str]] | None:
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:
        return [(str(i), str(o)) for i, o in zip(tests["inputs"], tests["outputs"], strict=True)]
    if isinstance(tests, list) and all(isinstance(t, dict) and "input" in t for t in tests):
        return [(str(t["input"]), str(t["output"])) for t in tests]
    return None


def code_verdict(completion: str, tests_json: str) -> Verdict:
    """Sandbox verdict of the program in `completion` against the JSON tests of its problem."""
    tests = json.loads(tests_json)
    cases = stdio_cases(tests)
    humaneval = isinstance(tests, dict) and "test" in tests
    prefer_def = (tests.get("entry_point") or True) if humaneval else False
    program = extract_code(completion, prefer_def)
    if program is None:
        return Verdict("unverifiable", "no fenced code block after </think>")
    if cases is not None:
        return check_stdio(program, cases)
    if humaneval:
        return check_humaneval(tests.get("prompt", ""), program, tests["test"], tests.get("entry_point", ""))
    return Verdict("sandbox_error", f"unknown tests format (keys: {list(tests)[:5]})")
