"""The error types the CLI turns into a single clear line (problem + fix), exit code 2."""


class UsageError(Exception):
    """Bad flags or input: nothing was written."""


class BackendError(Exception):
    """The teacher backend failed (server unreachable, ...): committed batches are kept; rerun resumes."""
