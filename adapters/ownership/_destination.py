"""What stands at a destination, and whether the platform may write there (ADR 0013).

:func:`inspect` says what a destination is as far as ownership goes (:class:`Status`); the checks
refuse, before any work starts, a destination the platform may not write: a folder of files it did
not write, a file or symbolic link it did not write, a folder whose manifest cannot be trusted, a
place that cannot be created or written. :mod:`adapters.ownership` re-exports them.
"""

from __future__ import annotations

import enum
import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from adapters.errors import InvalidSpecError
from adapters.ownership._install import MANIFEST_ROLE, untrusted_message
from adapters.ownership._manifest import MANIFEST, Manifest, UntrustedManifest, read_manifest
from adapters.ownership._staging import remove_path, staging_path

__all__ = [
    "Destination",
    "Kind",
    "Status",
    "absolute",
    "check_destination",
    "check_output",
    "check_writable",
    "inspect",
    "refuse_unusable",
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


def absolute(dest: str | os.PathLike[str]) -> Path:
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
    dest = absolute(dest)
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
    dest = absolute(dest)
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
        return refuse_unusable(found, label, file_output=False)
    folder = inspect(dest.parent)
    if folder.status is Status.NOT_A_FOLDER:
        what = "a symbolic link" if dest.parent.is_symlink() else "a file"
        raise InvalidSpecError(
            f"{label}: {dest.parent} is {what}, not a folder; the platform writes a file output"
            " only into a real folder (never through a link). Give a path in a folder."
        )
    if folder.status is Status.UNTRUSTED:
        refuse_unusable(folder, label, file_output=True)
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
    return refuse_unusable(folder, label, file_output=True)


def refuse_unusable(found: Destination, label: str, *, file_output: bool) -> Destination:
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
