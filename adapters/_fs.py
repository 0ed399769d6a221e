"""Host file operations shared by the runners: mount sources, and outputs put in place atomically.

Both runners bring an output back the same way: it lands under a recognisable sibling staging name on
the destination's file system (``.NAME.aiop-tmp-HOST-PID-TOKEN``, :mod:`adapters._staging`) and is then
put in place by :func:`adapters.ownership.install`: renamed into place when nothing is there, merged
file by file into a folder the platform owns, refused when the folder holds files the platform did not
write. Stale staging entries of dead runs are removed before each export.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from adapters._staging import remove_path, staging_path, sweep
from adapters.contract import StepSpec
from adapters.errors import InvalidSpecError
from adapters.ownership import Status, inspect, install

__all__ = [
    "HostMount",
    "atomic_landing",
    "check_outputs",
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


def check_outputs(spec: StepSpec) -> None:
    """Refuse, before the step runs, an output destination the platform may not replace.

    Raises:
        InvalidSpecError: a destination is a folder that holds files the platform did not write.
    """
    for source, host in spec.outputs.items():
        dest = Path(host).expanduser().absolute()
        if inspect(dest).status is Status.FOREIGN:
            raise InvalidSpecError(
                f"output {source!r} goes to {str(dest)!r}, a folder of files the platform did not"
                " write (it holds no .aiop-manifest.json, the record the platform keeps of what it"
                " wrote), so nothing in it will be replaced or deleted; give a new or empty folder"
                " as the destination, or move those files elsewhere",
                step=spec.name,
            )


def landing_path(dest: Path) -> Path:
    """A unique, recognisable sibling of ``dest`` for an output to land in before it is put in place.

    Examples:
        >>> landing_path(Path("/data/results")).name.startswith(".results.aiop-tmp-")
        True
    """
    return staging_path(dest)


@contextlib.contextmanager
def atomic_landing(dest: Path, *, origin: str | None = None) -> Iterator[Path]:
    """A sibling staging path to write ``dest``'s new content to, put in place if the block succeeds.

    The landing path is removed in every case, so a failed write leaves nothing beside ``dest``.

    Raises:
        OSError: the destination's folder cannot be created or written.
        InvalidSpecError: ``dest`` holds files the platform did not write in the way.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep(dest.parent)
    landing = landing_path(dest)
    try:
        yield landing
        install(landing, dest, origin=origin)
    finally:
        remove_path(landing)


def replace_atomically(source: Path, dest: Path, *, origin: str | None = None) -> None:
    """Move ``source`` to ``dest`` so that no file of ``dest`` is ever seen half-written.

    ``source`` is first moved to a :func:`landing_path` (on the destination's file system), then
    put in place by :func:`adapters.ownership.install`: a folder the platform owns keeps every entry
    it did not write; ``origin`` (:func:`adapters.ownership.origin_of`) goes into its manifest. On
    failure nothing new is left beside ``dest``.

    Raises:
        OSError: the destination's folder cannot be created or written.
        InvalidSpecError: ``dest`` holds files the platform did not write in the way.

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
    sweep(dest.parent)
    landing = landing_path(dest)
    try:
        shutil.move(str(source), landing)
        install(landing, dest, origin=origin)
    finally:
        remove_path(landing)
