"""Entries of a result folder, changed only where they are: never through a symbolic link.

Every change the platform makes inside a result folder (a file renamed into place, a recorded file
removed, a folder made or removed) goes through :func:`parent_of`: the folder that holds the entry,
opened one component at a time from the result folder with ``O_NOFOLLOW``, so a folder swapped for a
link to somewhere else (before the run, or while it runs) is found instead of followed. The change
itself is then made relative to that open folder (``unlinkat``, ``renameat``, ``mkdirat``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from adapters.ownership._manifest import Identity

__all__ = [
    "ThroughLink",
    "entry",
    "identity",
    "is_dir",
    "make_dirs",
    "parent_of",
    "remove_dir",
    "remove_file",
    "rename_in",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ThroughLink(OSError):
    """An entry's way from the result folder passes through a symbolic link."""

    def __init__(self, rel: str, at: str) -> None:
        super().__init__(errno.ELOOP, f"{rel!r} is reached through the symbolic link {at!r}")
        self.rel = rel
        self.at = at


@contextlib.contextmanager
def parent_of(folder: Path, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
    """The open folder holding ``rel`` inside ``folder`` (reached without following links), and
    ``rel``'s last name.

    Args:
        folder: the result folder (itself not a link: checked by the caller).
        rel: a plain relative name inside it.
        create: make the missing folders on the way.

    Raises:
        ThroughLink: a component on the way is a symbolic link.
        NotADirectoryError: a component on the way is a file.
        FileNotFoundError: a folder on the way is missing (and ``create`` is False).
    """
    parts = PurePosixPath(rel).parts
    fd = os.open(folder, _DIR_FLAGS)
    try:
        for depth, part in enumerate(parts[:-1], start=1):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                at = "/".join(parts[:depth])
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise ThroughLink(rel, at) from None
                raise NotADirectoryError(
                    errno.ENOTDIR, "a file is on the way", str(folder / at)
                ) from None
            os.close(fd)
            fd = inner
        yield fd, parts[-1]
    finally:
        os.close(fd)


def identity(fd: int, name: str) -> Identity | None:
    """The identity of ``name`` in the open folder ``fd`` (a link's own), None when absent."""
    try:
        return Identity.of_stat(os.stat(name, dir_fd=fd, follow_symlinks=False))
    except FileNotFoundError:
        return None


def is_dir(fd: int, name: str) -> bool:
    """True when ``name`` in the open folder ``fd`` is a folder (not a link to one)."""
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def entry(folder: Path, rel: str) -> tuple[Identity | None, bool]:
    """What stands at ``rel`` inside ``folder``: its identity (None: absent or a folder), and
    whether it is a folder. A file on the way counts as nothing there.

    Raises:
        ThroughLink: the way to it passes through a symbolic link.
    """
    try:
        with parent_of(folder, rel) as (fd, name):
            return identity(fd, name), is_dir(fd, name)
    except (FileNotFoundError, NotADirectoryError):
        return None, False


def rename_in(source: Path, folder: Path, rel: str) -> None:
    """Rename ``source`` (a path of the platform's own) to ``rel`` inside ``folder``, atomically."""
    with parent_of(folder, rel, create=True) as (fd, name):
        os.replace(source, name, dst_dir_fd=fd)


def remove_file(folder: Path, rel: str, expected: Identity | None = None) -> bool:
    """Remove the file ``rel`` inside ``folder`` when it is still ``expected``; True if removed."""
    try:
        with parent_of(folder, rel) as (fd, name):
            if expected is not None and identity(fd, name) != expected:
                return False
            os.unlink(name, dir_fd=fd)
            return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def make_dirs(folder: Path, rel: str) -> None:
    """Make the folder ``rel`` (and those on the way) inside ``folder``."""
    with parent_of(folder, rel, create=True) as (fd, name):
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=fd)
        if not is_dir(fd, name):
            if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise ThroughLink(rel, rel)
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(folder / rel))


def remove_dir(folder: Path, rel: str) -> None:
    """Remove the folder ``rel`` inside ``folder`` if it is empty (else leave it)."""
    with contextlib.suppress(OSError), parent_of(folder, rel) as (fd, name):
        os.rmdir(name, dir_fd=fd)
