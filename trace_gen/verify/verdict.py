"""The verdict every checker returns: a label, a human-readable reason, and what was flagged."""

from dataclasses import dataclass

# Labels (see ../shared/DESIGN.md): infrastructure failures are never counted as wrong answers.
MATH_VERDICTS = ("correct", "wrong", "unverifiable")
CODE_VERDICTS = ("passed", "failed", "timeout", "crashed", "sandbox_error")
KEPT_VERDICTS = frozenset({"correct", "passed"})


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    # what the code sandbox blocked or observed ("network:connect", "write_outside_workdir:/etc/x",
    # "signal:kill", "spawn:fork", "memory_cap", "output_cap", ...), also when the tests then passed
    flags: tuple[str, ...] = ()

    def __post_init__(self):
        assert self.verdict in MATH_VERDICTS + CODE_VERDICTS, f"unknown verdict {self.verdict!r}"

    @property
    def kept(self) -> bool:
        return self.verdict in KEPT_VERDICTS
