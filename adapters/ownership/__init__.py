"""Output ownership: the platform replaces or deletes only what it can prove it wrote (ADR 0013).

The proof is a manifest, ``.aiop-manifest.json``, written into a result folder together with the
results (:mod:`adapters.ownership._manifest`). It lists every file the platform put there (relative path, size
and modification time in nanoseconds) and the folders it created. A folder is:

* ``ABSENT`` or ``EMPTY``: free; a result may be put there;
* ``OWNED``: it holds a valid manifest; a new result replaces the files the manifest lists (those
  still as the platform wrote them) and leaves every other entry alone, so files a user adds survive;
* ``FOREIGN``: not empty and no manifest; nothing in it is ever replaced or deleted;
* ``UNTRUSTED``: its manifest lists a name outside the folder (``../x``, an absolute path, a name
  reached through a symbolic link): it proves nothing, and nothing in the folder is touched;
* ``NOT_A_FOLDER``: a file or a symbolic link stands there.

The same rules hold for a **file** output: it goes into a new, empty or owned folder and is recorded
in that folder's manifest; a file the platform did not write (or a symbolic link) is never replaced,
and a folder of a user's files never receives one.

Every runner puts its outputs in place through one function, :func:`receive`: checks, a landing
path on the destination's file system, the replacement (:mod:`adapters.ownership._install`), and one
translation of what can go wrong on the host into the error tree: a full file system, a quota or the
file size limit become :class:`~adapters.errors.StorageLimitError` with the numbers; anything else in
the way an :class:`~adapters.errors.InvalidSpecError` that names the place and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from adapters.contract import StepSpec
from adapters.errors import InvalidSpecError, StorageLimitError
from adapters.ownership._destination import (
    Destination,
    Kind,
    Status,
    absolute,
    check_destination,
    check_output,
    check_writable,
    inspect,
    refuse_unusable,
)
from adapters.ownership._install import install_file, install_folder
from adapters.ownership._lock import LOCK, hold
from adapters.ownership._manifest import MANIFEST, Identity, Manifest, scan, write_manifest
from adapters.ownership._space import LIMIT_ERRNOS, describe_limit
from adapters.ownership._staging import remove_path, staging_path, sweep

__all__ = [
    "LOCK",
    "MANIFEST",
    "Destination",
    "Identity",
    "Kind",
    "Manifest",
    "SetAside",
    "Status",
    "check_destination",
    "check_output",
    "check_writable",
    "claim",
    "hold",
    "inspect",
    "install",
    "origin_of",
    "output_present",
    "receive",
    "set_aside",
    "write_error",
    "write_owned_file",
]


def claim(dest: Path) -> None:
    """Make ``dest`` (absent or empty) an owned, empty result folder; an owned one is left as is.

    Raises:
        InvalidSpecError: ``dest`` is not a folder, or holds files the platform did not write.
        OSError: it cannot be created or written.
    """
    found = inspect(dest)
    if found.status is Status.OWNED:
        return
    if found.status is Status.EMPTY:
        write_manifest(dest, Manifest())
        return
    if found.status is not Status.ABSENT:
        label = f"output folder {dest}"
        refuse_unusable(found, label, file_output=False)
        raise InvalidSpecError(f"{label} is a file or a symbolic link, not a folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    landing = staging_path(dest)
    try:
        landing.mkdir()
        write_manifest(landing, Manifest())
        landing.rename(dest)  # over an empty folder that appeared meanwhile, too
    except OSError:
        if inspect(dest).status is not Status.OWNED:
            raise
    finally:
        remove_path(landing)


def install(
    landing: Path, dest: Path, *, label: str | None = None, origin: str | None = None
) -> None:
    """Put the staged result at ``landing`` (on ``dest``'s file system) in place.

    A folder is renamed into place when ``dest`` is absent or empty, and merged into ``dest`` when
    the platform owns it: the files the manifest lists are replaced or removed, every other entry
    stays. A file goes into a folder the platform owns (:func:`claim` it first), over nothing or a
    file it recorded, and is recorded there. ``landing`` is consumed or left for the caller to
    remove. ``origin`` (see :func:`origin_of`) is recorded in the manifest.

    Raises:
        InvalidSpecError: ``dest`` holds something the platform did not write in the way.
        OSError: the destination cannot be written.
    """
    dest = absolute(dest)
    label = label or f"output destination {str(dest)!r}"
    if not landing.is_dir() or landing.is_symlink():
        install_file(landing, dest, label=label, origin=origin)
        return
    found = inspect(dest)
    if found.status in (Status.ABSENT, Status.EMPTY):
        write_manifest(landing, dataclasses.replace(scan(landing), origin=origin))
        try:
            landing.rename(dest)
            return
        except OSError:
            found = inspect(dest)  # something appeared meanwhile: decide again
            if found.status in (Status.ABSENT, Status.EMPTY):
                raise
    if found.status is Status.NOT_A_FOLDER:
        what = "a symbolic link" if dest.is_symlink() else "a file"
        raise InvalidSpecError(f"{label} is {what}; the platform does not replace it by a folder")
    refuse_unusable(found, label, file_output=False)
    assert found.manifest is not None
    install_folder(landing, dest, found.manifest, label=label, origin=origin)


@contextlib.contextmanager
def receive(
    dest: str | os.PathLike[str],
    kind: Kind,
    *,
    what: str,
    origin: str | None = None,
    step: str | None = None,
    needed: Callable[[], int] | None = None,
) -> Iterator[Path]:
    """Where one output lands, and how it is put in place: the one export path of every runner.

    Before the block, ``dest`` is checked (:func:`check_output`); a file output's folder is claimed
    (created, or given an empty manifest when empty) so the file can be recorded there, and so is
    a folder output's folder when the platform creates it (a file output may go there next). The
    block
    writes the output at the path it is given: a sibling of ``dest`` on its file system, named
    ``.NAME.aiop-tmp-HOST-PID-TOKEN``. After it, :func:`install` puts it in place. The landing path
    is removed in every case, and stale staging entries of dead runs beside ``dest`` are swept.

    Args:
        dest: the host path of the output.
        kind: ``"file"`` or ``"directory"``.
        what: what is written, for messages (``output '/aiop/out'``).
        origin: recorded in the manifest (:func:`origin_of`).
        step: the step's name, carried by every error.
        needed: the bytes the output takes, asked only to report a full file system.

    Raises:
        InvalidSpecError: the destination holds something the platform did not write in the way,
            or cannot be written (permissions, a read-only file system).
        StorageLimitError: the file system is full, a quota is used up, or the file size limit
            was reached; one line with the file system, what was needed and what is free.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with receive(Path(tmp) / "out" / "a.txt", "file", what="a note") as landing:
        ...         _ = landing.write_text("hello")
        ...     (Path(tmp) / "out" / "a.txt").read_text(), output_present(Path(tmp) / "out" / "a.txt")
        ('hello', True)
    """
    dest = absolute(dest)
    label = f"{what} ({dest})"
    try:
        check_output(dest, kind, label=label)
        if dest.parent.exists() and not dest.parent.is_dir():
            raise InvalidSpecError(
                f"cannot write {what} to {dest}: {dest.parent} is a file, not a folder; give a"
                " path whose parent folders are folders"
            )
        if kind == "file" or not dest.parent.is_dir():
            claim(dest.parent)  # a folder the platform makes is its own: later files go in too
        sweep(dest.parent)
        landing = staging_path(dest)
        try:
            yield landing
            install(landing, dest, label=label, origin=origin)
        finally:
            remove_path(landing)
    except InvalidSpecError as exc:
        if exc.step is not None or step is None:
            raise
        raise InvalidSpecError(exc.message, step=step) from exc
    except OSError as exc:
        raise write_error(exc, dest, what=what, step=step, needed=needed) from exc


def write_error(
    exc: OSError,
    dest: Path,
    *,
    what: str,
    step: str | None = None,
    needed: Callable[[], int] | None = None,
) -> InvalidSpecError | StorageLimitError:
    """The platform error for a host write of ``what`` to ``dest`` that failed with ``exc``.

    Examples:
        >>> error = write_error(OSError(errno.EROFS, "Read-only file system"), Path("/x"), what="a")
        >>> type(error).__name__, "read-only" in str(error)
        ('InvalidSpecError', True)
    """
    if exc.errno in LIMIT_ERRNOS:
        size = None
        if needed is not None:
            with contextlib.suppress(OSError):
                size = needed()
        return StorageLimitError(describe_limit(exc, dest, what=what, needed=size), step=step)
    where = (
        f" ({exc.filename})" if isinstance(exc.filename, str) and exc.filename != str(dest) else ""
    )
    if exc.errno == errno.EROFS:
        fix = "the file system is mounted read-only; choose a destination on a writable one"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "make the destination's folder writable for this user, or choose another path"
    else:
        fix = "check the destination's file system, or choose another path"
    return InvalidSpecError(
        f"cannot write {what} to {dest}: {exc.strerror or exc}{where}; {fix}", step=step
    )


def write_owned_file(folder: Path, rel: str, data: bytes) -> None:
    """Write one file of a result into the (absent, empty or owned) ``folder`` and record it.

    Raises:
        InvalidSpecError: the folder or the file at ``rel`` is not the platform's.
        StorageLimitError: the file system is full (or another storage limit was met).
    """
    with receive(folder / rel, "file", what=rel, needed=lambda: len(data)) as landing:
        landing.write_bytes(data)


def origin_of(spec: StepSpec) -> str:
    """A digest of what a spec would write: its fields, secret names but never their values.

    Examples:
        >>> spec = StepSpec(name="s", image="python:3.12-slim", args=["true"])
        >>> len(origin_of(spec))
        32
    """
    data = spec.model_dump(mode="json", exclude={"secrets"})
    data["secrets"] = sorted(spec.secrets)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def output_present(path: Path, origin: str | None = None) -> bool:
    """True while a result the platform put at ``path`` is still complete as written.

    A folder counts when its manifest lists files, each is there as written, and (when ``origin``
    is given and recorded) the same spec wrote them: a folder that a run with other inputs has
    rewritten since does not hold this spec's result. A file counts when its folder's manifest
    records it as it is (and, with ``origin``, as that spec's). A folder or file the platform
    cannot prove it wrote (no manifest, an untrusted one, another file in its place) never counts.
    """
    if not (path.exists() or path.is_symlink()):
        return False
    if path.is_dir() and not path.is_symlink():
        found = inspect(path)
        manifest = found.manifest
        if manifest is None or not manifest.files or manifest.incoming:
            return False
        if origin is not None and manifest.origin is not None and manifest.origin != origin:
            return False
        return all(manifest.owns(rel, path / rel) for rel in manifest.files)
    folder = inspect(path.parent)
    manifest, rel = folder.manifest, path.name
    if manifest is None or rel in manifest.incoming or manifest.files.get(rel) is None:
        return False
    recorded = manifest.origins.get(rel)
    if origin is not None and recorded is not None and recorded != origin:
        return False
    return manifest.owns(rel, path)


class SetAside(NamedTuple):
    """A cache entry moved out of the way: where it is now, and why it was moved."""

    path: Path
    why: str


def set_aside(dest: Path) -> SetAside | None:
    """Move a cache entry the platform can no longer vouch for out of the way, keeping its bytes.

    A step output kept between runs (``<work>/<step>-<key>``) holds exactly what its step wrote;
    when a file of it was changed since (or it has no manifest, or an untrusted one, or is not a
    folder), the step must run again, and its new output cannot be merged over a file that is no
    longer the platform's. The entry is renamed to ``<name>.changed-<UTC time>`` beside it
    (nothing is deleted), so the step's output can take its place.

    Returns:
        Where the entry now is and why, or None when it was absent or intact (nothing moved).
    """
    found = inspect(dest)
    if found.status is Status.ABSENT or (found.status is Status.OWNED and not found.changed):
        return None
    if found.status is Status.EMPTY:
        return None
    if found.status is Status.OWNED:
        why = f"{found.changed[0]} was changed after the platform wrote it"
    elif found.status is Status.UNTRUSTED:
        why = "its manifest cannot be trusted"
    elif found.status is Status.FOREIGN:
        why = f"it holds no {MANIFEST}"
    else:
        why = "it is not a folder"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = dest.with_name(f"{dest.name}.changed-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = dest.with_name(f"{dest.name}.changed-{stamp}-{n}")
    dest.rename(aside)
    return SetAside(aside, why)
