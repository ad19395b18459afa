"""The suite's own machinery: the hypothesis profile a loaded machine needs (tests/conftest.py) and the
closing line of .ci/run (pytest's "no tests collected" is a failure)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_hypothesis_runs_without_time_limits_and_derandomized():
    current = settings()
    assert current.deadline is None and HealthCheck.too_slow in current.suppress_health_check
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        assert current.derandomize and current.database is None


SEEN: list[list[int]] = []


@settings(max_examples=20)  # a per-test override keeps the profile's other fields
@given(st.lists(st.integers()))
def _record(xs):
    SEEN.append(xs)


@settings(max_examples=1)
@given(st.just(0))
def _slow_example(_):
    time.sleep(0.3)  # over hypothesis' default 200 ms deadline: would raise DeadlineExceeded


def test_a_decorated_property_has_no_deadline_and_repeats_its_examples():
    _slow_example()
    _record()
    first = list(SEEN)
    SEEN.clear()
    _record()
    assert len(first) >= 2
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        assert first == SEEN


def _ci_run(tmp_path, lint: str, test: str) -> tuple[int, str]:
    """The real .ci/run in a scratch checkout whose Makefile's lint/test recipes are the given commands."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / ".ci" / "run", repo / ".ci" / "run")
    (repo / "Makefile").write_text(f"lint:\n\t{lint}\ntest:\n\t{test}\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_one.py").write_text("def test_one():\n    assert True\n")
    (repo / "empty").mkdir()
    env = {**os.environ, "PY": sys.executable}
    proc = subprocess.run(["bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout.strip().splitlines()[-1]


def test_ci_run_ends_with_one_line_and_fails_when_pytest_collects_nothing(tmp_path):
    pytest_cmd = "$(PY) -m pytest -q -p no:cacheprovider"
    rc, last = _ci_run(tmp_path / "a", "true", f"{pytest_cmd} empty")
    assert rc == 1 and last.startswith("CI FAILED at test: pytest collected no tests (exit code 5)"), last
    rc, last = _ci_run(tmp_path / "b", "false", f"{pytest_cmd} tests")
    # under an outer make (CI's own `make test`) make names itself make[1], make[2], ...
    assert rc == 1 and re.match(
        r"CI FAILED at lint: make(\[\d+\])?: \*\*\* \[Makefile:2: lint\] Error 1", last
    ), last
    rc, last = _ci_run(tmp_path / "c", "true", f"{pytest_cmd} tests")
    assert rc == 0 and last.startswith("CI PASSED: lint, test in "), last
