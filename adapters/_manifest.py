"""The manifest of a result folder: the record of every file the platform wrote there (ADR 0013).

``.aiop-manifest.json`` holds a format tag, the platform version, the origin of the files (a digest
of the step spec), every file (relative path, size, modification time in ns), the folders created,
and, while a replacement runs (or after it crashed), the incoming files.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters._staging import remove_path, staging_path

__all__ = ["MANIFEST", "Identity", "Manifest", "read_manifest", "scan", "write_manifest"]

#: The manifest's file name inside a result folder.
MANIFEST = ".aiop-manifest.json"
_FORMAT = "aiop-output-manifest/1"


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
        origin: what produced the files (a digest of the step spec), so a cached result is reused
            only while the folder still holds what that spec wrote.
    """

    files: Mapping[str, Identity] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()
    incoming: Mapping[str, Identity] = field(default_factory=dict)
    origin: str | None = None

    def owns(self, rel: str, path: Path) -> bool:
        """True when the entry at ``path`` is the file the platform recorded under ``rel``."""
        found = Identity.of(path)
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
        if self.incoming:
            data["incoming"] = table(self.incoming)
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest | None:
        """The manifest in ``text``, or None when it is not one the platform wrote."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                return None

            def table(raw: Any) -> dict[str, Identity]:
                return {
                    str(k): Identity(int(v["size"]), int(v["mtime_ns"])) for k, v in raw.items()
                }

            return cls(
                files=table(data.get("files", {})),
                dirs=frozenset(str(d) for d in data.get("dirs", [])),
                incoming=table(data.get("incoming", {})),
                origin=str(data["origin"]) if data.get("origin") else None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


@functools.cache
def _platform_version() -> str:
    """The installed platform's version (looked up once: it reads package metadata, ~8 ms)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-orchestration-platform")
    except PackageNotFoundError:
        return "unknown"


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of ``folder`` (a regular file, not a link), or None."""
    path = folder / MANIFEST
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        return Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


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
