"""Output ownership: the platform replaces or deletes only a folder it can prove it wrote, and in it
only the entries it wrote (ADR 0013).

The proof is a manifest, ``.aiop-manifest.json``, written into a result folder together with the
results. It lists every file the platform put there (relative path, size and modification time in
nanoseconds) and the folders it created. A folder is:

* ``ABSENT`` or ``EMPTY``: free; a result may be put there;
* ``OWNED``: it holds a valid manifest; a new result replaces the files the manifest lists (those
  still as the platform wrote them) and leaves every other entry alone, so files a user adds survive;
* ``FOREIGN``: not empty and no manifest; nothing in it is ever replaced or deleted;
* ``NOT_A_FOLDER``: a file or a symbolic link stands there.

A file whose size or modification time no longer matches the manifest was changed by someone else:
it is no longer the platform's, so it is neither replaced nor deleted.

A replacement is crash-safe file by file: the new result is staged beside the destination, the
manifest first records the incoming files (an entry then counts as the platform's in either its old
or its new form), each file is renamed into place atomically, old files the new result no longer has
are removed, and the manifest is rewritten without the incoming section. A crash at any point leaves
a folder whose every entry is either the user's or recorded as the platform's, and a staging folder
that the next run removes (:mod:`adapters._staging`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from adapters._manifest import (
    MANIFEST,
    Identity,
    Manifest,
    read_manifest,
    scan,
    write_manifest,
)
from adapters._staging import remove_path, staging_path
from adapters.contract import StepSpec
from adapters.errors import InvalidSpecError

__all__ = [
    "MANIFEST",
    "Destination",
    "Identity",
    "Manifest",
    "Status",
    "check_destination",
    "claim",
    "inspect",
    "install",
    "origin_of",
    "output_present",
    "write_owned_file",
]


class Status(enum.Enum):
    """What stands at a destination, as far as ownership goes."""

    ABSENT = "absent"
    EMPTY = "empty"
    OWNED = "owned"
    FOREIGN = "foreign"
    NOT_A_FOLDER = "not a folder"


@dataclass(frozen=True)
class Destination:
    """A destination as inspected: its status, its manifest, and the recorded files since changed."""

    path: Path
    status: Status
    manifest: Manifest | None = None
    changed: tuple[str, ...] = ()


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
    manifest = read_manifest(dest)
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
        f"{label} is a folder of files the platform did not write (it holds no {MANIFEST}, the"
        " record the platform keeps of what it wrote), so the platform will not replace or delete"
        " anything in it. Give a new or empty folder, or move those files elsewhere; if it is a"
        " result of an earlier version of the platform, delete it or move it away first."
    )


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
        dest: the folder a result will be put in.
        label: how the user named it (``--output results``), used to start each message.
        reserved: relative paths (globs per component, ``data/part-*.parquet``) the result will
            write; an entry there that the platform did not write is refused.
        protect: paths that must not be among what the run replaces (inputs, the work folder), by
            how the user named them (``{"--input": "R/data.csv"}``).
        writable: also check that ``dest`` can be created or written.
        folder: the result is known to be a folder; when False (a step output that may be a file),
            an existing file at ``dest`` is accepted: a file output replaces it.

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
    dest = Path(os.path.normpath(Path(dest).absolute()))
    if str(dest) not in label:
        label = f"{label} ({dest})"
    found = inspect(dest)
    if found.status is Status.NOT_A_FOLDER and not folder:
        if writable:
            _check_writable(dest.parent, label)
        return found
    if found.status is Status.NOT_A_FOLDER:
        if dest.is_symlink():
            raise InvalidSpecError(
                f"{label} is a symbolic link, not a folder; give the folder it points to."
            )
        raise InvalidSpecError(f"{label} is a file, not a folder; give a folder (it is created).")
    if found.status is Status.FOREIGN:
        raise InvalidSpecError(_foreign_message(label))
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
        _check_writable(dest, label)
    return found


def _check_writable(dest: Path, label: str) -> None:
    """Fail now, not after every step ran, when ``dest`` cannot be created or written."""
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
        raise InvalidSpecError(_foreign_message(f"output folder {dest}"))
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


def write_owned_file(folder: Path, rel: str, data: bytes) -> None:
    """Write one file of a result into the owned ``folder`` and record it in the manifest.

    Raises:
        InvalidSpecError: the folder or the file at ``rel`` is not the platform's.
    """
    claim(folder)
    manifest = read_manifest(folder) or Manifest()
    target = folder / rel
    if (target.exists() or target.is_symlink()) and not manifest.owns(rel, target):
        raise InvalidSpecError(
            f"{target} was not written by the platform (or was changed since); move it away so"
            " the platform can write its result there."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(target)
    try:
        tmp.write_bytes(data)
        new = Identity.of(tmp)
        assert new is not None
        write_manifest(folder, dataclasses.replace(manifest, incoming={rel: new}))
        tmp.replace(target)
        write_manifest(
            folder, dataclasses.replace(manifest, files={**manifest.files, rel: new}, incoming={})
        )
    finally:
        remove_path(tmp)


def install(
    landing: Path, dest: Path, *, label: str | None = None, origin: str | None = None
) -> None:
    """Put the staged result at ``landing`` (a sibling of ``dest``) in place.

    A file replaces a file (or takes an absent or empty place). A folder is renamed into place when
    ``dest`` is absent or empty, and merged into ``dest`` when the platform owns it: the files the
    manifest lists are replaced or removed, every other entry stays. ``landing`` is consumed or left
    for the caller to remove. ``origin`` (see :func:`origin_of`) is recorded in the manifest.

    Raises:
        InvalidSpecError: ``dest`` holds something the platform did not write in the way.
        OSError: the destination cannot be written.
    """
    label = label or f"output destination {str(dest)!r}"
    if not landing.is_dir() or landing.is_symlink():
        if dest.is_dir() and not dest.is_symlink():
            if any(dest.iterdir()):
                raise InvalidSpecError(f"{label} is a folder; a file cannot replace it")
            dest.rmdir()
        landing.replace(dest)
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
    if found.status is Status.FOREIGN or found.manifest is None:
        raise InvalidSpecError(_foreign_message(label))
    _merge(landing, dest, found.manifest, label, origin)


def _merge(landing: Path, dest: Path, old: Manifest, label: str, origin: str | None) -> None:
    new = scan(landing)
    for rel in sorted(new.files):
        target = dest / rel
        in_the_way = target.exists() or target.is_symlink()
        if in_the_way and (target.is_dir() or not old.owns(rel, target)):
            raise InvalidSpecError(
                f"{label}: {rel} is there and was not written by the platform (or was changed"
                " since); move it away and run again."
            )
    for rel in sorted(new.dirs):
        target = dest / rel
        in_the_way = target.is_symlink() or (target.exists() and not target.is_dir())
        if in_the_way and not old.owns(rel, target):
            raise InvalidSpecError(
                f"{label}: {rel} is in the way of a folder of the result and was not written"
                " by the platform; move it away and run again."
            )
    incoming = {**old.incoming, **new.files}
    write_manifest(dest, Manifest(old.files, old.dirs | new.dirs, incoming, old.origin))
    for rel in sorted(new.dirs, key=len):
        target = dest / rel
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()  # a file the platform wrote, checked above
        target.mkdir(exist_ok=True)
    for rel in sorted(new.files):
        (landing / rel).replace(dest / rel)
    for rel in sorted(old.names() - set(new.files)):
        if old.owns(rel, dest / rel):
            (dest / rel).unlink()
    for rel in sorted(old.dirs - new.dirs, key=len, reverse=True):
        with contextlib.suppress(OSError):  # removed only when nothing of a user's is left in it
            (dest / rel).rmdir()
    write_manifest(dest, Manifest(new.files, new.dirs, origin=origin))


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

    A folder with a manifest counts when the manifest lists files, each is there as written, and
    (when ``origin`` is given and recorded) the same spec wrote them: a folder that a run with other
    inputs has rewritten since does not hold this spec's result. A file, or a folder without a
    manifest (written before manifests existed), counts when it exists.
    """
    if not (path.exists() or path.is_symlink()):
        return False
    if not path.is_dir() or path.is_symlink():
        return True
    manifest = read_manifest(path)
    if manifest is None:
        return True
    if not manifest.files or manifest.incoming:
        return False
    if origin is not None and manifest.origin is not None and manifest.origin != origin:
        return False
    return all(manifest.owns(rel, path / rel) for rel in manifest.files)
