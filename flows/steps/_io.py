"""Small file helpers shared by the steps: atomic writes, bounded reads of user files and the
data-error type.

Every output file of a step is written atomically: the content goes to ``<name>.tmp``
next to the target first and is then moved into place with :func:`os.replace`, so a
reader (or a retried step) never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "DataError",
    "InvariantError",
    "UsageError",
    "atomic_path",
    "ensure_dir",
    "read_json",
    "read_regular",
    "write_json",
    "write_text",
]


class DataError(Exception):
    """Bad or unusable input; the CLI turns it into exit code 65 and one ``error:`` line.

    The message should say what is wrong, where, and how to fix it, on one line.
    """


class UsageError(ValueError):
    """Bad step arguments that argparse cannot catch; the CLI exits with code 64."""


class InvariantError(RuntimeError):
    """A step's own count does not add up (``validate``: input_rows != valid_rows +
    quarantined_rows): a bug, reported with exit code 1."""


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_regular(
    path: str | os.PathLike[str], what: str, fix: str, limit: int
) -> tuple[bytes, int]:
    """The first ``limit`` bytes and the size of a regular file the user named.

    The one check of ``--input`` and ``--schema`` (and of any file a user names): the file is
    opened without blocking and checked on the open descriptor, so a FIFO, a device such as
    ``/dev/zero`` or a folder is refused at once (before: a FIFO blocked forever, ``/dev/zero``
    was read until memory ran out), and never more than ``limit`` bytes are read.

    Args:
        path: The file.
        what: What the file is, for messages (``"input file"``, ``"schema file"``).
        fix: What to pass instead, for messages (``"pass a CSV file"``).
        limit: The most bytes to read.

    Returns:
        The bytes read (fewer than ``limit`` only at the end of the file) and the file's size.

    Raises:
        DataError: The file is missing, unreadable or not a regular file.

    Examples:
        >>> read_regular("/dev/null", "schema file", "pass a YAML file", 10)
        Traceback (most recent call last):
        ...
        flows.steps._io.DataError: schema file /dev/null is not a regular file (it is a character device); pass a YAML file
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DataError(f"{what} {p} does not exist (no such file); check the path") from None
    except IsADirectoryError:
        raise DataError(f"{what} {p} is not a regular file (it is a folder); {fix}") from None
    except OSError as exc:
        raise DataError(f"{what} {p} cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            raise DataError(f"{what} {p} is not a regular file (it is {kind}); {fix}")
        chunks: list[bytes] = []
        left = limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st.st_size
    except OSError as exc:
        raise DataError(f"{what} {p} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its parents) if needed and return it as a :class:`Path`.

    Args:
        path: Directory to create.

    Returns:
        The directory path.

    Raises:
        DataError: If ``path`` exists and is not a directory.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(f"output path {p} exists and is not a directory; pass a directory")
    p.mkdir(parents=True, exist_ok=True)
    return p


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place on success.

    The temporary file is ``<target>.tmp``. If the body raises, the temporary file is
    removed and ``target`` is left untouched.

    Args:
        target: Final file path.

    Yields:
        The temporary path to write to.
    """
    final = Path(target)
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        tmp.replace(final)  # os.replace: atomic on POSIX
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``target``.

    Args:
        target: Final file path.
        text: Content to write.
    """
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    """Atomically write ``data`` as indented JSON (with a trailing newline) to ``target``.

    Args:
        target: Final file path.
        data: JSON-serialisable value.
    """
    write_text(target, json.dumps(data, indent=2) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by an earlier step.

    Args:
        path: File to read.

    Returns:
        The decoded JSON value.

    Raises:
        DataError: If the file is missing or is not valid JSON.
    """
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p} not found; run the step that writes it first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{p} is not readable JSON ({exc}); re-run the step that writes it"
        ) from None
