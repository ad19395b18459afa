"""The worker pool: results in order, hard kill of a task over its wall-clock limit, worker death."""

import math
import os
import time

from trace_gen.verify.pool import MathVerifierPool, WorkerPool


def _pool(fn, workers=2, timeout_s=3.0):
    """A pool whose limit leaves a loaded machine seconds to start a worker and run a quick task."""
    return WorkerPool(fn, workers, timeout_s, lambda t: f"timeout {t:g}", lambda e: f"error {e}")


def _sleep_then_say(seconds: float) -> str:
    time.sleep(seconds)
    return f"slept {seconds:g}"


def test_hung_task_is_killed_and_others_still_finish_in_order():
    """A task over the limit resolves as "timeout" (had it run out, it would say "slept 600")."""
    with _pool(_sleep_then_say) as pool:
        results = pool.map_args([(0,), (600,), (0,), (0,), (600,), (0,)])
        assert results == ["slept 0", "timeout 3", "slept 0", "slept 0", "timeout 3", "slept 0"]
        assert pool.kills == 2


def test_raising_task_and_dying_worker_become_results_and_pool_recovers():
    with _pool(math.sqrt) as pool:
        assert pool.map_args([(4,), (-1,), (9,)]) == [2.0, "error ValueError: math domain error", 3.0]
    with _pool(os._exit, workers=1) as pool:
        assert pool.submit(3).result() == "error worker died (exit code 3)"
        assert pool.submit(0).result().startswith("error worker died")  # a fresh worker took over


def test_math_pool_timeout_is_unverifiable_never_wrong():
    with MathVerifierPool(workers=1, timeout_s=1e-6) as pool:
        verdict = pool.submit("</think> \\boxed{2}", "2").result()
    assert verdict.verdict == "unverifiable" and "timed out" in verdict.reason


def test_math_pool_matches_in_process_verdicts():
    completions = ["</think> \\boxed{2}", "</think> \\boxed{3}", "no box", "<think>\\boxed{2}"]
    with MathVerifierPool(workers=2, timeout_s=20) as pool:
        verdicts = pool.map(completions, ["2"] * 4)
    assert [v.verdict for v in verdicts] == ["correct", "wrong", "unverifiable", "unverifiable"]
