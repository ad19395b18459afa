"""Run untrusted (model-written) Python programs in an isolated, resource-limited child.

Model code never runs in the toolkit's own process. Each `run_program` / `run_tests` call:
- writes the program to a fresh temp dir (its cwd, owned by a throw-away uid when we are root);
- starts `trace_gen/verify/harness.py` under `unshare --pid --fork --kill-child --net --mount
  --mount-proc` (user namespace added when not root): no network (only a downed loopback), its own
  pid namespace (killing its init kills everything it spawned, setsid or not) and its own mounts;
- the harness pivots into a new root, a tmpfs holding only the system's directories (/usr, /etc,
  /bin, /lib...) and the interpreter's prefix, read-only, fresh tmpfs at the run directory's path
  (with a copy of main.py), /tmp, /var/tmp, /dev/shm (each the size of the file-size limit: nothing
  the program writes reaches a disk), /dev/{null,zero,full,random,urandom} and the pid namespace's
  /proc; the host's root is detached. An allow-list, not hiding: the user's home, the repository,
  data directories (/data, /scratch, NFS) are not in the tree at all, wherever they are, so there
  is no mount to remove to uncover them; an interpreter installed in the home (pyenv, conda, uv)
  brings only its own prefix, read-only;
- the harness sets rlimits (CPU time, address space, file size, process count, open files, no core),
  no_new_privs, drops to a random unprivileged uid (when root, so the process-count limit is per
  run and host files are read-only), then drops every capability: bounding set, ambient, effective,
  permitted, inheritable (as non-root it is root of its user namespace: with them it could unmount
  and remount its own mounts; without them it cannot). A program may still create a nested user
  namespace, where it holds every capability again: the kernel locks the mounts it inherits there
  (no unmount, no writable remount, no bind of a mount without what is mounted on it), and the
  host's files are not in that tree either (tests/verify/test_sandbox_hostile.py tries all of it);
- the harness installs an audit hook and runs the job (its docstring has the threat model of
  in-process tests);
- the environment is scrubbed; stdout/stderr go to files capped by the file-size limit and are read
  back up to `output_bytes`; the whole process group is SIGKILLed at the wall-clock limit.
What remains possible for a hostile program: reading the visible system directories and /proc of
its own pid namespace; filling its tmpfs (memory, bounded by their sizes); using the kernel's
system calls, user namespaces included (no seccomp filter), so a kernel bug reachable from an
unprivileged process is reachable from the sandbox too.
Three descriptors connect the harness to this process: the job (JSON, read before any model code
runs), a pipe holding a fresh random token (read by the harness only after the tests returned) and
a report file (FLAG / TAMPER / RESULT / PASS lines). `RunResult.tests_passed` is True only when the
report holds "PASS <this run's token>".

Without namespaces (no unprivileged user namespaces, seccomp-restricted containers) the sandbox
refuses to run model code: `SandboxUnavailable`, one line. DISTILL_ALLOW_UNISOLATED=1 (trace_gen
`--allow-unisolated`) accepts the risk: runs then get rlimits, the uid drop and the process-group kill
only, `RunResult.isolation` is "none" and every code verdict's reason starts with "UNISOLATED".
DISTILL_SANDBOX_ISOLATION=none forces that mode (tests of the fallback).
"""

import contextlib
import functools
import json
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from trace_gen.errors import UsageError

log = logging.getLogger(__name__)

SETUP_FAILED_EXIT = 97  # the harness's exit code when the sandbox itself could not be set up
_UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--net", "--mount", "--mount-proc"]
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/nix")
_SCRUBBED_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
_HARNESS = (Path(__file__).resolve().parent / "harness.py").read_text(encoding="utf-8")
# the harness runs with a private copy of the builtins, so rebinding builtins.X cannot reach its code
_BOOT = (
    "import builtins\n"
    f"exec(compile({_HARNESS!r}, '<distill-harness>', 'exec'), "
    "{'__name__': '__main__', '__builtins__': dict(vars(builtins))})"
)
ALLOW_UNISOLATED_ENV = "DISTILL_ALLOW_UNISOLATED"


class SandboxUnavailable(UsageError):
    """Namespaces are unavailable and running model code unisolated was not allowed."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 10.0  # wall clock, whole process group killed after it
    cpu_s: int = 10  # RLIMIT_CPU per process
    memory_mb: int = 512  # RLIMIT_AS per process
    file_size_mb: int = 16  # RLIMIT_FSIZE: any one file written, stdout/stderr included
    nproc: int = 16  # RLIMIT_NPROC for the run's own uid (threads count too)
    output_bytes: int = 1 << 20  # stdout/stderr kept per stream


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class RunResult:
    """What one sandboxed run did."""

    returncode: int | None  # negative: killed by that signal; None: never started
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    isolation: str  # "namespaces" or "none"
    elapsed_s: float
    setup_error: str = ""  # non-empty when the sandbox itself failed (infrastructure, not the code)
    tests_passed: bool = False  # the harness reported this run's token: check() returned
    result: str = ""  # the harness's "RESULT <verdict> <reason>" (in-process tests), if any
    flags: tuple[str, ...] = ()  # what the audit hook observed ("network:connect", ...)
    tampered: tuple[str, ...] = ()  # attempts on the harness (always a failed verdict)


def _sandbox_uid() -> int:
    """A fresh unprivileged uid for one run when we are root (else -1: keep our own)."""
    return random.randrange(1_000_000, 2_000_000_000) if os.geteuid() == 0 else -1


def _visible_dirs(python: str) -> list[str]:
    """What the sandbox's root shows, read-only: the system's programs, libraries and /etc, and the
    interpreter's prefix wherever it is (pyenv, conda and uv install it under the user's home)."""
    dirs = [d for d in _SYSTEM_DIRS if os.path.lexists(d)]
    prefix = Path(os.path.realpath(python)).parents[1]  # realpath: no symlinked system dir in it
    if prefix != Path("/") and not any(Path(d) == prefix or Path(d) in prefix.parents for d in dirs):
        dirs.append(str(prefix))
    return dirs


def _command(
    python: str, mode: str, run_dir: str, uid: int, limits: Limits, fds: tuple[int, ...]
) -> list[str]:
    size_mb = max(limits.file_size_mb, -(-limits.output_bytes // (1 << 20)))
    argv = [python, "-I", "-c", _BOOT, run_dir, str(uid), str(limits.cpu_s), str(limits.memory_mb)]
    argv += [str(size_mb), str(limits.nproc), mode, *map(str, fds)]
    if mode == "namespaces":
        argv += _visible_dirs(python)
        prefix = _UNSHARE if os.geteuid() == 0 else [*_UNSHARE, "--map-root-user"]
        return [*prefix, "--", *argv]
    return argv


def _reap_uid(uid: int, wait_s: float = 5.0) -> bool:
    """SIGKILL every process running as the run's `uid` until none is left (or `wait_s` passes).

    With a pid namespace the kernel already kills them all when its init dies, but asynchronously;
    without one this is the only cleanup for processes that left the process group."""
    if uid < 0:
        return True
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        alive.append(int(entry))
                        os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        if not alive:
            return True
        if time.monotonic() > deadline:
            log.error("sandbox processes of uid %d survived: %s", uid, alive)
            return False
        time.sleep(0.01)


def _read_capped(path: Path, cap: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def _parse_report(text: str, token: str) -> dict:
    """The harness's report lines: PASS with this run's token, the last RESULT, FLAGs and TAMPERs."""
    lines = text.splitlines()
    flags = [line[5:] for line in lines if line.startswith("FLAG ")]
    tampered = [line[7:] for line in lines if line.startswith("TAMPER ")]
    results = [line[7:] for line in lines if line.startswith("RESULT ")]
    return {
        "tests_passed": f"PASS {token}" in lines,
        "result": results[-1] if results else "",
        "flags": tuple(dict.fromkeys(flags)),
        "tampered": tuple(dict.fromkeys(tampered)),
    }


def _execute(job: dict, stdin: str, limits: Limits, python: str, mode: str) -> RunResult:
    start = time.monotonic()
    uid = _sandbox_uid()
    run_dir = tempfile.mkdtemp(prefix="distill-sbx-")
    io_dir = tempfile.mkdtemp(prefix="distill-sbx-io-")  # never visible to the program's uid
    token = secrets.token_hex(16)
    fds: list[int] = []
    try:
        Path(run_dir, "main.py").write_text(job["program"], encoding="utf-8")  # for tracebacks
        if uid >= 0:
            os.chown(run_dir, uid, uid)
        os.chmod(run_dir, 0o700)
        Path(io_dir, "stdin").write_text(stdin, encoding="utf-8")
        Path(io_dir, "job").write_text(json.dumps(job), encoding="utf-8")
        fds.append(os.open(Path(io_dir, "job"), os.O_RDONLY))
        os.unlink(Path(io_dir, "job"))
        token_r, token_w = os.pipe()
        fds.append(token_r)
        os.write(token_w, token.encode())
        os.close(token_w)
        fds.append(os.open(Path(io_dir, "report"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        with (
            open(Path(io_dir, "stdin"), "rb") as fin,
            open(Path(io_dir, "stdout"), "wb") as fout,
            open(Path(io_dir, "stderr"), "wb") as ferr,
        ):
            try:
                proc = subprocess.Popen(
                    _command(python, mode, run_dir, uid, limits, tuple(fds)),
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    cwd=run_dir,
                    env=_SCRUBBED_ENV,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=tuple(fds),
                )
            except OSError as e:
                return RunResult(None, "", "", False, False, mode, time.monotonic() - start, repr(e))
            finally:
                for fd in fds:
                    os.close(fd)
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                _reap_uid(uid)
        stdout, trunc_out = _read_capped(Path(io_dir, "stdout"), limits.output_bytes)
        stderr, trunc_err = _read_capped(Path(io_dir, "stderr"), limits.output_bytes)
        report, _ = _read_capped(Path(io_dir, "report"), 1 << 20)
        setup_error = ""
        if proc.returncode == SETUP_FAILED_EXIT and "SANDBOX SETUP FAILED" in stderr:
            setup_error = stderr.strip().splitlines()[-1]
        code = proc.returncode
        if code is not None and code > 128:  # the harness reports 128 + signal number
            code = -(code - 128)
        elapsed = time.monotonic() - start
        truncated = trunc_out or trunc_err
        return RunResult(
            code,
            stdout,
            stderr,
            timed_out,
            truncated,
            mode,
            elapsed,
            setup_error,
            **_parse_report(report, token),
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(io_dir, ignore_errors=True)


@functools.cache
def sandbox_setup() -> tuple[str, str]:
    """(python, isolation mode) for this machine, probed once: the first interpreter that runs in the
    full sandbox wins. Without namespaces: SandboxUnavailable, unless unisolated runs were allowed."""
    candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3") or "python3"]
    forced_none = os.environ.get("DISTILL_SANDBOX_ISOLATION") == "none"
    allowed = forced_none or os.environ.get(ALLOW_UNISOLATED_ENV, "") not in ("", "0")
    probe = {"mode": "program", "program": "import json, socket\nprint('ok')"}
    failures = []
    for mode in ["none"] if forced_none else ["namespaces", "none"]:
        if mode == "none" and not allowed:
            break
        for python in dict.fromkeys(candidates):
            result = _execute(probe, "", Limits(timeout_s=30), python, mode)
            if result.returncode == 0 and result.stdout.strip() == "ok":
                if mode != "namespaces":
                    log.warning(
                        "SANDBOX NOT ISOLATED: no network/pid/mount namespaces; model code runs "
                        "with rlimits and a dropped uid only (%s is set)",
                        ALLOW_UNISOLATED_ENV if not forced_none else "DISTILL_SANDBOX_ISOLATION=none",
                    )
                return python, mode
            failures.append(f"{python} ({mode}): {(result.setup_error or result.stderr).strip()[-200:]}")
            log.info("sandbox probe failed: %s", failures[-1])
    if not allowed:
        raise SandboxUnavailable(
            "the code sandbox needs Linux namespaces (unshare --pid --net --mount, user namespaces when "
            f"not root), which fail here ({failures[0] if failures else 'no interpreter'}); run where "
            f"they work, or accept running model code with rlimits only: --allow-unisolated "
            f"(or {ALLOW_UNISOLATED_ENV}=1)"
        )
    raise SandboxUnavailable(f"no Python interpreter runs in the sandbox on this machine: {failures[:2]}")


def require_sandbox() -> str:
    """The isolation mode, checked before any heavy work; SandboxUnavailable (one line) when refused."""
    return sandbox_setup()[1]


def run_program(source: str, stdin: str = "", limits: Limits = DEFAULT_LIMITS) -> RunResult:
    """Run `source` as a Python program (__main__) in the sandbox, feeding it `stdin`."""
    python, mode = sandbox_setup()
    return _execute({"mode": "program", "program": source}, stdin, limits, python, mode)


def run_tests(program: str, test: str, entry_point: str, limits: Limits = DEFAULT_LIMITS) -> RunResult:
    """Run `program`, then `test`, then `check(entry_point)` under the harness (HumanEval style)."""
    python, mode = sandbox_setup()
    job = {"mode": "humaneval", "program": program, "test": test, "entry_point": entry_point}
    return _execute(job, "", limits, python, mode)
