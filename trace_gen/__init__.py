"""trace_gen: sample reasoning traces from a teacher, verify them, write them as a dataset.

As a library: `generate(RunConfig(...))` runs (or resumes) one run, the same object and function the
CLI (`python -m trace_gen`) and the Ray workers use; see trace_gen.config and trace_gen.run.
"""

from trace_gen.config import RunConfig
from trace_gen.run import generate

__all__ = ["RunConfig", "generate"]
