"""The ``report`` step: assemble the final output folder.

Layout of ``--output``::

    aggregates.csv
    quarantine.csv
    data/part-00000.parquet ...

Each file is a copy of its own (put in place atomically): a copy-on-write clone where the file
system has them (Linux ``FICLONE``: btrfs, XFS, bcachefs, ZFS 2.2), else a byte copy. Never a hard link: a
hard-linked result is the same file as the step output it came from (the cache) and as every other
result of the same input, so a user's edit of one would change them all (issue 21). The step returns
(and prints) the row counts, the group column and the files it placed; ``summary.json`` beside them
is the flow's alone, written once when the run is over, because only the flow knows the run (its
steps, their states and times, the backend).

The step writes into its own staging folder; the runner puts that in place at ``--output`` and
writes ``.aiop-manifest.json`` beside the files, the record of what the platform wrote there, so a
re-run replaces only these files and leaves anything a user added (ADR 0013).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.steps._io import DataError, ensure_dir, read_json
from flows.steps.transform import part_name

__all__ = ["clone_or_copy", "run"]


#: ``FICLONE`` of linux/fs.h (``_IOW(0x94, 9, int)``): make the file a copy-on-write clone of another.
_FICLONE = 0x40049409


def _clone(source: int, target: int) -> None:
    """Make the open file ``target`` a copy-on-write clone of ``source`` (raises OSError where the
    file system, or the platform, has no clones)."""
    import fcntl

    fcntl.ioctl(target, _FICLONE, source)


def clone_or_copy(src: Path, dst: Path) -> str:
    """Put a copy of ``src`` at ``dst`` (replacing it atomically): a copy-on-write clone where the
    file system has them, else a byte copy; never a hard link.

    Returns:
        ``"clone"`` or ``"copy"``.
    """
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        with src.open("rb") as source, tmp.open("wb") as target:
            try:
                _clone(source.fileno(), target.fileno())
                how = "clone"
            except (OSError, ImportError):
                how = "copy"
        if how == "copy":
            shutil.copyfile(src, tmp)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return how


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path} not found; {what}")
    return path


def run(
    validate_dir: str | os.PathLike[str],
    aggregate_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the report step.

    Args:
        validate_dir: Output directory of ``validate`` (its partitions are the ones its
            ``validate.json`` counts, nothing else found there).
        aggregate_dir: Output directory of ``aggregate``.
        output_dir: The final output folder.
        log: Progress printer.

    Returns:
        The row counts, the group column, the column types and the paths of the files
        relative to ``--output`` (``files.data`` is the folder of the Parquet parts,
        ``files.parts`` lists them).

    Raises:
        DataError: If an input file is missing.
    """
    vdir, adir = Path(validate_dir), Path(aggregate_dir)
    summary = read_json(_need(vdir / "validate.json", "pass the validate step's output"))
    agg = read_json(_need(adir / "aggregate.json", "pass the aggregate step's output"))
    sources = {
        "aggregates.csv": _need(adir / "aggregates.csv", "pass the aggregate step's output"),
        "quarantine.csv": _need(vdir / "quarantine.csv", "pass the validate step's output"),
    }
    counted = summary.get("parts")
    if not isinstance(counted, list):
        raise DataError(
            f"{vdir / 'validate.json'} lists no partitions ('parts'); it was written by an"
            " earlier release: run validate again"
        )
    parts = [
        _need(vdir / part_name(i), "pass the validate step's output") for i in range(len(counted))
    ]
    out = ensure_dir(output_dir)
    data = ensure_dir(out / "data")
    kinds = [clone_or_copy(src, out / name) for name, src in sources.items()]
    kinds += [clone_or_copy(part, data / part.name) for part in parts]
    result = {
        "input_rows": summary.get("input_rows"),
        "valid_rows": summary.get("valid_rows"),
        "quarantined_rows": summary.get("quarantined_rows"),
        "group_by": agg.get("group_by"),
        "columns": summary.get("columns"),
        "files": {
            "aggregates": "aggregates.csv",
            "quarantine": "quarantine.csv",
            "data": "data",
            "parts": [f"data/{p.name}" for p in parts],
        },
    }
    clones, copies = kinds.count("clone"), kinds.count("copy")
    how = (
        "copies"
        if not clones
        else "copy-on-write clones"
        if not copies
        else f"{clones} copy-on-write clones, {copies} copies"
    )
    log(
        f"report: {result['input_rows']} rows, {result['valid_rows']} valid, "
        f"{result['quarantined_rows']} quarantined; {len(kinds)} files into {out} ({how})"
    )
    return result
