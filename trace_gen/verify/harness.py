"""The program the code sandbox starts: set the sandbox up, then run model code under a test harness.

`trace_gen.verify.sandbox` passes this file's source to `python -I -c` (compiled under the name
"<distill-harness>"); it is never imported. argv: run_dir uid cpu_s as_mb fsize_mb nproc mode
job_fd token_fd report_fd visible... It imports nothing from the toolkit.

1. As the namespaces' root (mode "namespaces"): pivot into a new root (`new_root`) that holds the
   `visible` directories read-only, the run directory, fresh tmpfs scratch, a minimal /dev and this
   pid namespace's /proc; fork. The parent (the namespace's init, undumpable so the child cannot
   trace it) closes the harness's descriptors, waits, and exits with the child's status (128 +
   signal number when a signal killed it).
2. The child sets rlimits (CPU, address space, file size, processes, open files, no core),
   no_new_privs, empties the capability bounding set, drops to the run's uid (as root), drops every
   remaining capability (effective, permitted, inheritable, ambient: as non-root it is root of its
   user namespace and would otherwise hold them all there) and checks /proc/self/status says so,
   reads its job (JSON) from job_fd, installs an audit hook (PEP 578: Python code cannot remove it)
   and runs the job:
   - "program": the model's program as __main__ (stdin/stdout tests: the caller compares output);
   - "humaneval": prompt + completion, then the test code ("<distill-tests>"), then
     `check(entry_point)`. Only when `check` returns does the harness read the run's token from
     token_fd (a pipe the caller filled before the start; nothing of it is in memory before) and
     write "PASS <token>" to report_fd, then `os._exit(0)` (no atexit hook, finaliser or thread of
     the model runs after that). Everything else is reported as a "RESULT <verdict> <reason>" line.
   The audit hook writes "FLAG <kind>:<detail>" for what the model attempted (file writes outside
   its directory, network, signals, new processes) and "TAMPER <what>" for attempts on the harness
   (those are also blocked: the operation raises PermissionError).

Threat model (HumanEval-style tests run in the model's own interpreter, so the model's code can do
anything the harness can):
- Ends the run early (sys.exit/exit/quit/raise SystemExit, os._exit, a signal with a handler that
  exits 0, an atexit hook, a sys.excepthook that exits 0 after a failed assertion, a thread that
  exits): no PASS line, so the caller's verdict is "failed: exited before the tests finished".
  This is structural: a pass is never inferred from an exit status.
- Tampers with what the tests use: rebinding a builtin (builtins.abs = ...), an attribute of a
  module the harness imported first (math.isclose = ...), `__builtins__` of the module, a builtin
  name the tests use shadowed by a global (def abs(x): ...), a module the tests use replaced by
  another object, `check` not being the tests' own function: detected after `check` returns
  (identity snapshots taken before the model's code ran) and reported as TAMPER.
- Tampers with the machinery: sys.settrace/setprofile (skipping asserts), gc.get_objects/referrers
  (finding the harness's objects), ctypes, sys._current_frames, reading or replacing the `__code__`
  of test or harness functions, asking for a frame of the tests or the harness (sys._getframe,
  inspect.currentframe/stack, tb_frame/gi_frame), compiling code under the harness's file names,
  listing /proc/self/fd or opening the harness's descriptors: blocked and reported as TAMPER.
- Rigged values: a returned object whose class defines its own __eq__/__ne__/__bool__/ordering/
  __hash__/__len__/__contains__ (always-equal objects), or unittest.mock.ANY: reported as TAMPER.
- Gets the harness to run its code while the harness is not watching (its own code runs with the
  audit hook quiet): the harness runs on a private copy of the builtins, calls only functions it
  captured before the model's code ran, never calls str()/repr() of the model's objects and reads
  classes through type's own descriptors (a metaclass property of the model's never runs).
- Takes the token: a harness that regains control and finds the token pipe empty reports TAMPER.
What remains possible (and is documented, not prevented): a program that deliberately probes raw
descriptor numbers with os.read/os.write (not audited by CPython), reads the token, writes a PASS
line itself and exits before the harness runs again (tests/verify/test_code_hacks.py pins this); a
program that gets a frame of its own (e.g. from traceback.walk_tb of an
exception it caught) can follow f_back (not audited in CPython 3.11) to the tests' frames and read
them; an __eq__ written in C or compiled under another library file's name is not recognised; a
module first imported by the model can be patched before the tests import it. None of these is a
reward hack a model stumbles into; each takes deliberate work against this harness.
"""

import os
import sys

SETUP_FAILED_EXIT = 97
HARNESS_FILE, TESTS_FILE, PROGRAM_FILE = "<distill-harness>", "<distill-tests>", "main.py"
PROTECTED_FILES = (HARNESS_FILE, TESTS_FILE)
# imported before the model's code, so rebinding one of their attributes is detectable afterwards
SNAPSHOT_MODULES = [
    "math",
    "cmath",
    "re",
    "string",
    "collections",
    "itertools",
    "functools",
    "operator",
    "heapq",
    "bisect",
    "copy",
    "fractions",
    "decimal",
    "random",
    "hashlib",
    "typing",
]
BLOCKED = {
    "sys.settrace": "set a trace function",
    "sys.setprofile": "set a profile function",
    "sys._current_frames": "read the frames of every thread",
    "gc.get_objects": "listed every live object",
    "gc.get_referrers": "searched the object graph",
    "gc.get_referents": "searched the object graph",
}
NETWORK = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind", "socket.getaddrinfo"}
NETWORK |= {"socket.gethostbyname", "socket.gethostbyaddr"}
SPAWN = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
SIGNALS = {"os.kill", "os.killpg", "signal.pthread_kill"}
FILE_CHANGES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink"}
FILE_CHANGES |= {"os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}
FRAME_ATTRS = {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}
RIGGABLE = ("__eq__", "__ne__", "__bool__", "__len__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__")
RIGGABLE += ("__contains__", "__float__", "__int__", "__index__")
PLAIN_TYPES = (int, float, complex, bool, str, bytes, type(None))
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE = 1 << 18
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}  # no libc wrapper
DEVICES = ("null", "zero", "full", "random", "urandom")


class Quiet:
    """The threads now running the harness's own code (or its audit hook): their events are not the model's."""

    def __init__(self, get_ident):
        self.threads: set[int] = set()
        self.get_ident = get_ident

    def on(self) -> None:
        self.threads.add(self.get_ident())

    def off(self) -> None:
        self.threads.discard(self.get_ident())

    def active(self) -> bool:
        return self.get_ident() in self.threads


def fail(msg: str) -> None:
    sys.stderr.write("SANDBOX SETUP FAILED: " + msg + "\n")
    sys.stderr.flush()
    os._exit(SETUP_FAILED_EXIT)


def set_up(argv: list[str]) -> tuple[str, dict, int, int]:
    """New root, fork (the parent waits and never returns), limits, uid and capability drop;
    (run_dir, job, token, report)."""
    import ctypes
    import json
    import random
    import resource

    run_dir, uid, cpu_s, as_mb, fsize_mb, nproc, mode, job_fd, token_fd, report_fd, *visible = argv
    uid, cpu_s, as_mb, fsize_mb, nproc = int(uid), int(cpu_s), int(as_mb), int(fsize_mb), int(nproc)
    fds = [int(job_fd), int(token_fd), int(report_fd)]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if mode == "namespaces":
            new_root(libc, run_dir, max(uid, 0), fsize_mb, visible)
        os.chdir(run_dir)
        pid = os.fork()
    except Exception as e:
        fail(repr(e))
    if pid:
        for fd in fds:
            os.close(fd)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the child cannot ptrace this root process
        _, status = os.waitpid(pid, 0)
        os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    try:
        for res, val in (
            (resource.RLIMIT_CPU, cpu_s),
            (resource.RLIMIT_AS, as_mb << 20),
            (resource.RLIMIT_FSIZE, fsize_mb << 20),
            (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_NOFILE, 256),
            (resource.RLIMIT_CORE, 0),
        ):  # CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard one
            resource.setrlimit(res, (val, val + 1 if res == resource.RLIMIT_CPU else val))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            fail("prctl no_new_privs")
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        for cap in range(last_cap + 1):  # the bounding set (needs CAP_SETPCAP: checked below)
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
        libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        if uid >= 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if 0 in os.getresuid() or 0 in os.getresgid():
                fail("could not drop root")
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:  # effective, permitted, inheritable: none
            fail(f"capset: {os.strerror(ctypes.get_errno())}")
        with open("/proc/self/status") as f:
            caps = dict(line.split(":") for line in f if line.startswith("Cap"))
        kept = [k for k, v in caps.items() if int(v, 16) and (k != "CapBnd" or mode == "namespaces")]
        if kept:
            fail(f"capabilities left after dropping them all: {kept}")
        with os.fdopen(fds[0], "rb") as f:
            job = json.loads(f.read())
        moved = []
        for fd in fds[1:]:  # to numbers that are not the next free ones
            target = random.choice([n for n in range(64, 250) if n not in moved])
            os.dup2(fd, target, inheritable=False)
            os.close(fd)
            moved.append(target)
    except Exception as e:
        fail(repr(e))
    return run_dir, job, moved[0], moved[1]


def new_root(libc, run_dir: str, owner: int, fsize_mb: int, visible: list[str]) -> None:
    """As the namespaces' root: pivot into a fresh tmpfs that holds only `visible` (bound read-only;
    a symlink such as /bin -> usr/bin is copied as a symlink), a tmpfs at `run_dir` owned by `owner`
    holding a copy of its main.py, fresh tmpfs on /tmp, /var/tmp, /dev/shm, a /dev of null, zero,
    full, random, urandom, and this pid namespace's /proc. The old root is detached: no mount of the
    host is left to uncover, and nothing the program writes reaches a disk (each tmpfs holds
    `fsize_mb`)."""
    import ctypes
    import platform
    import re

    def mount(source, target: str, fstype, flags: int, data=None) -> None:
        args = [None if a is None else a.encode() for a in (source, target, fstype, data)]
        if libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
            fail(f"mount {source} on {target}: {os.strerror(ctypes.get_errno())}")

    pivot_root = PIVOT_ROOT.get(platform.machine())
    if pivot_root is None:
        fail(f"no pivot_root syscall number for {platform.machine()}")
    new = "/tmp"  # any directory: the new root is a tmpfs mounted over it, the old one detached
    with open(run_dir + "/main.py", "rb") as f:  # for tracebacks
        program = f.read()
    paths = [d for d in visible if not os.path.islink(d)] + ["/proc"]
    paths += [f"/dev/{n}" for n in DEVICES if os.path.exists(f"/dev/{n}")]
    sources = {p: os.open(p, os.O_PATH) for p in paths}  # still reachable once tmpfs hide them
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    scratch = f"size={fsize_mb}m,mode=1777"
    for d, options in (("/tmp", scratch), ("/var/tmp", scratch), ("/dev", "size=1m,mode=755")):
        os.makedirs(new + d)
        mount("tmpfs", new + d, "tmpfs", MS_NOSUID | MS_NODEV | (MS_NOEXEC if d == "/dev" else 0), options)
    os.makedirs(new + "/dev/shm")
    mount("tmpfs", new + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, scratch)
    for name, target in (("fd", ""), ("stdin", "/0"), ("stdout", "/1"), ("stderr", "/2")):
        os.symlink("/proc/self/fd" + target, f"{new}/dev/{name}")
    for d in visible:
        if os.path.islink(d):
            os.makedirs(os.path.dirname(new + d), exist_ok=True)
            os.symlink(os.readlink(d), new + d)
    for path, fd in sources.items():
        if path.startswith("/dev/"):
            open(new + path, "x").close()
        else:
            os.makedirs(new + path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", new + path, None, MS_BIND | MS_REC)
        os.close(fd)
    os.makedirs(new + run_dir, exist_ok=True)
    options = f"size={fsize_mb}m,mode=700,uid={owner},gid={owner}"
    mount("tmpfs", new + run_dir, "tmpfs", MS_NOSUID | MS_NODEV, options)
    with open(new + run_dir + "/main.py", "xb") as f:
        f.write(program)
    os.chown(new + run_dir + "/main.py", owner, owner)
    with open("/proc/self/mountinfo") as f:  # every mount of a visible directory, submounts too
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f]
    for point in points:
        under = [d for d in (*visible, run_dir) if point == new + d or point.startswith(new + d + "/")]
        if under and max(under, key=len) != run_dir:  # the run directory (maybe in one) stays writable
            locked = os.statvfs(point).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)  # must be kept
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | locked)
    os.chdir(new)
    if libc.syscall(pivot_root, b".", b".") != 0:
        fail(f"pivot_root: {os.strerror(ctypes.get_errno())}")
    if libc.umount2(b".", 2) != 0:  # MNT_DETACH: the old root, now stacked under the new one
        fail(f"detach the old root: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")
    mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def main() -> None:
    run_dir, job, token_fd, report_fd = set_up(sys.argv[1:])
    import _thread
    import builtins
    import types

    # Everything the harness calls after the model's code started is captured here, before it: the
    # model can rebind module attributes (sys._getframe, types.ModuleType, ...) but not these locals,
    # and the harness's own builtins are a private copy (see sandbox._BOOT).
    write, read, exit_now, get_ident, getframe = os.write, os.read, os._exit, _thread.get_ident, sys._getframe
    function_type, module_type, code_type = types.FunctionType, types.ModuleType, types.CodeType
    modules, stdout, stderr = sys.modules, sys.__stdout__, sys.__stderr__
    busy = Quiet(get_ident)  # threads whose audit events are the harness's own, not the model's
    seen: set[str] = set()
    tampered: list[str] = []
    stdlib = os.path.dirname(os.__file__) + "/"
    stack_apis = (stdlib + "inspect.py", stdlib + "traceback.py")
    private_fds = {str(token_fd), str(report_fd)}

    def report(line: str) -> None:
        write(report_fd, (line.replace("\n", " ")[:300] + "\n").encode("utf-8", "replace"))

    def flag(kind: str, detail: str = "") -> None:
        key = f"{kind}:{detail}" if detail else kind
        if key not in seen and len(seen) < 50:
            seen.add(key)
            report(f"FLAG {key}")

    def tamper(what: str, block: bool = True) -> None:
        tampered.append(what)
        if what not in seen:
            seen.add(what)
            report(f"TAMPER {what}")
        if block:
            raise PermissionError(f"blocked by the sandbox: {what}")

    def is_model(code) -> bool:
        name = code.co_filename
        return name not in PROTECTED_FILES and not (name.startswith(stdlib) and "site-packages" not in name)

    def originator(frame):
        """The frame that asked: the caller, or whoever called inspect/traceback."""
        while frame is not None and frame.f_code.co_filename in stack_apis:
            frame = frame.f_back
        return frame

    def outside(path) -> bool:
        try:
            path = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return not (path == run_dir or path.startswith(run_dir + "/") or path.startswith("/dev/null"))

    def frame_taken_by_model(event: str, args: tuple) -> str | None:
        """For frame and code accesses: what the model took from the tests or the harness, or None."""
        caller = getframe(2)  # 0: this function, 1: the hook, 2: the code that raised the event
        asker = originator(caller)
        by_model = asker is not None and is_model(asker.f_code)
        if event == "sys._getframe":
            via_stack_api = caller.f_code.co_filename in stack_apis
            return "read the call stack" if by_model and (asker is caller or via_stack_api) else None
        obj, name = args
        if name == "__code__" and type(obj) is function_type:
            return (
                f"read the code of {obj.__qualname__}"
                if obj.__code__.co_filename in PROTECTED_FILES
                else None
            )
        if name in FRAME_ATTRS:
            target = getattr(obj, name)  # obj is a traceback, generator or coroutine (audited C members)
            protected = target is not None and target.f_code.co_filename in PROTECTED_FILES
            if by_model and (asker is caller or protected):
                return "took a frame of the tests or the harness"
        return None

    def hook(event: str, args: tuple) -> None:
        if busy.active():
            return
        if event == "open":
            path, mode, flags = args
            if type(path) is int or any(f"/fd/{n}" in os.fsdecode(path) for n in private_fds):
                if str(path) in private_fds or type(path) is not int:
                    tamper("opened the harness's descriptors")
                return
            writing = (mode and any(c in mode for c in "wax+")) or (flags or 0) & (
                os.O_WRONLY | os.O_RDWR | os.O_CREAT
            )
            if writing and outside(path):
                flag("write_outside_workdir", os.fsdecode(path)[:80])
        elif event in FILE_CHANGES:
            if args and outside(args[0]):
                flag("write_outside_workdir", f"{event} {os.fsdecode(args[0])[:80]}")
        elif event in NETWORK:
            flag("network", event.split(".", 1)[1])
        elif event in SPAWN:
            flag("spawn", event.split(".", 1)[1])
        elif event in SIGNALS:
            flag("signal", event.split(".", 1)[1])
        elif event in BLOCKED:
            tamper(BLOCKED[event])
        elif event.startswith("ctypes."):
            tamper("used ctypes")
        elif event in ("os.listdir", "os.scandir") and type(args[0]) in (str, bytes):
            if "/fd" in os.fsdecode(args[0]):
                tamper("listed open descriptors")
        elif event == "compile" and args[1] in PROTECTED_FILES:
            tamper("compiled code under the harness's file name")
        elif event == "object.__setattr__" and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
            if type(args[0]) is function_type:
                new_code = args[2] if args[1] == "__code__" and type(args[2]) is code_type else None
                busy.on()
                try:
                    protected = args[0].__code__.co_filename in PROTECTED_FILES or (
                        new_code is not None and new_code.co_filename in PROTECTED_FILES
                    )
                finally:
                    busy.off()
                if protected:
                    tamper(f"replaced {args[1]} of {args[0].__qualname__}")
        elif event in ("object.__getattr__", "sys._getframe"):
            busy.on()
            try:
                what = frame_taken_by_model(event, args)
            finally:
                busy.off()
            if what:
                tamper(what)

    sys.dont_write_bytecode = True  # imports must not write .pyc files outside the run directory
    for name in SNAPSHOT_MODULES:
        __import__(name)
    module_snapshot = {name: (modules[name], dict(vars(modules[name]))) for name in SNAPSHOT_MODULES}
    builtins_snapshot = dict(vars(builtins))
    main_module = module_type("__main__")  # the model's module; the harness's own is not reachable
    main_module.__file__ = PROGRAM_FILE
    main_module.__builtins__ = builtins
    g = vars(main_module)
    modules["__main__"] = main_module
    sys.argv = [PROGRAM_FILE]
    sys.path.insert(0, "")
    program = compile(job["program"], PROGRAM_FILE, "exec")
    del job["program"]
    test_names = test_globals(job["test"], code_type) if job["mode"] == "humaneval" else set()
    sys.addaudithook(hook)
    if job["mode"] == "program":
        exec(program, g)
        return

    def audit_state() -> None:
        busy.on()
        verify_state(g, job, module_snapshot, builtins_snapshot, test_names, modules, module_type, tamper)

    def finish(verdict: str, reason: str) -> None:
        busy.on()
        for stream in (stdout, stderr):
            try:
                stream.flush()
            except Exception:  # the model may have closed them
                continue
        if "test_names" in job:
            audit_state()  # name the tampering behind a failure too
        try:  # the token is still there unless the program took it (to write a PASS line itself)
            if not read(token_fd, 256):
                tamper("read the harness's token", block=False)
        except OSError:
            tamper("read the harness's token or closed its descriptor", block=False)
        if tampered:
            verdict, reason = "failed", "tampered with the test harness: " + tampered[0]
        report(f"RESULT {verdict} {reason}")
        exit_now(1)

    inspect_value = value_inspector(busy, tamper, function_type)
    run_tests(job, g, program, busy, tamper, finish, inspect_value)
    audit_state()
    if tampered:
        finish("failed", "")
    for stream in (stdout, stderr):
        try:
            stream.flush()
        except Exception:
            continue
    try:
        token = read(token_fd, 256).decode()
    except OSError:
        token = ""
    if not token:  # the pipe was emptied or closed: the program took the token first
        report("TAMPER read the harness's token")
        report("RESULT failed tampered with the test harness: read the harness's token")
        exit_now(1)
    report("PASS " + token)
    exit_now(0)


def outcome(exc: BaseException, stage: str) -> tuple[str, str]:
    """(verdict, reason) of an exception out of the model's code or the tests. Only the exception's
    type is looked at (its __str__, __class__ or attributes could run the model's code)."""
    kind = type(exc)
    name = type.__dict__["__name__"].__get__(kind)
    if issubclass(kind, (SystemExit, KeyboardInterrupt, GeneratorExit)):
        return "failed", f"exited before the tests finished ({name} {stage})"
    if issubclass(kind, AssertionError):
        return "failed", "assertion failed"
    if issubclass(kind, MemoryError):
        return "crashed", "memory limit exceeded"
    return "crashed", f"raised {name} {stage}"


def run_tests(job, g, program, busy, tamper, finish, inspect_value) -> None:
    """Define the model's code and the tests, call check(entry_point); return only when it returned."""
    try:
        exec(program, g)
    except BaseException as exc:  # every way out of the model's code is a verdict
        finish(*outcome(exc, "while defining the solution"))
    busy.on()
    before, absent = dict(g), object()
    try:
        exec(compile(job["test"], TESTS_FILE, "exec"), g)
        check, candidate = g.get("check"), g.get(job["entry_point"])
    except BaseException as exc:
        finish(*outcome(exc, "while defining the tests"))
    job["test_names"] = {k: v for k, v in g.items() if before.get(k, absent) is not v}
    if type(check) is not type(run_tests) or check.__code__.co_filename != TESTS_FILE:
        tamper("check is not the tests' own function", block=False)
        finish("failed", "")
    if candidate is None:
        finish("failed", f"the solution does not define {job['entry_point']}")

    def entry(*args, **kwargs):
        result = candidate(*args, **kwargs)
        inspect_value(result)
        return result

    busy.off()
    try:
        check(entry)
    except BaseException as exc:
        finish(*outcome(exc, "during the tests"))
    busy.on()


def value_inspector(busy, tamper, function_type):
    """A function that reports a returned value whose class rigs comparison or truth (always-equal).

    Reads classes only through type's own descriptors: a metaclass property of the model's must not
    run while the harness inspects."""
    mro_of, name_of = type.__dict__["__mro__"].__get__, type.__dict__["__qualname__"].__get__
    dict_of = type.__dict__["__dict__"].__get__
    wrappers = (staticmethod, classmethod)
    c_slots = (type(object.__eq__), type(str.join), type(type.__dict__["__name__"]))

    def rigged(klass) -> str | None:
        for base in mro_of(klass):
            namespace = dict_of(base)
            module = namespace.get("__module__")
            if module is None or module == "builtins":
                continue
            if type(module) is str and module.startswith("unittest.mock"):
                return f"returned a {name_of(base)} (unittest.mock), which equals anything"
            for name in RIGGABLE:
                attr = namespace.get(name)
                if attr is None:
                    continue
                if type(attr) in wrappers:
                    attr = attr.__func__
                if type(attr) is function_type:
                    if attr.__code__.co_filename in (PROGRAM_FILE, "<string>"):
                        return f"returned a {name_of(base)} whose {name} is its own"
                elif type(attr) not in c_slots:
                    return f"returned a {name_of(base)} whose {name} is a {name_of(type(attr))}"
        return None

    def inspect_value(value) -> None:
        was = busy.active()
        busy.on()
        try:
            stack, budget = [value], 2000
            while stack and budget:
                budget -= 1
                item = stack.pop()
                kind = type(item)
                if kind in PLAIN_TYPES:
                    continue
                if kind in (list, tuple, set, frozenset):
                    stack.extend(item)
                elif kind is dict:
                    stack.extend(item.keys())
                    stack.extend(item.values())
                elif why := rigged(kind):
                    tamper(why, block=False)
                    return
        finally:
            if not was:
                busy.off()

    return inspect_value


def verify_state(
    g, job, module_snapshot, builtins_snapshot, test_names, modules, module_type, tamper
) -> None:
    """After check returned: the builtins, the snapshotted modules and the tests' own names unchanged."""
    real_builtins = builtins_snapshot[
        "__build_class__"
    ].__self__  # not `import builtins`: sys.modules is the model's
    builtins_dict = real_builtins.__dict__
    for name, value in builtins_snapshot.items():
        if builtins_dict.get(name) is not value:
            tamper(f"rebound builtins.{name}", block=False)
    for module, (original, snapshot) in module_snapshot.items():
        if modules.get(module) is not original:
            tamper(f"replaced module {module} in sys.modules", block=False)
            continue
        current = original.__dict__
        for name, value in snapshot.items():
            if current.get(name) is not value:
                tamper(f"rebound {module}.{name}", block=False)
    if not any(g.get("__builtins__") is b for b in (real_builtins, builtins_dict)):
        tamper("replaced __builtins__ of the solution's module", block=False)
    for name, value in job.get("test_names", {}).items():
        if g.get(name) is not value:
            tamper(f"rebound {name} of the tests", block=False)
    for name in test_names:
        value = g.get(name)
        if name in builtins_snapshot and name in g and name not in job.get("test_names", {}):
            tamper(f"shadowed builtin {name}, which the tests use", block=False)
        if type(value) is module_type and modules.get(value.__dict__.get("__name__")) is not value:
            tamper(f"replaced module {name}, which the tests use", block=False)


def test_globals(test: str, code_type) -> set[str]:
    """Global names the test code reads (its code objects' co_names, recursively)."""
    names, stack = set(), [compile(test, TESTS_FILE, "exec")]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if type(c) is code_type)
    return names


if __name__ == "__main__":
    main()
