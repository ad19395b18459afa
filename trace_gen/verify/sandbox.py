"""Run untrusted (model-written) Python programs in an isolated, resource-limited child.

Model code never runs in the toolkit's own process. Each `run_program` call:
- writes the program to a fresh temp dir (its cwd, owned by a throw-away uid when we are root);
- starts it under `unshare --pid --fork --kill-child --net --mount --mount-proc` (user namespace
  added when not root): no network (only a downed loopback), its own pid namespace (killing its
  init kills everything it spawned, setsid or not) and a private mount table in which /tmp,
  /var/tmp, /dev/shm are fresh tmpfs and the user's directories (home, the workspace holding this
  repository, the caller's cwd) are hidden behind empty read-only tmpfs;
- a small launcher then sets rlimits (CPU time, address space, file size, process count, open
  files, no core), sets no_new_privs, drops to a random unprivileged uid (when root, so the
  process-count limit is per run and host files are read-only), and runs the program as __main__;
- the environment is scrubbed; stdout/stderr go to files capped by the file-size limit and are read
  back up to `output_bytes`; the whole process group is SIGKILLed at the wall-clock limit.

When namespaces are unavailable the run still happens (rlimits, uid drop, process-group kill) but
`RunResult.isolation` says "none" and code verdicts carry "UNISOLATED" in their reason; set
DISTILL_SANDBOX_ISOLATION=none to force that mode (tests of the fallback only).
"""

import contextlib
import functools
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SETUP_FAILED_EXIT = 97  # the launcher's exit code when the sandbox itself could not be set up
_UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--net", "--mount", "--mount-proc"]
_SCRUBBED_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}

# The launcher: mounts (as root, in the new namespaces), then forks; the child sets rlimits, drops
# privileges and runs main.py; the parent (the namespace's init) waits and exits with the child's
# status, 128 + signal number when a signal killed it. argv: run_dir uid cpu_s as_mb fsize_mb
# nproc mode hide...
_LAUNCHER = r"""
import ctypes, os, resource, sys
def fail(msg):
    sys.stderr.write("SANDBOX SETUP FAILED: " + msg + "\n"); sys.stderr.flush(); os._exit(97)
run_dir, uid, cpu_s, as_mb, fsize_mb, nproc, mode, *hide = sys.argv[1:]
uid, cpu_s, as_mb, fsize_mb, nproc = int(uid), int(cpu_s), int(as_mb), int(fsize_mb), int(nproc)
try:
    os.chdir(run_dir)
    libc = ctypes.CDLL(None, use_errno=True)
    if mode == "namespaces":
        def mount(target, opts, flags=0):
            if libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, opts.encode()) != 0:
                fail("mount %s: errno %d" % (target, ctypes.get_errno()))
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(d):
                mount(d, "size=%dm,mode=1777" % fsize_mb)
        for d in hide:
            if os.path.isdir(d):
                mount(d, "size=1m,mode=755", flags=1)  # MS_RDONLY
    pid = os.fork()
except Exception as e:
    fail(repr(e))
if pid:
    _, status = os.waitpid(pid, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
try:
    for res, val in ((resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, as_mb << 20),
                     (resource.RLIMIT_FSIZE, fsize_mb << 20), (resource.RLIMIT_NPROC, nproc),
                     (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0)):
        # CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard one
        resource.setrlimit(res, (val, val + 1 if res == resource.RLIMIT_CPU else val))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        fail("prctl no_new_privs")
    if uid >= 0:
        os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
        if 0 in os.getresuid() or 0 in os.getresgid():
            fail("could not drop root")
except Exception as e:
    fail(repr(e))
del ctypes, libc, resource, run_dir, uid, cpu_s, as_mb, fsize_mb, nproc, mode, hide, fail, pid
sys.argv = ["main.py"]
sys.path.insert(0, "")
with open("main.py", encoding="utf-8") as f:
    code = compile(f.read(), "main.py", "exec")
del f
exec(code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})
"""


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


def _sandbox_uid() -> int:
    """A fresh unprivileged uid for one run when we are root (else -1: keep our own)."""
    return random.randrange(1_000_000, 2_000_000_000) if os.geteuid() == 0 else -1


def _hidden_dirs(python: str) -> list[str]:
    """User directories to hide in the sandbox, minus any that hold the sandbox's interpreter."""
    from trace_gen.verify.benchmarks import REPO_ROOT

    candidates = {"/home", "/root", "/mnt", "/srv", "/media", str(Path.home()), os.getcwd()}
    candidates.add(str(REPO_ROOT.parent))
    real = Path(os.path.realpath(python))
    keep = [str(real), str(real.parents[1])]  # the interpreter and its prefix (stdlib)
    # /tmp, /var/tmp, /dev/shm get fresh private tmpfs anyway; hiding one of them (a checkout under
    # /tmp makes /tmp the workspace) would mount a read-only tmpfs over the sandbox's scratch space.
    scratch = {"/tmp", "/var/tmp", "/dev/shm"}
    return sorted(
        d
        for d in candidates
        if d != "/"
        and d not in scratch
        and not any(k == d or k.startswith(d.rstrip("/") + "/") for k in keep)
    )


def _command(python: str, mode: str, run_dir: str, uid: int, limits: Limits) -> list[str]:
    size_mb = max(limits.file_size_mb, -(-limits.output_bytes // (1 << 20)))
    argv = [python, "-I", "-c", _LAUNCHER, run_dir, str(uid), str(limits.cpu_s), str(limits.memory_mb)]
    argv += [str(size_mb), str(limits.nproc), mode]
    if mode == "namespaces":
        argv += _hidden_dirs(python)
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


def _execute(source: str, stdin: str, limits: Limits, python: str, mode: str) -> RunResult:
    start = time.monotonic()
    uid = _sandbox_uid()
    run_dir = tempfile.mkdtemp(prefix="distill-sbx-")
    io_dir = tempfile.mkdtemp(prefix="distill-sbx-io-")  # never visible to the program's uid
    try:
        Path(run_dir, "main.py").write_text(source, encoding="utf-8")
        if uid >= 0:
            os.chown(run_dir, uid, uid)
        os.chmod(run_dir, 0o700)
        Path(io_dir, "stdin").write_text(stdin, encoding="utf-8")
        with (
            open(Path(io_dir, "stdin"), "rb") as fin,
            open(Path(io_dir, "stdout"), "wb") as fout,
            open(Path(io_dir, "stderr"), "wb") as ferr,
        ):
            try:
                proc = subprocess.Popen(
                    _command(python, mode, run_dir, uid, limits),
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    cwd=run_dir,
                    env=_SCRUBBED_ENV,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as e:
                return RunResult(None, "", "", False, False, mode, time.monotonic() - start, repr(e))
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
        setup_error = ""
        if proc.returncode == SETUP_FAILED_EXIT and "SANDBOX SETUP FAILED" in stderr:
            setup_error = stderr.strip().splitlines()[-1]
        code = proc.returncode
        if code is not None and code > 128:  # the launcher reports 128 + signal number
            code = -(code - 128)
        elapsed = time.monotonic() - start
        return RunResult(code, stdout, stderr, timed_out, trunc_out or trunc_err, mode, elapsed, setup_error)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(io_dir, ignore_errors=True)


@functools.cache
def sandbox_setup() -> tuple[str, str]:
    """(python, isolation mode) for this machine, probed once: the first interpreter that runs in
    the full sandbox wins; with none, namespaces are reported unavailable (loudly)."""
    candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3") or "python3"]
    modes = ["none"] if os.environ.get("DISTILL_SANDBOX_ISOLATION") == "none" else ["namespaces", "none"]
    probe = "import json, socket\nprint('ok')"
    for mode in modes:
        for python in dict.fromkeys(candidates):
            result = _execute(probe, "", Limits(timeout_s=30), python, mode)
            if result.returncode == 0 and result.stdout.strip() == "ok":
                if mode != "namespaces":
                    log.warning(
                        "SANDBOX NOT ISOLATED: no network/pid/mount namespaces; model code runs "
                        "with rlimits and a dropped uid only"
                    )
                return python, mode
            log.info("sandbox probe failed (%s, %s): %s", python, mode, result.stderr[-300:])
    raise RuntimeError("no Python interpreter runs in the sandbox on this machine")


def run_program(source: str, stdin: str = "", limits: Limits = DEFAULT_LIMITS) -> RunResult:
    """Run `source` as a Python program in the sandbox, feeding it `stdin`."""
    try:
        python, mode = sandbox_setup()
    except RuntimeError as e:
        return RunResult(None, "", "", False, False, "none", 0.0, str(e))
    return _execute(source, stdin, limits, python, mode)
