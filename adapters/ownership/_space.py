"""Storage limits, described in one line: which file system is full, how much was needed, how much
is free, or which limit a write ran into.

A write on the host can fail because the file system is full (``ENOSPC``), the user's quota is used
up (``EDQUOT``) or the process may not write a file that large (``EFBIG``: ``ulimit -f``). Each gets
one line that names the place (the file system's mount point and the path written), the numbers the
platform can know, and what to do; never a raw exception list, and never permissions advice.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
from pathlib import Path

__all__ = ["LIMIT_ERRNOS", "describe_limit", "human_bytes", "mount_point", "tree_size"]

#: The errors that mean a storage limit, not a fault of the destination or its permissions.
LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def human_bytes(size: int) -> str:
    """``size`` in bytes, as a person reads it.

    Examples:
        >>> human_bytes(512), human_bytes(20 * 1024 * 1024), human_bytes(3 * 1024**3 // 2)
        ('512 B', '20.0 MiB', '1.5 GiB')
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds ``path`` (or its nearest existing folder)."""
    here = _existing(path)
    device = here.stat().st_dev
    while here != here.parent and here.parent.stat().st_dev == device:
        here = here.parent
    return here


def tree_size(path: Path) -> int:
    """The bytes of the files at or under ``path`` (links not followed)."""
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def describe_limit(exc: OSError, where: Path, *, what: str, needed: int | None = None) -> str:
    """One line for a write of ``what`` to ``where`` that failed with a storage limit.

    Args:
        exc: the error, its ``errno`` one of :data:`LIMIT_ERRNOS`.
        where: the destination written (the file system is looked up from it).
        what: what was being written (``output '/aiop/out' of step 'report'``).
        needed: the bytes the write needed, when known.

    Examples:
        >>> import errno, tempfile
        >>> error = OSError(errno.ENOSPC, "No space left on device")
        >>> line = describe_limit(error, Path(tempfile.gettempdir()), what="a result", needed=2048)
        >>> line.startswith("no space left on ") and "2.0 KiB needed" in line
        True
    """
    target = where  # the error's own file name may be the source of a copy, or a staging path
    need = f", {human_bytes(needed)} needed" if needed else ""
    if exc.errno == errno.EFBIG:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        cap = (
            f"files of at most {human_bytes(soft)}"
            if soft != resource.RLIM_INFINITY
            else "no file that large"
        )
        return (
            f"file size limit reached writing {what} to {target}{need}: this process may write"
            f" {cap} (ulimit -f, or the file system's largest file). Raise the limit"
            " (`ulimit -f unlimited`) and run again."
        )
    mount = mount_point(target)
    try:
        free = f", {human_bytes(shutil.disk_usage(mount).free)} free"
    except OSError:
        free = ""
    quota = "your disk quota is used up on" if exc.errno == errno.EDQUOT else "no space left on"
    return (
        f"{quota} {mount} writing {what} to {target}{need}{free}. Free space there, or choose"
        " a destination on a file system with room, and run again."
    )
