"""Output ownership: the platform replaces or deletes only what it can prove it wrote (ADR 0013).

The proof is a manifest, ``.aiop-manifest.json``, written into a result folder together with the
results (:mod:`adapters._manifest`). It lists every file the platform put there (relative path, size
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
path on the destination's file system, the replacement (:mod:`adapters._install`), and one
translation of what can go wrong on the host into the error tree: a full file system, a quota or the
file size limit become :class:`~adapters.errors.StorageLimitError` with the numbers; anything else in
the way an :class:`~adapters.errors.InvalidSpecError` that names the place and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fnmatch
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, NamedTuple

from adapters._install import MANIFEST_ROLE, install_file, install_folder, untrusted_message
from adapters._lock import LOCK, hold
from adapters._manifest import (
    MANIFEST,
    Identity,
    Manifest,
    UntrustedManifest,
    read_manifest,
    scan,
    write_manifest,
)
from adapters._space import LIMIT_ERRNOS, describe_limit
from adapters._staging import remove_path, staging_path, sweep
from adapters.contract import StepSpec
from adapters.errors import InvalidSpecError, StorageLimitError

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

#: What an output is: a file or a folder (None: not known before it is written).
Kind = Literal["file", "directory"]


class Status(enum.Enum):
    """What stands at a destination, as far as ownership goes."""

    ABSENT = "absent"
    EMPTY = "empty"
    OWNED = "owned"
    FOREIGN = "foreign"
    UNTRUSTED = "untrusted"
    NOT_A_FOLDER = "not a folder"


@dataclass(frozen=True)
class Destination:
    """A destination as inspected: its status, its manifest, the recorded files since changed,
    and (``UNTRUSTED``) what is wrong with its manifest."""

    path: Path
    status: Status
    manifest: Manifest | None = None
    changed: tuple[str, ...] = ()
    problem: UntrustedManifest | None = None


def inspect(dest: Path) -> Destination:
    """What stands at ``dest``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     inspect(Path(tmp) / "new").status, inspect(Path(tmp)).status
        (<Status.ABSENT: 'absent'>, <Status.EMPTY: 'empty'>)
    """
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        return Destination(dest, Status.NOT_A_FOLDER)
    if not dest.exists():
        return Destination(dest, Status.ABSENT)
    try:
        manifest = read_manifest(dest)
    except UntrustedManifest as exc:
        return Destination(dest, Status.UNTRUSTED, problem=exc)
    if manifest is None:
        with os.scandir(dest) as entries:
            empty = next(entries, None) is None
        return Destination(dest, Status.EMPTY if empty else Status.FOREIGN)
    changed = tuple(
        sorted(
            rel
            for rel in manifest.names()
            if (dest / rel).is_symlink() or (dest / rel).exists()
            if not manifest.owns(rel, dest / rel)
        )
    )
    return Destination(dest, Status.OWNED, manifest, changed)


def _matches(rel: str, pattern: str) -> bool:
    """Whole-path glob match, one component at a time (``*`` never crosses ``/``)."""
    parts, wanted = PurePosixPath(rel).parts, PurePosixPath(pattern).parts
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True)
    )


def _foreign_message(label: str) -> str:
    return (
        f"{label} is a folder of files the platform did not write (it holds no {MANIFEST},"
        f" {MANIFEST_ROLE}), so the platform will not replace or delete anything in it. Give a"
        " new or empty folder, or move those files elsewhere; if it is a result of an earlier"
        " version of the platform, delete it or move it away first."
    )


def _absolute(dest: str | os.PathLike[str]) -> Path:
    """``dest`` made absolute without resolving links: a link is refused where it stands."""
    return Path(os.path.normpath(Path(dest).expanduser().absolute()))


def check_destination(
    dest: Path,
    *,
    label: str,
    reserved: Iterable[str] = (),
    protect: Mapping[str, str | os.PathLike[str] | None] | None = None,
    writable: bool = True,
    folder: bool = True,
) -> Destination:
    """Refuse a destination the platform may not write, before any work starts.

    Args:
        dest: the folder a result will be put in (or, with ``folder=False``, a path that may
            become a file).
        label: how the user named it (``--output results``), used to start each message.
        reserved: relative paths (globs per component, ``data/part-*.parquet``) the result will
            write; an entry there that the platform did not write is refused.
        protect: paths that must not be among what the run replaces (inputs, the work folder), by
            how the user named them (``{"--input": "R/data.csv"}``).
        writable: also check that ``dest`` can be created or written.
        folder: the result is known to be a folder; when False (a step output that may be a file),
            a file at ``dest`` is accepted when the platform wrote it (:func:`check_output`).

    Returns:
        The destination as inspected.

    Raises:
        InvalidSpecError: one paragraph naming the folder, what is wrong and the fix.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "notes.txt").write_text("mine")
        ...     try:
        ...         check_destination(Path(tmp), label=f"--output {tmp}")
        ...     except InvalidSpecError as exc:
        ...         print("a folder of files the platform did not write" in str(exc))
        True
    """
    dest = _absolute(dest)
    if str(dest) not in label:
        label = f"{label} ({dest})"
    if not folder:
        check_output(dest, None, label=label)
        if writable:
            is_file = dest.is_symlink() or (dest.exists() and not dest.is_dir())
            check_writable(dest.parent if is_file else dest, label)
        return inspect(dest)
    found = check_output(dest, "directory", label=label)
    if found.changed:
        raise InvalidSpecError(
            f"{label}: {found.changed[0]} was changed after the platform wrote it, so it is no"
            f" longer the platform's to replace. Move it out of {dest} (or delete it) and run"
            " again, or give another folder."
        )
    manifest = found.manifest or Manifest()
    patterns = list(reserved)
    if found.status is Status.OWNED:
        for path in sorted({hit for pattern in patterns for hit in dest.glob(pattern)}):
            rel = path.relative_to(dest).as_posix()
            if not manifest.owns(rel, path):
                raise InvalidSpecError(
                    f"{label}: {rel} was not written by the platform, but a new result writes"
                    f" that name. Move it out of {dest} (or rename it) and run again, or give"
                    " another folder."
                )
    for name, value in (protect or {}).items():
        if value is None:
            continue
        where = Path(os.path.realpath(value))
        real_dest = Path(os.path.realpath(dest))
        if where == real_dest or not where.is_relative_to(real_dest):
            continue
        rel = where.relative_to(real_dest).as_posix()
        replaced = [r for r in manifest.names() if rel == r or rel.startswith(f"{r}/")]
        if replaced or any(_matches(rel, p) for p in patterns):
            raise InvalidSpecError(
                f"{name} {value} is among what this run replaces in {label} ({rel} is a file"
                f" the platform writes there). Copy it out of {dest} and pass the copy, or give"
                " another output folder."
            )
    if writable:
        check_writable(dest, label)
    return found


def check_output(dest: Path, kind: Kind | None, *, label: str) -> Destination:
    """Refuse an output the platform may not put at ``dest``, before the step runs.

    A folder output (``"directory"``) takes an absent, empty or owned folder. A file output
    (``"file"``) goes into an absent, empty or owned folder, over nothing or over a file that
    folder's manifest records. With ``kind`` None (not known until the step has run), what stands
    at ``dest`` decides: a folder by the folder rules, a file or a link by the file rules.

    Returns:
        What stands at ``dest`` (for a file output: its folder, as inspected).

    Raises:
        InvalidSpecError: one paragraph naming the place, what is wrong and the fix.
    """
    dest = _absolute(dest)
    if kind is None:
        if dest.is_symlink() or dest.is_file() or (dest.exists() and not dest.is_dir()):
            kind = "file"
        elif not dest.exists():
            return inspect(dest)  # a folder takes an absent place; a file is checked on export
        else:
            kind = "directory"
    if kind == "directory":
        found = inspect(dest)
        if found.status is Status.NOT_A_FOLDER:
            if dest.is_symlink():
                raise InvalidSpecError(
                    f"{label} is a symbolic link, not a folder; the platform does not write"
                    " through links. Give the folder it points to."
                )
            raise InvalidSpecError(
                f"{label} is a file, not a folder; give a folder (it is created)."
            )
        return _refuse_unusable(found, label, file_output=False)
    folder = inspect(dest.parent)
    if folder.status is Status.NOT_A_FOLDER:
        what = "a symbolic link" if dest.parent.is_symlink() else "a file"
        raise InvalidSpecError(
            f"{label}: {dest.parent} is {what}, not a folder; the platform writes a file output"
            " only into a real folder (never through a link). Give a path in a folder."
        )
    if folder.status is Status.UNTRUSTED:
        _refuse_unusable(folder, label, file_output=True)
    if dest.is_dir() and not dest.is_symlink():
        raise InvalidSpecError(f"{label} is a folder; a file output cannot replace it.")
    present = dest.is_symlink() or dest.exists()
    manifest = folder.manifest
    if present and (manifest is None or not manifest.owns(dest.name, dest)):
        what = "a symbolic link" if dest.is_symlink() else "a file"
        raise InvalidSpecError(
            f"{label} is {what} the platform did not write (or a file of its result that was"
            " changed since), so the platform does not replace it (nor write through a link)."
            " Move it away, or give another path."
        )
    return _refuse_unusable(folder, label, file_output=True)


def _refuse_unusable(found: Destination, label: str, *, file_output: bool) -> Destination:
    if found.status is Status.UNTRUSTED:
        assert found.problem is not None
        raise InvalidSpecError(untrusted_message(label, found.path, found.problem))
    if found.status is Status.FOREIGN:
        if file_output:
            raise InvalidSpecError(
                f"{label} goes into {found.path}, a folder of files the platform did not write"
                f" (it holds no {MANIFEST}, {MANIFEST_ROLE}). A file output is written only into"
                " a new or empty folder, or a result folder of the platform, where it can be"
                " recorded and later replaced; give a path in such a folder."
            )
        raise InvalidSpecError(_foreign_message(label))
    return found


def check_writable(dest: Path, label: str) -> None:
    """Fail now, not after every step ran, when the folder ``dest`` cannot be created or written.

    Raises:
        InvalidSpecError: one paragraph starting with ``label``: what is in the way, the fix.
    """
    existing = dest
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidSpecError(
            f"{label} cannot be created: {existing} is a file, not a folder. Give a path whose"
            " parent folders are folders."
        )
    probe = staging_path(existing / ".aiop-probe")
    try:
        probe.mkdir()
    except OSError as exc:
        raise InvalidSpecError(
            f"{label} cannot be written: creating anything in {existing} fails"
            f" ({exc.strerror or exc}). Give a folder you can write to, or fix its permissions."
        ) from None
    remove_path(probe)


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
        _refuse_unusable(found, label, file_output=False)
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
    dest = _absolute(dest)
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
    _refuse_unusable(found, label, file_output=False)
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
    dest = _absolute(dest)
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
