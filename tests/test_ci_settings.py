"""The test suite's own settings: the hypothesis profile a loaded CI machine needs (tests/conftest.py)."""

import os
import time

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
