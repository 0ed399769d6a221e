"""The ``transform`` step: cut ``valid.parquet`` into K contiguous partitions.

Partition ``I`` of ``K`` holds rows ``[I*n//K, (I+1)*n//K)`` of the input in input order,
so concatenating partitions ``0..K-1`` gives the input back. A step writes ``count``
consecutive partitions ``I..I+count-1`` (default 1), each as ``part-<I:05d>.parquet`` (zstd),
and ``transform.json`` = ``{"partition": I, "rows": n}`` (``n`` the rows of all its parts; with
``count`` > 1 also ``"count"`` and ``"parts"``, the rows of each). The flow runs one step per
partition, or, with more partitions than step slots (:func:`flows.data_pipeline.options.
step_slots`), one step per slot over a contiguous run of partitions: a step process and its
task run cost about 0.3-0.4 s of CPU, which 64 partitions on 2 cores would pay 64 times.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.steps._csv import connect
from flows.steps._io import DataError, UsageError, atomic_path, ensure_dir, write_json
from flows.steps.types import quote_literal

__all__ = ["bounds", "part_name", "run"]


def part_name(partition: int) -> str:
    """File name of partition ``partition``."""
    return f"part-{partition:05d}.parquet"


def bounds(rows: int, partition: int, partitions: int) -> tuple[int, int]:
    """Row range ``[start, end)`` of ``partition`` when ``rows`` are cut in ``partitions``."""
    return rows * partition // partitions, rows * (partition + 1) // partitions


def run(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    partition: int,
    partitions: int,
    *,
    count: int = 1,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the transform step for partitions ``partition .. partition + count - 1``.

    Args:
        input_path: ``valid.parquet``.
        output_dir: Directory for the part file and ``transform.json``.
        partition: 0-based partition index ``I``.
        partitions: Number of partitions ``K``.
        count: Consecutive partitions to write, from ``partition`` on.
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``transform.json``.

    Raises:
        UsageError: If ``K < 1``, ``I`` is not in ``[0, K)`` or ``I + count > K``.
        DataError: If the input is missing or not Parquet.
    """
    from flows.steps import _db

    if partitions < 1 or not 0 <= partition < partitions:
        raise UsageError(f"--partition must be in [0, {partitions}) and --partitions >= 1")
    if count < 1 or partition + count > partitions:
        raise UsageError(
            f"--count must be at least 1 and --partition + --count at most {partitions}"
        )
    src = Path(input_path)
    if not src.is_file():
        raise DataError(f"input {src} is not a file; pass the valid.parquet from validate")
    out = ensure_dir(output_dir)
    con = connect(threads=threads)
    try:
        plain = f"read_parquet({quote_literal(str(src))})"
        try:
            names = [
                r[0].lower() for r in con.execute(f"DESCRIBE SELECT * FROM {plain}").fetchall()
            ]
            total = con.execute(f"SELECT count(*) FROM {plain}").fetchone()[0]
        except _db.Error as exc:
            first = str(exc).splitlines()[0]
            raise DataError(f"{src} is not readable Parquet ({first}); re-run validate") from None
        parts = [
            (i, _write_part(con, src, names, bounds(int(total), i, partitions), out / part_name(i)))
            for i in range(partition, partition + count)
        ]
    finally:
        con.close()
    rows = sum(r for _, r in parts)
    data: dict[str, Any] = {"partition": partition, "rows": rows}
    if count > 1:
        data.update(count=count, parts=[{"partition": i, "rows": r} for i, r in parts])
    write_json(out / "transform.json", data)
    start, end = (
        bounds(int(total), partition, partitions)[0],
        bounds(int(total), partition + count - 1, partitions)[1],
    )
    which = (
        f"partition {partition}"
        if count == 1
        else f"partitions {partition}-{partition + count - 1}"
    )
    log(f"transform: {which} of {partitions}: rows [{start}, {end}) = {rows}")
    return data


def _write_part(
    con: Any, src: Path, names: list[str], rows_range: tuple[int, int], target: Path
) -> int:
    """Write the rows ``[start, end)`` of ``src`` to ``target``; returns the rows written."""
    start, end = rows_range
    plain = f"read_parquet({quote_literal(str(src))})"
    if "file_row_number" in names:  # a user column of that name: cut by position instead
        rows_sql = f"SELECT * FROM {plain} LIMIT {end - start} OFFSET {start}"
    else:
        scan = f"read_parquet({quote_literal(str(src))}, file_row_number = true)"
        rows_sql = (
            f"SELECT * EXCLUDE (file_row_number) FROM {scan} "
            f"WHERE file_row_number >= {start} AND file_row_number < {end}"
        )
    with atomic_path(target) as tmp:
        rows = con.execute(
            f"COPY ({rows_sql}) TO {quote_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()[0]
    return int(rows)
