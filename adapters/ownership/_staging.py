"""Staging entries: the temporary files and folders the platform writes before it puts a result in
place, named so that the platform (and only the platform) can recognise them and tell whether the
process that made them is still alive.

A staging entry is named ``.NAME.aiop-tmp-HOST-PID-TOKEN`` (``aiop-old`` for the names of earlier
designs that set a folder aside): ``HOST`` is a short hash of the machine's name, ``PID`` the id of the
process that made it, ``TOKEN`` twelve random hex digits. :func:`sweep` removes only entries of this
exact shape, made on this machine by a process that no longer runs; anything else (a user's file, a
staging entry of a live run, one made on another machine sharing the folder) is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

__all__ = ["is_stale", "remove_path", "staging_path", "sweep"]

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_PATTERN = re.compile(
    r"^\.(?P<name>.+)\.aiop-(?:tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{12}$"
)


def staging_path(dest: Path, kind: str = "tmp") -> Path:
    """A unique, recognisable sibling of ``dest`` owned by this process.

    Examples:
        >>> import re
        >>> name = staging_path(Path("/data/results")).name
        >>> bool(re.fullmatch(r"\\.results\\.aiop-tmp-[0-9a-f]{8}-\\d+-[0-9a-f]{12}", name))
        True
    """
    token = uuid.uuid4().hex[:12]
    return dest.with_name(f".{dest.name}.aiop-{kind}-{_HOST}-{os.getpid()}-{token}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    except OSError:
        return True  # cannot tell: keep the entry
    return True


def is_stale(name: str) -> bool:
    """True for a staging entry made on this machine by a process that no longer runs.

    Examples:
        >>> is_stale("results.csv"), is_stale(staging_path(Path("/x/out")).name)
        (False, False)
    """
    match = _PATTERN.match(name)
    if match is None or match["host"] != _HOST:
        return False
    return not _alive(int(match["pid"]))


def sweep(folder: Path) -> list[Path]:
    """Remove the stale staging entries directly inside ``folder``; returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if is_stale(entry.name):
            remove_path(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def remove_path(path: Path) -> None:
    """Best-effort removal of a staging path (file, symlink or directory) the platform made."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
