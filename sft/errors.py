"""The one error type the CLI turns into a single clear line (problem + fix), exit code 2."""


class UsageError(Exception):
    pass
