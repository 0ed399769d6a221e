"""The manifest of a result folder: the record of every file the platform wrote there (ADR 0013).

``.aiop-manifest.json`` holds a format tag, the platform version, the origin of the files (a digest
of the step spec; per file for file outputs), every file (relative path, size, modification time in
ns), the folders created, and, while a replacement runs (or after it crashed), the incoming files.

A manifest is a claim made by whoever wrote the file, and a result folder may come from a shared
drive, an archive or a repository. So every name it lists must be a plain relative name inside the
folder (no ``..``, no absolute path, no empty or ``.`` component, not the manifest itself), and is
resolved inside the folder without following a symbolic link: a listed name reached through a link
(``link/victim.txt`` where ``link`` points elsewhere) is outside the folder. A manifest that breaks
either rule proves nothing: :class:`UntrustedManifest` is raised, and the platform refuses the
folder instead of replacing or deleting anything in it.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from adapters.ownership._staging import remove_path, staging_path

__all__ = [
    "MANIFEST",
    "Identity",
    "Manifest",
    "UntrustedManifest",
    "plain_name",
    "read_manifest",
    "scan",
    "write_manifest",
]

#: The manifest's file name inside a result folder.
MANIFEST = ".aiop-manifest.json"
_FORMAT = "aiop-output-manifest/1"


class UntrustedManifest(ValueError):
    """A manifest in the platform's format that names something outside its folder.

    Attributes:
        entry: the offending name, as the manifest wrote it.
        why: what is wrong with it, in a few words.
    """

    def __init__(self, entry: str, why: str) -> None:
        super().__init__(f"{entry!r} {why}")
        self.entry = entry
        self.why = why


def plain_name(rel: str) -> bool:
    """True for a plain relative POSIX name inside a folder: the only kind a manifest may list.

    Examples:
        >>> [plain_name(n) for n in ("a.txt", "data/p0.parquet", "../x", "/etc/x", "a//b", "./a")]
        [True, True, False, False, False, False]
    """
    if not rel or "\0" in rel or rel.startswith("/") or rel == MANIFEST:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _check_names(names: Iterable[str]) -> None:
    for rel in names:
        if not plain_name(rel):
            why = (
                "is the manifest itself"
                if rel == MANIFEST
                else "is not a plain relative name inside the folder"
            )
            raise UntrustedManifest(rel, why)


def through_link(folder: Path, rel: str) -> str | None:
    """The first folder on the way to ``rel`` inside ``folder`` that is a symbolic link, or None.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "link").symlink_to("/")
        ...     through_link(Path(tmp), "link/etc/passwd"), through_link(Path(tmp), "a/b")
        ('link', None)
    """
    parts = PurePosixPath(rel).parts[:-1]
    for depth in range(1, len(parts) + 1):
        here = folder.joinpath(*parts[:depth])
        try:
            mode = here.lstat().st_mode
        except OSError:
            return None  # nothing further down exists: the entry is simply absent
        if stat.S_ISLNK(mode):
            return "/".join(parts[:depth])
        if not stat.S_ISDIR(mode):
            return None
    return None


@dataclass(frozen=True)
class Identity:
    """What the platform recorded of a file it wrote: its size and modification time."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Identity | None:
        """The identity of the entry at ``path`` (not following a symbolic link), None if absent."""
        try:
            st = path.lstat()
        except OSError:
            return None
        return cls.of_stat(st)

    @classmethod
    def of_stat(cls, st: os.stat_result) -> Identity | None:
        """The identity in a ``stat`` result; None for a folder."""
        if stat.S_ISDIR(st.st_mode):
            return None
        return cls(st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Manifest:
    """The record of what the platform wrote into a folder.

    Attributes:
        files: relative POSIX path -> identity, for every file written.
        dirs: the sub-folders the platform created.
        incoming: files of a replacement under way (set only while one runs, or after a crash).
        origin: what produced the files of a folder output (a digest of the step spec), so a
            cached result is reused only while the folder still holds what that spec wrote.
        origins: the same, per file, for files written one by one (file outputs).
    """

    files: Mapping[str, Identity] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()
    incoming: Mapping[str, Identity] = field(default_factory=dict)
    origin: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict)

    def owns(self, rel: str, path: Path) -> bool:
        """True when the entry at ``path`` is the file the platform recorded under ``rel``."""
        return self.owns_identity(rel, Identity.of(path))

    def owns_identity(self, rel: str, found: Identity | None) -> bool:
        """True when ``found`` is the identity the platform recorded under ``rel``."""
        return found is not None and found in (self.files.get(rel), self.incoming.get(rel))

    def names(self) -> set[str]:
        """Every file name the manifest records, incoming ones included."""
        return set(self.files) | set(self.incoming)

    def to_json(self) -> str:
        """The manifest file's text."""

        def table(files: Mapping[str, Identity]) -> dict[str, dict[str, int]]:
            return {k: {"size": v.size, "mtime_ns": v.mtime_ns} for k, v in sorted(files.items())}

        data: dict[str, Any] = {
            "format": _FORMAT,
            "written_by": f"aiop {_platform_version()}",
            "note": "Files the platform wrote here; it replaces or deletes only these.",
            "origin": self.origin,
            "files": table(self.files),
            "dirs": sorted(self.dirs),
        }
        if self.origins:
            data["origins"] = dict(sorted(self.origins.items()))
        if self.incoming:
            data["incoming"] = table(self.incoming)
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest | None:
        """The manifest in ``text``, or None when it is not one the platform wrote.

        Raises:
            UntrustedManifest: it is in the platform's format but lists a name that is not a
                plain relative name inside the folder.
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                return None

            def table(raw: Any) -> dict[str, Identity]:
                return {
                    str(k): Identity(int(v["size"]), int(v["mtime_ns"])) for k, v in raw.items()
                }

            manifest = cls(
                files=table(data.get("files", {})),
                dirs=frozenset(str(d) for d in data.get("dirs", [])),
                incoming=table(data.get("incoming", {})),
                origin=str(data["origin"]) if data.get("origin") else None,
                origins={str(k): str(v) for k, v in data.get("origins", {}).items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        _check_names([*manifest.names(), *manifest.dirs, *manifest.origins])
        return manifest


@functools.cache
def _platform_version() -> str:
    """The installed platform's version (looked up once: it reads package metadata, ~8 ms)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-orchestration-platform")
    except PackageNotFoundError:
        return "unknown"


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of ``folder`` (a regular file, not a link), or None.

    Raises:
        UntrustedManifest: the manifest lists a name outside the folder, or one reached through a
            symbolic link inside it.
    """
    path = folder / MANIFEST
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    if manifest is not None:
        for rel in sorted({*manifest.names(), *manifest.dirs}):
            link = through_link(folder, rel)
            if link is not None:
                raise UntrustedManifest(rel, f"is reached through the symbolic link {link!r}")
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``folder``'s manifest atomically."""
    tmp = staging_path(folder / MANIFEST)
    try:
        tmp.write_text(manifest.to_json(), encoding="utf-8")
        tmp.replace(folder / MANIFEST)
    except BaseException:
        remove_path(tmp)
        raise


def scan(folder: Path) -> Manifest:
    """Every file and folder under ``folder`` (the manifest itself left out)."""
    files: dict[str, Identity] = {}
    dirs: set[str] = set()
    for root, subdirs, names in os.walk(folder):
        base = Path(root)
        for name in subdirs:
            if (base / name).is_symlink():
                names.append(name)
            else:
                dirs.add((base / name).relative_to(folder).as_posix())
        subdirs[:] = [d for d in subdirs if not (base / d).is_symlink()]
        for name in names:
            rel = (base / name).relative_to(folder).as_posix()
            identity = Identity.of(base / name)
            if rel != MANIFEST and identity is not None:
                files[rel] = identity
    return Manifest(files, frozenset(dirs))
