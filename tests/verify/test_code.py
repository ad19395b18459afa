"""Code verdicts: HumanEval canonical solutions through the full sandbox, controls, stdio tests."""

import subprocess
import sys

from trace_gen.verify.benchmarks import read_jsonl
from trace_gen.verify.code import check_humaneval_many, check_stdio, check_stdio_many, outputs_match
from trace_gen.verify.sandbox import Limits, sandbox_setup

# the product's limits are 10 s wall clock; programs here that must pass get room for a loaded machine
ROOMY = Limits(timeout_s=60)


def test_sandbox_is_isolated_on_this_machine():
    _python, mode = sandbox_setup()
    assert mode == "namespaces", "namespaces (unshare) should work here; without them runs are UNISOLATED"


def test_humaneval_canonical_solutions_all_pass_and_a_shuffled_control_fails():
    tasks = read_jsonl("humaneval.jsonl.gz")
    assert len(tasks) == 164
    items = [{**t, "completion": t["canonical_solution"]} for t in tasks]
    verdicts = check_humaneval_many(items, workers=2, limits=ROOMY)
    failures = [(t["task_id"], v) for t, v in zip(tasks, verdicts, strict=True) if v.verdict != "passed"]
    assert not failures, f"{len(failures)} canonical solutions did not pass: {failures[:5]}"

    shuffled = [
        {**t, "completion": tasks[(i + 1) % len(tasks)]["canonical_solution"]} for i, t in enumerate(tasks)
    ]
    control = check_humaneval_many(shuffled[:60], workers=2)
    assert sum(v.kept for v in control) == 0, [v for v in control if v.kept]
    assert not [v for v in verdicts if v.flags], "canonical solutions attempt nothing"
    assert {v.verdict for v in control} <= {"failed", "crashed", "timeout"}


def test_stdio_cases_pass_fail_and_crash():
    program = "a, b = map(int, input().split())\nprint(a + b)\n"
    assert check_stdio(program, [("1 2\n", "3\n"), ("10 -4", "6")], ROOMY).verdict == "passed"
    wrong = check_stdio(program, [("1 2\n", "3"), ("2 2\n", "5")])
    assert wrong.verdict == "failed" and wrong.reason.startswith("case 2/2")
    assert check_stdio(program, [("x y\n", "3")]).verdict == "crashed"
    slow = check_stdio("while True: pass", [("", "")], Limits(timeout_s=1, cpu_s=5))
    assert slow.verdict == "timeout"
    verdicts = check_stdio_many([(program, [("1 1", "2")]), ("print(3)", [("", "4")])], 2, ROOMY)
    assert [v.verdict for v in verdicts] == ["passed", "failed"]


def test_outputs_match_ignores_only_trailing_whitespace():
    assert outputs_match("1 2  \n3\n\n", "1 2\n3")
    assert not outputs_match("1  2\n3", "1 2\n3")
    assert not outputs_match("3\n", "3\n4")


def test_unisolated_fallback_still_limits_and_says_so_loudly(monkeypatch):
    from trace_gen.verify.code import verdict_from_run
    from trace_gen.verify.sandbox import _execute

    # the interpreter the fallback itself picks: as a throw-away uid without the sandbox's own root, one
    # installed under /root (pyenv) cannot be reached
    monkeypatch.setenv("DISTILL_SANDBOX_ISOLATION", "none")
    sandbox_setup.cache_clear()
    try:
        python, mode = sandbox_setup()
    finally:
        sandbox_setup.cache_clear()
    assert mode == "none"
    job = {"mode": "program", "program": "import os\nprint(os.getuid())"}
    result = _execute(job, "", ROOMY, python, "none")
    assert result.isolation == "none" and int(result.stdout) != 0
    verdict = verdict_from_run(result)
    assert verdict.verdict == "passed" and verdict.reason.startswith("UNISOLATED")
    looping = {"mode": "program", "program": "while True: pass"}
    looping = verdict_from_run(_execute(looping, "", Limits(timeout_s=1), python, "none"))
    assert looping.verdict == "timeout" and "UNISOLATED" in looping.reason


def test_without_namespaces_the_sandbox_refuses_in_one_line_unless_allowed():
    """Namespaces work on this machine, so their failure is simulated: the unshare command is replaced
    by `false` (as where user namespaces are disabled). A SandboxUnavailable line naming the opt-out."""
    probe = (
        "import os\n"
        "import trace_gen.verify.sandbox as sandbox\n"
        "sandbox._UNSHARE = ['false']\n"
        "from trace_gen.verify.sandbox import SandboxUnavailable, run_program\n"
        "try:\n    run_program('print(1)')\nexcept SandboxUnavailable as e:\n    print('REFUSED', e)\n"
        "os.environ['DISTILL_ALLOW_UNISOLATED'] = '1'\n"
        "from trace_gen.verify.sandbox import sandbox_setup\n"
        "sandbox_setup.cache_clear()\n"
        "print('ALLOWED', run_program('print(1)').isolation)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("REFUSED the code sandbox needs Linux namespaces"), out
    assert "--allow-unisolated" in lines[0] and "DISTILL_ALLOW_UNISOLATED=1" in lines[0]
    assert lines[1] == "ALLOWED none", out
