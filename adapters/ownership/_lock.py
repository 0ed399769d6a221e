"""One run at a time per result folder: a lock file the platform owns, ``.aiop-lock``.

Two runs writing into one folder at once would each report success while the folder holds a mix of
both. A run holds the folder with :func:`hold`: an exclusive ``flock`` on ``<folder>/.aiop-lock``,
taken without waiting; a second run is refused in one line that names the holder (pid, host, since
when). The kernel drops the lock when the holding process ends, however it ends (``kill -9``, the OOM
killer), so a lock file left by a killed run is stale by construction: the next run takes it. The
holder removes the file when it is done (while still holding it; a run that opened the old file
meanwhile sees it was removed and opens the new one).

Holding is re-entrant within one line of execution: the command line holds the folder before it
starts the flow run, and the flow, started from that same context, holds it again without blocking
itself. A second flow in the same process, started from a context that does not hold the folder, is
refused like any other run. On a file system that has no locks (``ENOLCK``: an NFS mount without its
lock daemon), the run goes on unguarded.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from adapters.errors import InvalidInputError

__all__ = ["LOCK", "hold"]

#: The lock file's name inside a result folder.
LOCK = ".aiop-lock"

#: What a file system without locks answers (an NFS mount without lockd, some FUSE mounts).
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})

_HELD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "aiop_held_outputs", default=frozenset()
)


@contextlib.contextmanager
def hold(folder: Path, *, label: str) -> Iterator[None]:
    """Hold ``folder`` (an existing folder) for one run; refuse when another run holds it.

    Raises:
        InvalidInputError: another run holds the folder, or its lock file cannot be used.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with hold(Path(tmp), label="--output x"):
        ...         print(sorted(p.name for p in Path(tmp).iterdir()))
        ...     print(sorted(p.name for p in Path(tmp).iterdir()))
        ['.aiop-lock']
        []
    """
    key = os.path.realpath(folder)
    if key in _HELD.get():
        yield
        return
    fd = _acquire(Path(key) / LOCK, label)
    token = _HELD.set(_HELD.get() | {key})
    try:
        yield
    finally:
        _HELD.reset(token)
        with contextlib.suppress(OSError):
            (Path(key) / LOCK).unlink()
        os.close(fd)


def _acquire(path: Path, label: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InvalidInputError(
                f"{label}: its lock file {path} cannot be opened ({exc.strerror or exc}); the"
                f" platform keeps one run at a time in a result folder through it. Remove"
                f" whatever stands at {path}, or give another folder."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InvalidInputError(
                f"{label} is in use by another run ({holder}); wait for it to finish, or give"
                " another folder."
            ) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            break  # a file system without locks: the run goes on unguarded, as before
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the last holder removed the file after it was opened: open the new one
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(record) + "\n").encode())
    return fd


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["since"])))
        return f"pid {int(data['pid'])} on {data['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its process did not say which"
