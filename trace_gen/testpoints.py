"""Named points where a crash test stops this process at an exact moment (kill -9 at a chosen point).

Unset in normal use: each point costs one environment lookup. Tests set, in the environment of the
process under test:
- `DISTILL_CRASH_AT=NAME[:K]`: the K-th time (default 1) the process passes point NAME it sends
  itself SIGKILL, exactly as `kill -9` from outside at that moment would;
- `DISTILL_PAUSE_AT=NAME[:K]` with `DISTILL_PAUSE_FILE=PATH`: instead it creates PATH and blocks until
  killed, so the test can kill a whole job (e.g. a Ray driver and its workers) while it stands there.

Points: `commit:parts` (a batch's Parquet parts are written, its manifest line is not),
`commit:manifest` (the manifest line is written and synced), `retarget:parts` / `retarget:manifest`
(the same two moments when a rerun with another --n moves rows), `outdir:before_rename` (a merged or
filtered directory is complete in its temporary place). sft's points are listed in sft/saving.py.
"""

import os
import signal
import threading
from collections import Counter
from pathlib import Path

_passes: Counter = Counter()


def _wanted(variable: str, name: str) -> bool:
    spec = os.environ.get(variable)
    if not spec:
        return False
    point, _, k = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "1")
    return point == name and _passes[(variable, name)] == int(k)


def crash_point(name: str) -> None:
    """Pass the point `name` (see the module docstring)."""
    if not (os.environ.get("DISTILL_CRASH_AT") or os.environ.get("DISTILL_PAUSE_AT")):
        return
    for variable in ("DISTILL_CRASH_AT", "DISTILL_PAUSE_AT"):
        _passes[(variable, name)] += 1
    if _wanted("DISTILL_CRASH_AT", name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _wanted("DISTILL_PAUSE_AT", name):
        Path(os.environ["DISTILL_PAUSE_FILE"]).touch()
        threading.Event().wait()  # until killed
