"""Worker processes with a hard wall-clock kill, for checks that can hang (math-verify, sympy).

`WorkerPool(fn, workers, timeout_s, on_timeout)` runs `fn(*args)` in worker processes. A
dispatcher thread feeds each worker a few tasks ahead, times the task the worker is on, and when
that task exceeds `timeout_s` SIGKILLs the worker, resolves the task with `on_timeout(timeout_s)`,
hands the worker's queued tasks to others and starts a replacement. `submit` returns a
`concurrent.futures.Future`, so a trace generator can keep feeding it while the GPU generates.

`MathVerifierPool(workers, timeout_s)` is the math instance: the answer is extracted in the caller
(plain string work), and only the short answer and gold travel to the workers for math-verify.

Usage:
    with MathVerifierPool(workers=2, timeout_s=5) as pool:
        verdicts = pool.map(completions, golds)          # list[Verdict], in order
"""

import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait

from trace_gen.verify.answers import extract_answer, no_answer_reason
from trace_gen.verify.math import verify_extracted
from trace_gen.verify.verdict import Verdict

_PREFETCH = 4  # tasks queued per worker beyond the one it is running


def _mp_context():
    """forkserver: workers fork from a clean server with math-verify preloaded (fast restarts)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["trace_gen.verify.math"])
    return ctx


def _worker_main(conn: Connection, fn: Callable) -> None:
    """Worker loop: receive (task_id, args), send (task_id, ok, result or error text)."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        task_id, args = msg
        try:
            conn.send((task_id, True, fn(*args)))
        except Exception as e:  # the task failed, not the worker: report and carry on
            conn.send((task_id, False, f"{type(e).__name__}: {str(e)[:200]}"))


class _Worker:
    def __init__(self, ctx, fn: Callable):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.inflight: deque[tuple[Future, tuple]] = deque()
        self.head_started = 0.0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class WorkerPool:
    """Run `fn(*args)` in `workers` processes; a task over `timeout_s` is killed with its worker.

    `on_timeout(timeout_s)` gives the result of a killed task and `on_error(text)` the result of a
    task that raised or whose worker died (so callers always get a result, never an exception).
    """

    def __init__(
        self,
        fn: Callable,
        workers: int,
        timeout_s: float,
        on_timeout: Callable[[float], object],
        on_error: Callable[[str], object],
    ):
        assert workers >= 1, f"need at least one worker, got {workers}"
        assert timeout_s > 0, f"timeout_s must be positive, got {timeout_s}"
        self.fn, self.timeout_s = fn, timeout_s
        self.on_timeout, self.on_error = on_timeout, on_error
        self.kills = 0
        self._ctx = _mp_context()
        self._workers = [_Worker(self._ctx, fn) for _ in range(workers)]
        self._pending: deque[tuple[Future, tuple]] = deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch, name="WorkerPool", daemon=True)
        self._thread.start()

    # --- public API -------------------------------------------------------------------------
    def submit(self, *args) -> Future:
        """Queue fn(*args); the Future resolves to its result, on_timeout(...) or on_error(...)."""
        assert not self._closed, "pool is closed"
        fut: Future = Future()
        with self._lock:
            self._pending.append((fut, args))
        self._wake_w.send_bytes(b"")
        return fut

    def map_args(self, arg_tuples: Iterable[tuple]) -> list:
        """Results of fn(*args) for each args tuple, in input order."""
        futures = [self.submit(*args) for args in arg_tuples]
        return [f.result() for f in futures]

    def worker_cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the live workers (for benchmarks)."""
        total = 0
        for w in list(self._workers):
            try:
                with open(f"/proc/{w.proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
            except (OSError, IndexError, ValueError):
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_w.send_bytes(b"")
        self._thread.join()
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.send(None)
            w.proc.join(timeout=1)
            if w.proc.is_alive():
                w.kill()
        for fut, _ in self._pending:
            fut.set_result(self.on_error("pool closed before the task ran"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- dispatcher thread ------------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            busy = any(w.inflight for w in self._workers)
            if self._closed and not busy and not self._pending:
                return
            self._feed()
            now = time.monotonic()
            deadlines = [w.head_started + self.timeout_s for w in self._workers if w.inflight]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            ready = wait([self._wake_r] + [w.conn for w in self._workers if w.inflight], timeout)
            if self._wake_r in ready:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
            for w in list(self._workers):
                if w.conn in ready:
                    self._receive(w)
            now = time.monotonic()
            for w in list(self._workers):
                if w.inflight and now - w.head_started > self.timeout_s:
                    self._replace(w, self.on_timeout(self.timeout_s), timed_out=True)

    def _feed(self) -> None:
        with self._lock:
            for w in self._workers:
                while self._pending and len(w.inflight) <= _PREFETCH:
                    fut, args = self._pending.popleft()
                    if not w.inflight:
                        w.head_started = time.monotonic()
                    w.inflight.append((fut, args))
                    w.conn.send((id(fut), args))

    def _receive(self, w: _Worker) -> None:
        while w.inflight and w.conn.poll():
            try:
                task_id, ok, result = w.conn.recv()
            except (EOFError, OSError):
                w.proc.join(timeout=5)
                self._replace(w, self.on_error(f"worker died (exit code {w.proc.exitcode})"))
                return
            fut, _ = w.inflight.popleft()
            assert task_id == id(fut), "worker answered out of order"
            w.head_started = time.monotonic()
            fut.set_result(result if ok else self.on_error(result))

    def _replace(self, w: _Worker, head_result: object, timed_out: bool = False) -> None:
        """Kill w, resolve its current task with head_result, requeue the rest, start a new worker."""
        w.kill()
        self.kills += int(timed_out)
        fut, _ = w.inflight.popleft()
        fut.set_result(head_result)
        with self._lock:
            self._pending.extendleft(reversed(w.inflight))
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self.fn)


def _math_timeout(timeout_s: float) -> Verdict:
    return Verdict("unverifiable", f"timed out after {timeout_s:g}s")


def _math_error(text: str) -> Verdict:
    return Verdict("unverifiable", f"could not check: {text}")


class MathVerifierPool:
    """Math verdicts computed in worker processes with a hard wall-clock kill per answer.

    `fast_path=False` makes every pair go through math-verify (identical text included): for tests
    of equivalence itself."""

    def __init__(
        self, workers: int = max(1, (os.cpu_count() or 2)), timeout_s: float = 10.0, fast_path: bool = True
    ):
        self.fast_path = fast_path
        self._pool = WorkerPool(verify_extracted, workers, timeout_s, _math_timeout, _math_error)

    @property
    def kills(self) -> int:
        """How many workers were killed for exceeding the wall-clock limit."""
        return self._pool.kills

    def worker_cpu_s(self) -> float:
        """CPU seconds used so far by the live workers (for benchmarks)."""
        return self._pool.worker_cpu_s()

    def submit(self, completion: str, gold: str, extractors: tuple[str, ...] = ("boxed",)) -> Future:
        """A Future of the Verdict for one completion against its gold answer."""
        found = extract_answer(completion, extractors)
        if found is None:
            fut: Future = Future()
            fut.set_result(Verdict("unverifiable", no_answer_reason(completion, extractors)))
            return fut
        return self._pool.submit(found[0], str(gold), found[1], self.fast_path)

    def submit_answer(self, answer: str, gold: str, extractor: str = "boxed") -> Future:
        """A Future of the Verdict for an already-extracted answer (`extractor`: which one found it)."""
        return self._pool.submit(answer, str(gold), extractor, self.fast_path)

    def map(
        self, completions: Iterable[str], golds: Iterable[str], extractors: tuple[str, ...] = ("boxed",)
    ) -> list[Verdict]:
        """Verdicts for each (completion, gold) pair, in input order."""
        futures = [self.submit(c, g, extractors) for c, g in zip(completions, golds, strict=True)]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
