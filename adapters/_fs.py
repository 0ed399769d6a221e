"""Host file operations shared by the runners: mount sources, and outputs put in place atomically.

Both runners bring an output back the same way: it lands under a sibling temporary name on the
destination's file system (``.NAME.aiop-tmp-TOKEN``), which then replaces the destination in one
rename, so a crash never leaves a half-written output under the final name.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from adapters.contract import StepSpec
from adapters.errors import InvalidSpecError

__all__ = [
    "HostMount",
    "atomic_landing",
    "host_mounts",
    "landing_path",
    "remove_path",
    "replace_atomically",
]


class HostMount(NamedTuple):
    """One of a spec's mounts, checked on this host."""

    path: Path  # absolute
    target: str
    is_dir: bool
    read_only: bool


def host_mounts(spec: StepSpec) -> list[HostMount]:
    """The spec's mount sources made absolute and checked, before any engine is contacted.

    Raises:
        InvalidSpecError: a mount source does not exist.
    """
    checked = []
    for host, mount in spec.mounts.items():
        path = Path(host).expanduser().resolve()
        if not path.exists():
            raise InvalidSpecError(
                f"mount source {host!r} does not exist on this host; create it or fix the path",
                step=spec.name,
            )
        checked.append(HostMount(path, mount.target, path.is_dir(), not mount.writable))
    return checked


def landing_path(dest: Path, token: str | None = None) -> Path:
    """A unique sibling of ``dest`` for an output to land in before it is renamed into place.

    Examples:
        >>> landing_path(Path("/data/results"), "ab12").as_posix()
        '/data/.results.aiop-tmp-ab12'
    """
    return dest.with_name(f".{dest.name}.aiop-tmp-{token or uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def atomic_landing(dest: Path) -> Iterator[Path]:
    """A sibling temporary path to write ``dest``'s new content to, swapped in if the block succeeds.

    The landing path is removed in every case, so a failed write leaves nothing beside ``dest``.

    Raises:
        OSError: the destination's folder cannot be created or written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    landing = landing_path(dest)
    try:
        yield landing
        replace_atomically(landing, dest)
    finally:
        remove_path(landing)


def replace_atomically(source: Path, dest: Path) -> None:
    """Move ``source`` to ``dest`` so that ``dest`` is never seen half-written.

    Unless ``source`` already is a sibling of ``dest``, it is first moved to a :func:`landing_path`
    (on the destination's file system), then renamed into place. An existing directory at ``dest``
    (or anything at ``dest`` when a directory comes in) is renamed aside first, put back if the
    rename in fails, and removed after. On failure nothing new is left beside ``dest``.

    Raises:
        OSError: the destination's folder cannot be created or written.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "new.txt").write_text("new")
        ...     replace_atomically(Path(tmp) / "new.txt", Path(tmp) / "out" / "result.txt")
        ...     (Path(tmp) / "out" / "result.txt").read_text()
        3
        'new'
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    landing = source
    if source.parent.absolute() != dest.parent.absolute():
        landing = landing_path(dest)
        try:
            shutil.move(str(source), landing)
        except BaseException:
            remove_path(landing)
            raise
    try:
        _swap_in(landing, dest)
    except BaseException:
        if landing != source:
            remove_path(landing)
        raise


def _swap_in(landing: Path, dest: Path) -> None:
    """Rename ``landing`` to ``dest``; a directory in the way is renamed aside first."""
    in_the_way = dest.exists() or dest.is_symlink()
    real_dir = dest.is_dir() and not dest.is_symlink()
    if not (in_the_way and (real_dir or landing.is_dir())):
        landing.replace(dest)  # atomic, also over an existing file or symlink
        return
    aside = dest.with_name(f".{dest.name}.aiop-old-{uuid.uuid4().hex[:12]}")
    dest.replace(aside)
    try:
        landing.replace(dest)
    except OSError:
        aside.replace(dest)
        raise
    remove_path(aside)


def remove_path(path: Path) -> None:
    """Best-effort removal of a temporary path (file, symlink or directory)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
