"""Output directories: checked before any work, and built whole or not at all.

`check_writable(path, flag)` refuses, in one line, an output path that is a file, lies under a file,
or sits in a directory this user cannot write, without creating anything (so a refused command leaves
nothing behind). `building(out)` yields a hidden temporary sibling to fill and renames it to `out`
when the block ends without an error (`merge` and `filter` write their outputs this way). While a
builder works it holds an flock on its temporary directory; any temporary sibling of `out` that is not
locked belongs to a killed builder and is removed by the next one.
"""

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trace_gen.errors import UsageError
from trace_gen.testpoints import crash_point

PARTIAL = ".partial-"  # .NAME.partial-XXXX: a directory being built for NAME


def check_writable(path: Path, flag: str) -> None:
    """UsageError unless `path` is a directory, or can be created as one, by this user."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a directory; give a directory path")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path} cannot be created: {existing} is a file; give a directory path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{flag} {path} cannot be written: no write permission in {existing}; choose another directory"
        )


def _remove_stale(out: Path) -> None:
    """Remove temporary siblings of `out` whose builder is gone (no flock held on them)."""
    for tmp in out.parent.glob(f".{out.name}{PARTIAL}*"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live builder holds it
        finally:
            os.close(fd)  # closing drops the lock we may have taken
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """A hidden temporary sibling of `out` to fill; renamed to `out` at the end (`out` must be absent
    or empty), removed on an error. Leftovers of killed builders are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL}", dir=out.parent))
    fd = os.open(tmp, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # released by the OS when this process dies
    try:
        yield tmp
        crash_point("outdir:before_rename")
        if out.exists():
            out.rmdir()  # empty (checked by the caller); a non-empty one fails here, loudly
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)
