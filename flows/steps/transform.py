"""The ``transform`` step: the partial per-group statistics of one partition (or a run of them).

``validate`` writes the valid rows as ``K`` partitions ``part-<I:05d>.parquet`` and counts each
in its ``validate.json`` (``"parts"``); the flow runs one transform step per partition, or, with
more partitions than step slots (:func:`flows.data_pipeline.options.step_slots`), one step per
slot over a contiguous run of partitions: a step process and its task run cost about 0.3-0.4 s
of CPU, which 64 partitions on 2 cores would pay 64 times. A step reads its ``count``
consecutive partitions ``I..I+count-1`` (default 1) in one scan and writes, per value of the
group column, the row count and, for each numeric column, its min, max, sum and non-null count
(the files and :data:`~flows.steps.aggregate.PARTIALS_JSON` described in
:mod:`flows.steps.aggregate`, whose step merges them), and ``transform.json`` =
``{"partition": I, "rows": n, "groups": g}`` (``n`` the rows of its partitions, ``g`` their
distinct group values; with ``count`` > 1 also ``"count"`` and ``"parts"``, the rows of each).

The step does not write the rows again: validate writes them as the partitions, and cutting
and re-encoding them here cost 17% of a run.

Wide files: the statistics are computed :data:`~flows.steps.aggregate.BATCH_COLUMNS` numeric
columns per query, one query (and one partial file) after the other, for the reason given in
:mod:`flows.steps.aggregate`: one GROUP BY over thousands of columns kills DuckDB with SIGFPE.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.steps._csv import connect
from flows.steps._io import (
    DataError,
    UsageError,
    atomic_path,
    ensure_dir,
    read_json,
    write_json,
    write_text,
)
from flows.steps.types import quote_ident, quote_literal

__all__ = ["bounds", "part_name", "run"]


def part_name(partition: int) -> str:
    """File name of partition ``partition``."""
    return f"part-{partition:05d}.parquet"


def bounds(rows: int, partition: int, partitions: int) -> tuple[int, int]:
    """Row range ``[start, end)`` of ``partition`` when ``rows`` are cut in ``partitions``."""
    return rows * partition // partitions, rows * (partition + 1) // partitions


def _declared(input_dir: Path, partitions: int) -> tuple[dict[str, str], list[int]]:
    """The column types and the rows of each partition from ``validate.json``.

    Raises:
        DataError: If it is missing or malformed, or counts other than ``partitions`` partitions.
    """
    path = input_dir / "validate.json"
    meta = read_json(path)
    columns = meta.get("columns") if isinstance(meta, dict) else None
    parts = meta.get("parts") if isinstance(meta, dict) else None
    if not isinstance(columns, dict):
        raise DataError(f"{path} has no 'columns' object; pass the validate step's output folder")
    if not isinstance(parts, list) or not all(isinstance(r, int) for r in parts):
        raise DataError(
            f"{path} lists no partitions ('parts'); it was written by an earlier release:"
            f" run validate again with --partitions {partitions}"
        )
    if len(parts) != partitions:
        raise DataError(
            f"{input_dir} holds {len(parts)} partitions (its validate.json), not {partitions};"
            f" run validate again with --partitions {partitions}, or pass --partitions"
            f" {len(parts)}"
        )
    return {str(k): str(v) for k, v in columns.items()}, parts


def run(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    partition: int,
    partitions: int,
    group_by: str,
    *,
    count: int = 1,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the transform step for partitions ``partition .. partition + count - 1``.

    Args:
        input_dir: The validate step's output folder (its ``validate.json`` and part files).
        output_dir: Directory for the partial statistics, ``partials.json`` and
            ``transform.json``.
        partition: 0-based partition index ``I``.
        partitions: Number of partitions ``K``.
        group_by: Column to group by.
        count: Consecutive partitions to read, from ``partition`` on.
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``transform.json``.

    Raises:
        UsageError: If ``K < 1``, ``I`` is not in ``[0, K)`` or ``I + count > K``.
        DataError: If the input folder is not a validate output of ``K`` partitions, a part
            file is missing or unreadable, or the group column does not exist.
    """
    from flows.steps import _db, aggregate

    if partitions < 1 or not 0 <= partition < partitions:
        raise UsageError(f"--partition must be in [0, {partitions}) and --partitions >= 1")
    if count < 1 or partition + count > partitions:
        raise UsageError(
            f"--count must be at least 1 and --partition + --count at most {partitions}"
        )
    src = Path(input_dir)
    if not src.is_dir():
        raise DataError(f"input {src} is not a directory; pass the validate step's output folder")
    declared, counted = _declared(src, partitions)
    indexes = range(partition, partition + count)
    files = [src / part_name(i) for i in indexes]
    if missing := [f.name for f in files if not f.is_file()]:
        raise DataError(
            f"{src} lacks {', '.join(missing)} of the {partitions} partitions its validate.json"
            " counts; run validate again"
        )
    out = ensure_dir(output_dir)
    # A re-run into the same folder that fails half-way must not leave the old description
    # in front of new files: the merge would take them for the old ones.
    (out / aggregate.PARTIALS_JSON).unlink(missing_ok=True)
    con = connect(threads=threads)
    try:
        scan = "read_parquet([" + ", ".join(quote_literal(str(f)) for f in files) + "])"
        try:
            schema = [
                (r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
            ]
            rows = [
                int(con.execute(f"SELECT count(*) FROM read_parquet({quote_literal(str(f))})")
                    .fetchone()[0])
                for f in files
            ]  # fmt: skip
        except _db.Error as exc:
            first = str(exc).splitlines()[0]
            raise DataError(
                f"the part files of {src} are not readable Parquet ({first}); run validate again"
            ) from None
        for i, f, n in zip(indexes, files, rows, strict=True):
            if n != counted[i]:
                raise DataError(
                    f"{f} holds {n} rows, its validate.json says {counted[i]}: the folder mixes"
                    " two runs of validate; run validate again"
                )
        names = [name for name, _ in schema]
        if group_by not in names:
            raise DataError(
                f"group-by column {group_by!r} not found in the part files of {src}; "
                f"available columns: {', '.join(names)}"
            )
        measures = aggregate.numeric_columns(schema, group_by, declared)
        width = aggregate.BATCH_COLUMNS
        # without numeric columns one file still holds the groups and their row counts
        batches = [(s, min(s + width, len(measures))) for s in range(0, len(measures), width)] or [
            (0, 0)
        ]
        g = quote_ident(group_by)
        groups = 0
        for number, (start, end) in enumerate(batches):
            exprs = [f"{g} AS g", "count(*) AS row_count"]
            exprs += [
                e
                for j in range(start, end)
                for e in aggregate.partial_statistics(
                    j, quote_ident(measures[j][0]), measures[j][1]
                )
            ]
            # GROUP BY 1: a user column named g must not be taken for the alias
            sql = f"SELECT {', '.join(exprs)} FROM {scan} GROUP BY 1"
            with atomic_path(out / aggregate.partial_name(number)) as tmp:
                groups = int(
                    con.execute(
                        f"COPY ({sql}) TO {quote_literal(str(tmp))}"
                        " (FORMAT parquet, COMPRESSION zstd)"
                    ).fetchone()[0]
                )
    finally:
        con.close()
    listed = [
        {"file": aggregate.partial_name(number), "measures": [start, end]}
        for number, (start, end) in enumerate(batches)
    ]
    described = {
        "partition": partition,
        "count": count,
        "partitions": partitions,
        "group_by": group_by,
        "measures": [[name, "integer" if is_int else "float"] for name, is_int in measures],
        "files": listed,
    }
    # one line, not indented: read by the aggregate step only, and a line per column of a wide
    # file (16,384 columns) made it half a megabyte
    write_text(out / aggregate.PARTIALS_JSON, json.dumps(described) + "\n")
    total = sum(rows)
    data: dict[str, Any] = {"partition": partition, "rows": total, "groups": groups}
    if count > 1:
        data.update(
            count=count,
            parts=[{"partition": i, "rows": n} for i, n in zip(indexes, rows, strict=True)],
        )
    write_json(out / "transform.json", data)
    start_row = sum(counted[:partition])
    which = (
        f"partition {partition}"
        if count == 1
        else f"partitions {partition}-{partition + count - 1}"
    )
    log(
        f"transform: {which} of {partitions}: rows [{start_row}, {start_row + total}) = {total},"
        f" {groups} groups by {group_by!r}, {len(measures)} numeric columns"
    )
    return data
