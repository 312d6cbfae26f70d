"""derl's errors: the CLI prints the message on one line and exits with the class's status.

0 done, 2 bad input, 3 non-finite values in training, 4 a checkpoint that could not be written,
130 stopped by Ctrl-C or SIGTERM (a checkpoint was written: `derl resume` continues). Scripts
can tell "fix the command" (2) from "the run diverged" (3) and "free some disk space, then
`derl resume`" (4).
"""


class DerlError(Exception):
    """An error the user can act on; its message says how, in one line."""

    exit_status = 1


class UsageError(DerlError, ValueError):
    """Bad input from the user: an env id, a flag, a value, a file or directory that cannot be
    used. Its message says how to fix it."""

    exit_status = 2


class NonFinite(DerlError):
    """A loss, gradient or parameter became NaN or infinite; no checkpoint holds such values."""

    exit_status = 3


class WriteError(DerlError):
    """A checkpoint could not be written (disk full, permission denied); earlier ones are intact."""

    exit_status = 4


def exit_status(exc: BaseException | None) -> int:
    """The status `derl` exits with after `exc` ends a run (None: it ended well)."""
    if exc is None:
        return 0
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return getattr(exc, "exit_status", 1)
