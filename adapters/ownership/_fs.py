"""Host file operations shared by the runners: mount sources, output checks, and moving a staged
output onto its destination's file system.

Every runner brings an output back through :func:`adapters.ownership.receive` (the one export
path): it lands under a recognisable sibling staging name on the destination's file system
(``.NAME.aiop-tmp-HOST-PID-TOKEN``, :mod:`adapters.ownership._staging`) and is put in place under the
ownership rules. Stale staging entries of dead runs are removed before each export.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from adapters.contract import StepSpec
from adapters.errors import InvalidSpecError
from adapters.ownership import check_output

__all__ = ["HostMount", "check_outputs", "host_mounts", "move_into"]


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
    """Refuse, before the step runs, an output destination the platform may not write.

    Whether an output is a file or a folder is known only once the step has written it; what
    stands at the destination now decides (:func:`adapters.ownership.check_output`): a folder of
    files the platform did not write, a file it did not write, a symbolic link, or a folder whose
    manifest cannot be trusted is refused here.

    Raises:
        InvalidSpecError: one paragraph naming the output, the place and the fix.
    """
    for source, host in spec.outputs.items():
        dest = Path(host).expanduser().absolute()
        try:
            check_output(dest, None, label=f"output {source!r} ({dest})")
        except InvalidSpecError as exc:
            raise InvalidSpecError(exc.message, step=spec.name) from None


def move_into(source: Path, landing: Path) -> None:
    """Move ``source`` (a staged output of the platform's) to ``landing``: a rename on one file
    system, else a copy file by file (links copied as links) and the source removed.

    Raises:
        OSError: the first failed write, as it is (``ENOSPC`` with the file that did not fit),
            never a list of errors.
    """
    try:
        source.rename(landing)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    if source.is_dir() and not source.is_symlink():
        for root, dirs, names in os.walk(source):
            here = landing / Path(root).relative_to(source)
            here.mkdir()
            for name in [*names, *(d for d in dirs if (Path(root) / d).is_symlink())]:
                shutil.copy2(Path(root) / name, here / name, follow_symlinks=False)
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        shutil.rmtree(source, ignore_errors=True)
    else:
        shutil.copy2(source, landing, follow_symlinks=False)
        source.unlink(missing_ok=True)
