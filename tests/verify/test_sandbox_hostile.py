"""Hostile programs: each is contained, gets a verdict, and leaves the host unchanged.

Host checks after every run: sentinel files outside the sandbox (in /tmp, in this repository and in
the user's home directory) still exist with their content; no process of the run survives; the
toolkit process is alive; an environment secret of the parent never appears in the output; a
listening socket on the host's loopback received no connection.

As root the sandbox runs code as a throw-away uid; as any other user it runs as that user's own uid
(root of a user namespace, no uid of its own exists), so the uid checks apply to root only and the
run's processes are found by their pid namespace instead. Everything else holds for both. As
non-root the program would hold every capability of its user namespace if the sandbox did not drop
them: the tests of the sandbox's root, capabilities, mounts and nested namespaces matter most there.
Run them as a non-root user too (from root): copy the checkout into that user's home, chown it, and
`runuser -u USER -- env PYTHONPATH=COPY:SITE_PACKAGES python3 -m pytest tests/verify`.
"""

import json
import os
import socket
import time
from pathlib import Path

import pytest

from trace_gen.verify.benchmarks import REPO_ROOT
from trace_gen.verify.code import verdict_from_run
from trace_gen.verify.sandbox import Limits, run_program, sandbox_setup

ROOT = os.geteuid() == 0
SECRET = "distill-test-secret-7f3a9c"
LIMITS = Limits(timeout_s=3, cpu_s=5)  # for programs that must be stopped (they never end by themselves)
ROOMY = Limits(timeout_s=60, cpu_s=5)  # for programs that end by themselves: room for a loaded machine
# what the sandbox's root may hold: system directories, /proc, /dev, scratch (and the interpreter's prefix)
SANDBOX_ROOT = {
    "usr",
    "bin",
    "sbin",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "etc",
    "nix",
    "proc",
    "dev",
    "tmp",
    "var",
}
UID_LINE = (
    'import functools, os, sys\nprint = functools.partial(print, flush=True)\nprint("UID", os.getuid())\n'
)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Sentinels in /tmp and in the repo, a secret in the environment, a listener on loopback."""
    monkeypatch.setenv("DISTILL_SECRET_TOKEN", SECRET)
    name = f".sandbox-sentinel-{os.getpid()}"
    sentinels = [tmp_path / "sentinel.txt", REPO_ROOT / name, Path.home() / name]
    for path in sentinels:
        path.write_text("untouched")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    yield {"sentinels": sentinels, "port": listener.getsockname()[1], "listener": listener}
    for path in sentinels:
        assert path.read_text() == "untouched", f"{path} was changed from inside the sandbox"
        path.unlink()
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()


def _run(source: str, host: dict, limits: Limits = ROOMY):
    for i, path in enumerate(host["sentinels"]):
        source = source.replace(f"SENTINEL{i}", str(path))
    source = source.replace("PORT", str(host["port"])).replace("PARENT_PID", str(os.getpid()))
    result = run_program(UID_LINE + source, "", limits)
    uid_lines = [line for line in result.stdout.splitlines() if line.startswith("UID ")]
    assert uid_lines, f"program did not start: {result}"
    uid = int(uid_lines[0].split()[1])
    if ROOT:
        assert uid != 0 and uid != os.getuid(), "sandboxed code must not run as the toolkit's user"
    # the kernel kills what is left in the run's pid namespace asynchronously: wait for it, within reason
    give_up = time.monotonic() + 30
    while (leftovers := _processes_of_the_run(uid)) and time.monotonic() < give_up:
        time.sleep(0.05)
    assert not leftovers, f"processes of the sandbox survived: {leftovers}"
    assert SECRET not in result.stdout + result.stderr, "environment secret leaked"
    return result, verdict_from_run(result)


def _processes_of_the_run(uid: int) -> list[str]:
    """Host pids of a run: as root, those of its throw-away uid; else ours in another pid namespace."""
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    if ROOT:
        return [p for p in pids if _uid_of(p) == uid]
    ours = os.readlink("/proc/self/ns/pid")
    return [p for p in pids if _uid_of(p) == os.getuid() and _pid_namespace(p) not in (None, ours)]


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _pid_namespace(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


@pytest.mark.skipif(not ROOT, reason="as non-root, sandboxed code runs as the user's own uid (needs root)")
def test_code_runs_as_a_throwaway_uid(host):
    result, verdict = _run("print('hello')\n", host)
    uid = int(result.stdout.split()[1])
    assert verdict.verdict == "passed" and uid not in (0, os.getuid()) and "hello" in result.stdout


def test_fork_bomb_is_contained(host):
    src = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    _, verdict = _run(src, host, LIMITS)
    assert verdict.verdict in {"timeout", "crashed"} and "spawn:fork" in verdict.flags


def test_detached_daemon_does_not_survive_the_run(host):
    src = "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(600)\nprint('parent done')\n"
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed" and "parent done" in result.stdout and "spawn:fork" in verdict.flags


def test_infinite_loop_is_killed(host):
    _, verdict = _run("while True:\n    pass\n", host, LIMITS)
    assert verdict.verdict == "timeout"


def test_cpu_limit_applies_inside_the_wall_clock(host):
    _, verdict = _run("while True:\n    pass\n", host, Limits(timeout_s=60, cpu_s=1))
    assert verdict == verdict.__class__("timeout", "CPU time limit exceeded", ("cpu_cap",))


def test_memory_bomb_is_refused(host):
    _, verdict = _run("x = [bytearray(64 << 20) for _ in range(1000)]\n", host, Limits(timeout_s=30))
    assert verdict.verdict == "crashed" and "memory" in verdict.reason and "memory_cap" in verdict.flags


def test_files_outside_the_temp_dir_cannot_be_changed(host):
    src = (
        "import shutil\n"
        "for p in ['SENTINEL0', 'SENTINEL1']:\n"
        "    for op in (lambda: os.remove(p), lambda: open(p, 'w').write('pwned')):\n"
        "        try:\n            op(); print('DID', p)\n        except OSError as e:\n            print('denied', e)\n"
        "for p in ['/etc/distill-sbx-probe', '/root/.bashrc']:\n"
        "    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n    except OSError as e:\n        print('denied', e)\n"
        "open('/tmp/distill-sbx-escape', 'w').write('only in the private /tmp')\n"
        "shutil.rmtree('/etc', ignore_errors=True)\n"
        "open('local.txt', 'w').write('fine: inside the temp dir')\n"
    )
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed", result.stderr
    assert "WROTE" not in result.stdout
    assert "write_outside_workdir:/etc/distill-sbx-probe" in verdict.flags
    assert any(f.startswith("write_outside_workdir:os.remove") for f in verdict.flags), verdict.flags
    assert not Path("/etc/distill-sbx-probe").exists() and Path("/etc/passwd").exists()
    assert not Path("/tmp/distill-sbx-escape").exists()


def test_the_sandbox_root_holds_no_user_files(host):
    """The program's root is a fresh tmpfs holding the system's directories and the interpreter's
    prefix (read-only), its run directory and scratch tmpfs: not the repository, the caller's /tmp
    or the user's home (except the path down to the interpreter, when it is installed there)."""
    prefix = Path(os.path.realpath(sandbox_setup()[0])).parents[1]
    src = (
        "import json\n"
        "paths = ['SENTINEL0', 'SENTINEL1', 'SENTINEL2', 'REPO', 'HOME']\n"
        "print('SEEN', json.dumps({p: sorted(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p)"
        " for p in ['/', *paths]}))\n"
    )
    src = src.replace("REPO", str(REPO_ROOT)).replace("HOME", str(Path.home()))
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed", result.stderr
    seen = json.loads(result.stdout.split("SEEN ", 1)[1])
    assert set(seen.pop("/")) <= SANDBOX_ROOT | {prefix.parts[1]}, result.stdout
    home = Path.home()  # absent, or (interpreter installed there) holding only the way down to it
    toward_prefix = [prefix.relative_to(home).parts[0]] if home in prefix.parents else []
    assert seen.pop(str(home)) in (False, toward_prefix), result.stdout
    assert not any(seen.values()), f"host paths visible in the sandbox: {seen}"


def test_the_program_holds_no_capabilities(host):
    """Neither as root nor as the root of its own user namespace (non-root): every set is empty."""
    src = "print(*[line for line in open('/proc/self/status') if line.startswith('Cap')], sep='')\n"
    result, verdict = _run(src, host)
    caps = dict(line.split(":") for line in result.stdout.splitlines() if line.startswith("Cap"))
    assert verdict.verdict == "passed" and len(caps) == 5, result.stdout + result.stderr
    assert {k: int(v, 16) for k, v in caps.items()} == dict.fromkeys(caps, 0), caps


def test_the_mounts_that_hide_the_host_cannot_be_removed(host):
    """The sandbox's own mounts (its root, /tmp, the read-only system directories) stay: unmounting or
    remounting them (umount and mount run; ctypes is blocked) fails without capabilities, and the
    host's files are not behind them anyway."""
    src = (
        "import subprocess\n"
        "points = [line.split()[4] for line in open('/proc/self/mountinfo')]\n"
        "def attempt(*cmd):\n"
        "    return subprocess.run(cmd, capture_output=True).returncode == 0\n"
        "for m in reversed(points):\n"
        "    print('UNMOUNTED' if attempt('umount', '-l', m) else 'kept', m)\n"
        "for m in ['/usr', '/etc', '/']:\n"
        "    print('REMOUNTED' if attempt('mount', '-o', 'remount,bind,rw', m) else 'read-only', m)\n"
        "os.mkdir('/tmp/b')\n"
        "print('BOUND' if attempt('mount', '--bind', '/', '/tmp/b') else 'no bind')\n"
        "for p in ['SENTINEL0', 'SENTINEL1', 'SENTINEL2', '/usr/distill-sbx-probe']:\n"
        "    try:\n        open(p, 'a').write('pwned'); print('WROTE', p)\n"
        "    except OSError as e:\n        print('denied', e)\n"
    )
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed", result.stderr
    assert "kept /tmp" in result.stdout and "read-only /usr" in result.stdout, result.stdout
    for word in ("UNMOUNTED", "REMOUNTED", "BOUND", "WROTE"):
        assert word not in result.stdout, result.stdout
    assert "spawn:Popen" in verdict.flags and not Path("/usr/distill-sbx-probe").exists()


# run by a second interpreter the program starts (no audit hook there, so ctypes works): a new user and
# mount namespace, in which it holds every capability again (without an exec, which would drop them)
NESTED = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x20000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
    raise SystemExit(f"NO NESTED NAMESPACE: {os.strerror(ctypes.get_errno())}")
print([line for line in open("/proc/self/status") if line.startswith("CapEff")][0], end="")
for m in reversed([line.split()[4] for line in open("/proc/self/mountinfo")]):
    print("UNMOUNTED" if libc.umount2(m.encode(), 2) == 0 else "kept", m)  # MNT_DETACH
for m in ["/usr", "/etc", "/"]:  # MS_REMOUNT | MS_BIND, without MS_RDONLY
    print("REMOUNTED" if libc.mount(None, m.encode(), None, 32 | 4096, None) == 0 else "read-only", m)
os.makedirs("/tmp/b", exist_ok=True)
print("BOUND" if libc.mount(b"/", b"/tmp/b", None, 4096, None) == 0 else "no bind")  # / without submounts
for p in ["SENTINEL0", "SENTINEL1", "SENTINEL2", "/usr/distill-sbx-probe", "/tmp/b/usr/distill-sbx-probe"]:
    try:
        open(p, "a").write("pwned"); print("WROTE", p)
    except OSError as e:
        print("denied", e)
print("ROOT", *os.listdir("/"))
"""


def test_a_nested_user_namespace_uncovers_nothing(host):
    """unshare(CLONE_NEWUSER | CLONE_NEWNS) needs no capability and gives them all back, in a new user
    and mount namespace. The mounts inherited there are locked by the kernel: they cannot be unmounted,
    remounted writable, or bound without what is mounted on them; and the host's files are still not
    in the tree."""
    python = os.path.realpath(sandbox_setup()[0])
    src = (
        "import subprocess\n"
        f"out = subprocess.run([{python!r}, '-c', {NESTED!r}], capture_output=True, text=True)\n"
        "print(out.stdout, 'STDERR', out.stderr, 'RC', out.returncode)\n"
    )
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed", result.stderr
    if "NO NESTED NAMESPACE" in result.stdout:
        pytest.skip(f"the sandbox cannot create a nested user namespace here: {result.stdout}")
    assert int(result.stdout.split("CapEff:")[1].split()[0], 16) != 0, result.stdout  # all caps, in there
    assert "kept /tmp" in result.stdout and "read-only /usr" in result.stdout, result.stdout
    for word in ("UNMOUNTED", "REMOUNTED", "BOUND", "WROTE"):
        assert word not in result.stdout, result.stdout
    prefix = Path(python).parents[1]
    root = result.stdout.split("ROOT ")[1].splitlines()[0].split()
    assert set(root) <= SANDBOX_ROOT | {prefix.parts[1]}, result.stdout
    assert not Path("/usr/distill-sbx-probe").exists()


def test_sockets_cannot_reach_the_host_or_the_network(host):
    src = (
        "import socket\n"
        "for addr in [('127.0.0.1', PORT), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
        "    try:\n        socket.create_connection(addr, timeout=1); print('CONNECTED', addr)\n"
        "    except OSError as e:\n        print('blocked', addr, e)\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    s.sendto(b'x', ('8.8.8.8', 53)); print('SENT')\nexcept OSError as e:\n    print('blocked udp', e)\n"
    )
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed", result.stderr
    assert "CONNECTED" not in result.stdout and "SENT" not in result.stdout
    assert {"network:connect", "network:sendto"} <= set(verdict.flags), verdict.flags


def test_environment_and_parent_environment_hold_no_secrets(host):
    src = (
        "print(dict(os.environ))\n"
        "for p in ['/proc/1/environ', '/proc/PARENT_PID/environ', '/proc/self/environ']:\n"
        "    try:\n        print(open(p, 'rb').read())\n    except OSError as e:\n        print('denied', e)\n"
    )
    result, verdict = _run(src, host)
    assert verdict.verdict == "passed" and "DISTILL_SECRET_TOKEN" not in result.stdout


def test_killing_the_parent_fails_and_the_toolkit_survives(host):
    src = (
        "import signal\n"
        "for pid in [os.getppid(), PARENT_PID, 1, -1]:\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print('denied', pid, e)\n"
        "print('still here')\n"
    )
    _, verdict = _run(src, host)  # whatever it managed inside its own namespace, the host checks hold
    os.kill(os.getpid(), 0)
    assert "signal:kill" in verdict.flags


def test_huge_output_is_capped(host):
    result, verdict = _run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", host, LIMITS)
    assert verdict.verdict in {"crashed", "timeout"} and "output_cap" in verdict.flags
    assert len(result.stdout) <= LIMITS.output_bytes


def test_reload_os_and_ctypes_tricks_gain_nothing(host):
    src = (
        "import importlib\n"
        "os = importlib.reload(os)\n"
        "try:\n    os.setuid(0); print('ROOT')\nexcept PermissionError as e:\n    print('denied', e)\n"
        "try:\n    open('SENTINEL1', 'w').write('pwned')\nexcept OSError as e:\n    print('denied', e)\n"
        "try:\n    import ctypes\n    ctypes.CDLL(None).setuid(0); print('CTYPES')\n"
        "except PermissionError as e:\n    print('denied', e)\n"
        "import faulthandler\nfaulthandler._sigsegv()\n"  # segfault the interpreter
    )
    result, verdict = _run(src, host)
    assert "CTYPES" not in result.stdout
    if ROOT:  # as non-root the program already is uid 0 of its own user namespace (host files: see `host`)
        assert "ROOT" not in result.stdout
    assert "blocked by the sandbox: used ctypes" in result.stdout
    assert verdict.verdict == "failed" and "tamper:used ctypes" in verdict.flags, verdict
