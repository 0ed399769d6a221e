"""A step's write that met a storage limit, in one line: which file system, what is free.

DuckDB reports a failed write as ``IOException: IO Error: Async write failed ...: {"exception_type":
"IO","exception_message":"Could not write file \\"PATH\\": No space left on device","errno":"28"}``
(or without the JSON part); Python as an ``OSError``. Both become one line naming the file system's
mount point, the file written and the space free on it (a full disk, a quota), or the file size
limit (``ulimit -f``). The steps run inside containers with only ``flows/steps`` mounted, so this
is the step-side twin of ``adapters/ownership/_space.py`` (which describes the runners' own writes).
"""

from __future__ import annotations

import errno
import json
import re
import resource
import shutil
from pathlib import Path

__all__ = ["describe"]

_LIMITS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_TEXTS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG,
}
_RANGE = re.compile(r"range \[offset=(?P<offset>\d+), size=(?P<size>\d+)\]")
_PATH = re.compile(r'Could not (?:write|open|create|truncate)[^"]*"(?P<path>[^"]+)"')


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def _mount(path: Path) -> Path:
    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    device = here.stat().st_dev
    while here != here.parent and here.parent.stat().st_dev == device:
        here = here.parent
    return here


def _facts(exc: BaseException) -> tuple[int, Path | None, int | None] | None:
    """The errno, the file and how far it got (bytes, when DuckDB says) of a write that met a
    storage limit, or None for anything else."""
    if isinstance(exc, OSError):
        if exc.errno not in _LIMITS:
            return None
        return exc.errno, Path(exc.filename) if isinstance(exc.filename, str) else None, None
    if type(exc).__name__ not in ("IOException", "IOError"):
        return None
    text = str(exc)
    code: int | None = None
    found = re.search(r"\{.*\}", text, re.S)
    if found:
        try:
            detail = json.loads(found.group(0))
            code = int(detail.get("errno", 0)) or None
            text = f"{text} {detail.get('exception_message', '')}"
        except (ValueError, TypeError, AttributeError):
            code = None
    if code is None:
        code = next((c for words, c in _TEXTS.items() if words in text.lower()), None)
    if code not in _LIMITS:
        return None
    assert code is not None
    path = _PATH.search(text.replace('\\"', '"'))
    reached = _RANGE.search(text)
    return (
        code,
        Path(path["path"]) if path else None,
        int(reached["offset"]) if reached else None,
    )


def describe(exc: BaseException, fallback: Path) -> str | None:
    """One line for ``exc`` when it is a write that met a storage limit, else None.

    Args:
        exc: the error a step raised.
        fallback: where the step writes (its ``--output``), when the error names no file.

    Examples:
        >>> import tempfile
        >>> line = describe(OSError(errno.ENOSPC, "No space left on device"), Path(tempfile.gettempdir()))
        >>> line.startswith("no space left on ")
        True
        >>> describe(ValueError("x"), Path(".")) is None
        True
    """
    facts = _facts(exc)
    if facts is None:
        return None
    code, path, reached = facts
    target = path or fallback
    if code == errno.EFBIG:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        cap = (
            f"files of at most {_size(soft)}"
            if soft != resource.RLIM_INFINITY
            else "none that large"
        )
        return (
            f"file size limit reached writing {target}: this process may write {cap} (ulimit -f,"
            " or the file system's largest file); raise the limit (`ulimit -f unlimited`) and"
            " run again"
        )
    mount = _mount(target)
    try:
        room = f" ({_size(shutil.disk_usage(mount).total)} in all)"
    except OSError:
        room = ""
    what = "your disk quota is used up on" if code == errno.EDQUOT else "no space left on"
    got = f": it was full when the file reached {_size(reached)}" if reached else ""
    return (
        f"{what} {mount}{room} writing {target}{got}; free space there or give the step a larger"
        " file system (the local runner stages step outputs in the temporary folder, TMPDIR,"
        " until the step ends), and run again"
    )
