"""One process per logdir: `derl resume` of a run that is still going is refused.

The lock is an exclusive `flock` on LOGDIR/.lock. The kernel releases it when its process ends,
however it ends (kill -9 too), so a killed run never leaves a stale lock behind and can always be
resumed. The file holds the pid of its holder, for the message; it is never deleted (deleting it
would let a second process lock a new file while the first still holds the old one).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from derl.errors import UsageError

LOCK = ".lock"

_held: set[int] = set()  # lock fds of this process


def _close_in_child() -> None:
    # A forked child (an async env worker) shares the lock with its parent: were it to keep its
    # copy, the lock would outlive a killed parent for as long as the child lives.
    for fd in _held:
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


@contextmanager
def hold(logdir: str | os.PathLike) -> Iterator[None]:
    """Holds the logdir's lock inside the `with`; UsageError when another process holds it."""
    path = Path(logdir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot use {logdir}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"{logdir} is in use by another derl process (pid {pid}); "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held.add(fd)
        yield
    finally:
        _held.discard(fd)
        os.close(fd)
