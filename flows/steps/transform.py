"""The ``transform`` step: cut ``valid.parquet`` into K contiguous partitions.

Partition ``I`` of ``K`` holds rows ``[I*n//K, (I+1)*n//K)`` of the input in input order,
so concatenating partitions ``0..K-1`` gives the input back. The flow runs the K
partitions as K parallel steps; each writes ``part-<I:05d>.parquet`` (zstd) and
``transform.json`` = ``{"partition": I, "rows": n}``.
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
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the transform step for one partition.

    Args:
        input_path: ``valid.parquet``.
        output_dir: Directory for the part file and ``transform.json``.
        partition: 0-based partition index ``I``.
        partitions: Number of partitions ``K``.
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``transform.json``.

    Raises:
        UsageError: If ``K < 1`` or ``I`` is not in ``[0, K)``.
        DataError: If the input is missing or not Parquet.
    """
    import duckdb

    if partitions < 1 or not 0 <= partition < partitions:
        raise UsageError(f"--partition must be in [0, {partitions}) and --partitions >= 1")
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
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise DataError(f"{src} is not readable Parquet ({first}); re-run validate") from None
        start, end = bounds(int(total), partition, partitions)
        if "file_row_number" in names:  # a user column of that name: cut by position instead
            rows_sql = f"SELECT * FROM {plain} LIMIT {end - start} OFFSET {start}"
        else:
            scan = f"read_parquet({quote_literal(str(src))}, file_row_number = true)"
            rows_sql = (
                f"SELECT * EXCLUDE (file_row_number) FROM {scan} "
                f"WHERE file_row_number >= {start} AND file_row_number < {end}"
            )
        target = out / part_name(partition)
        with atomic_path(target) as tmp:
            rows = con.execute(
                f"COPY ({rows_sql}) TO {quote_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
            ).fetchone()[0]
    finally:
        con.close()
    data = {"partition": partition, "rows": int(rows)}
    write_json(out / "transform.json", data)
    log(f"transform: partition {partition} of {partitions}: rows [{start}, {end}) = {rows}")
    return data
