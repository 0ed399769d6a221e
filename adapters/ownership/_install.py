"""Putting a staged result in place under the ownership rules (ADR 0013).

A folder output is renamed into place when its destination is absent or empty, and merged file by
file into a folder the platform owns. A file output goes into a folder the platform owns (the
caller claims it first, :func:`adapters.ownership.claim`) and is recorded in that folder's manifest,
so a later run can prove it wrote the file and replace it. Either way, the manifest first records
the incoming files (an entry then counts as the platform's in its old or new form), each file is
renamed into place atomically, and the manifest is then rewritten without the incoming section: a
crash at any point leaves every entry either the user's or recorded.

Every change inside the destination goes through :mod:`adapters.ownership._entries`: never through a
symbolic link, whatever the folder holds or comes to hold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from adapters.errors import InvalidSpecError
from adapters.ownership._entries import (
    ThroughLink,
    entry,
    make_dirs,
    remove_dir,
    remove_file,
    rename_in,
)
from adapters.ownership._manifest import (
    Identity,
    Manifest,
    UntrustedManifest,
    read_manifest,
    scan,
    write_manifest,
)

__all__ = ["install_file", "install_folder", "through_link_message", "untrusted_message"]

MANIFEST_ROLE = "the record the platform keeps of what it wrote"


def untrusted_message(label: str, folder: Path, problem: UntrustedManifest) -> str:
    """The paragraph for a folder whose manifest names something outside it."""
    return (
        f"{label}: the .aiop-manifest.json in {folder} ({MANIFEST_ROLE}) lists {problem.entry!r},"
        f" which {problem.why}, so it cannot prove what the platform wrote there and the platform"
        " replaces or deletes nothing in that folder. A result folder copied from a shared drive,"
        " an archive or a repository may carry a forged manifest: check what the folder holds,"
        " then move it away and run again, or give another folder (deleting its"
        " .aiop-manifest.json keeps it as a folder of yours, which the platform never writes"
        " into)."
    )


def through_link_message(label: str, folder: Path, exc: ThroughLink) -> str:
    """The paragraph for an entry that turned out to be reached through a link while writing."""
    return untrusted_message(
        label, folder, UntrustedManifest(exc.rel, f"is reached through {exc.at!r}, not a folder")
    )


def _read(folder: Path, label: str) -> Manifest | None:
    try:
        return read_manifest(folder)
    except UntrustedManifest as exc:
        raise InvalidSpecError(untrusted_message(label, folder, exc)) from None


def install_folder(
    landing: Path, dest: Path, old: Manifest, *, label: str, origin: str | None
) -> None:
    """Merge the staged folder ``landing`` into ``dest``, a folder the platform owns (``old``).

    The files ``old`` lists are replaced or removed; every other entry stays.

    Raises:
        InvalidSpecError: an entry the platform did not write is in the way of the new result.
    """
    new = scan(landing)
    try:
        _merge(landing, dest, old, new, label=label, origin=origin)
    except ThroughLink as exc:
        raise InvalidSpecError(through_link_message(label, dest, exc)) from None


def _merge(
    landing: Path, dest: Path, old: Manifest, new: Manifest, *, label: str, origin: str | None
) -> None:
    for rel in sorted(new.files):
        found, folder = entry(dest, rel)
        if folder or (found is not None and not old.owns_identity(rel, found)):
            raise InvalidSpecError(
                f"{label}: {rel} is there and was not written by the platform (or was changed"
                " since); move it away and run again."
            )
    for rel in sorted(new.dirs):
        found, _ = entry(dest, rel)
        if found is not None and not old.owns_identity(rel, found):
            raise InvalidSpecError(
                f"{label}: {rel} is in the way of a folder of the result and was not written"
                " by the platform; move it away and run again."
            )
    incoming = {**old.incoming, **new.files}
    write_manifest(dest, dataclasses.replace(old, dirs=old.dirs | new.dirs, incoming=incoming))
    for rel in sorted(new.dirs, key=len):
        for expected in (old.files.get(rel), old.incoming.get(rel)):
            if expected is not None and remove_file(dest, rel, expected):  # a file of ours
                break
        make_dirs(dest, rel)
    for rel in sorted(new.files):
        rename_in(landing / rel, dest, rel)
    for rel in sorted(old.names() - set(new.files)):
        for expected in (old.files.get(rel), old.incoming.get(rel)):
            if expected is not None and remove_file(dest, rel, expected):
                break
    for rel in sorted(old.dirs - new.dirs, key=len, reverse=True):
        remove_dir(dest, rel)  # removed only when nothing of a user's is left in it
    write_manifest(dest, Manifest(new.files, new.dirs, origin=origin))


def install_file(landing: Path, dest: Path, *, label: str, origin: str | None) -> None:
    """Put the staged file ``landing`` at ``dest``, inside a folder the platform owns, and record
    it in that folder's manifest (with ``origin``).

    Raises:
        InvalidSpecError: the folder is not the platform's, or an entry it did not write (or a
            folder) stands at ``dest``.
    """
    folder, rel = dest.parent, dest.name
    manifest = _read(folder, label)
    if manifest is None:
        raise InvalidSpecError(
            f"{label}: {folder} is not a result folder of the platform (it holds no"
            f" .aiop-manifest.json, {MANIFEST_ROLE}), so the file is not written there. Give a"
            " path in a new or empty folder, or in a result folder of the platform."
        )
    new = Identity.of(landing)
    assert new is not None, landing
    try:
        found, is_folder = entry(folder, rel)
        if is_folder:
            raise InvalidSpecError(f"{label} is a folder; a file cannot replace it.")
        if found is not None and not manifest.owns_identity(rel, found):
            raise InvalidSpecError(_not_ours(label, dest))
        incoming = {**manifest.incoming, rel: new}  # a crashed replacement's stay recorded
        write_manifest(folder, dataclasses.replace(manifest, incoming=incoming))
        rename_in(landing, folder, rel)
    except ThroughLink as exc:
        raise InvalidSpecError(through_link_message(label, folder, exc)) from None
    origins = {k: v for k, v in manifest.origins.items() if k != rel}
    if origin is not None:
        origins[rel] = origin
    write_manifest(
        folder,
        dataclasses.replace(
            manifest,
            files={**manifest.files, rel: new},
            incoming={k: v for k, v in manifest.incoming.items() if k != rel},
            origins=origins,
        ),
    )


def _not_ours(label: str, dest: Path) -> str:
    what = "a symbolic link" if dest.is_symlink() else "a file"
    return (
        f"{label} is {what} the platform did not write (or a file of its result that was"
        " changed since), so the platform does not replace it. Move it away, or give another"
        " path."
    )
