"""The error types the CLI turns into a single clear line (problem + fix), exit code 2."""


class UsageError(Exception):
    """Bad flags or input: nothing was written."""


class BackendError(Exception):
    """The teacher backend failed (server unreachable, ...): committed batches are kept; rerun resumes."""


def unexpected_error_line(err: BaseException) -> str:
    """The one line a CLI prints for a library error its checks did not foresee (exit 1; --debug re-raises)."""
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return f"error: {type(err).__name__}: {first} (unexpected; rerun with --debug for the traceback)"
