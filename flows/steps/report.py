"""The ``report`` step: assemble the final output folder.

Layout of ``--output``::

    aggregates.csv
    quarantine.csv
    data/part-00000.parquet ...

Files are hard-linked when source and target share a file system, copied otherwise
(each put in place atomically). The step returns (and prints) the row counts, the group
column and the files it placed; ``summary.json`` beside them is the flow's alone, written
once when the run is over, because only the flow knows the run (its steps, their states
and times, the backend).

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
from flows.steps.aggregate import find_parts

__all__ = ["link_or_copy", "run"]


def link_or_copy(src: Path, dst: Path) -> str:
    """Put ``src`` at ``dst`` (replacing it atomically): hard link, else copy.

    Returns:
        ``"link"`` or ``"copy"``.
    """
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        how = "link"
    except OSError:
        shutil.copyfile(src, tmp)
        how = "copy"
    tmp.replace(dst)
    return how


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path} not found; {what}")
    return path


def run(
    validate_dir: str | os.PathLike[str],
    aggregate_dir: str | os.PathLike[str],
    parts_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the report step.

    Args:
        validate_dir: Output directory of ``validate``.
        aggregate_dir: Output directory of ``aggregate``.
        parts_dir: Directory whose subdirectories hold the part files.
        output_dir: The final output folder.
        log: Progress printer.

    Returns:
        The row counts, the group column, the column types and the paths of the files
        relative to ``--output`` (``files.data`` is the folder of the Parquet parts,
        ``files.parts`` lists them).

    Raises:
        DataError: If an input file is missing or two part files share a name.
    """
    vdir, adir = Path(validate_dir), Path(aggregate_dir)
    summary = read_json(_need(vdir / "validate.json", "pass the validate step's output"))
    agg = read_json(_need(adir / "aggregate.json", "pass the aggregate step's output"))
    sources = {
        "aggregates.csv": _need(adir / "aggregates.csv", "pass the aggregate step's output"),
        "quarantine.csv": _need(vdir / "quarantine.csv", "pass the validate step's output"),
    }
    parts = find_parts(parts_dir)
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise DataError(f"two part files under {parts_dir} have the same name; {names}")
    out = ensure_dir(output_dir)
    data = ensure_dir(out / "data")
    kinds = [link_or_copy(src, out / name) for name, src in sources.items()]
    kinds += [link_or_copy(part, data / part.name) for part in parts]
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
    log(
        f"report: {result['input_rows']} rows, {result['valid_rows']} valid, "
        f"{result['quarantined_rows']} quarantined; {len(kinds)} files into {out} "
        f"({kinds.count('link')} linked, {kinds.count('copy')} copied)"
    )
    return result
