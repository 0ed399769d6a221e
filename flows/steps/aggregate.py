"""The ``aggregate`` step: per-group statistics over all partition files.

Reads every ``**/*.parquet`` under ``--input-dir`` and writes ``aggregates.csv``::

    <group>,row_count,<c>_min,<c>_max,<c>_mean,...

for every numeric column ``c`` (integer or float, not boolean, not the group column), in
input column order. Rows are sorted by the group value ascending, the null group last
(rendered as an empty field). Nulls are ignored by min/max/mean; a group whose values
are all null gets empty cells.

Number format (stable): integers as decimal digits; floats as Python's ``repr`` (the
shortest text that reads back to the same double, e.g. ``0.1``, ``1234.5``, ``1e+20``);
booleans ``true``/``false``; dates ``YYYY-MM-DD``; timestamps ``YYYY-MM-DD HH:MM:SS[.f]``.
Means are ``sum / count`` with an exact integer sum for integer columns and DuckDB's
Kahan-compensated ``fsum`` for float columns.

Wide files: the statistics are computed :data:`BATCH_COLUMNS` numeric columns per query,
one query after the other, each into a CSV file of its rows in ``OUTPUT/.aggregate.work``
(removed at the end), and the batches' rows (one per group, in the same order, checked)
pasted side by side. One query over every column kills the process with SIGFPE (DuckDB 2.0) once a
group's aggregate states are wider than DuckDB's 256 KiB block: about 4,700 columns of min,
max and mean. Queries running side by side took 1.3 GB for 16,384 columns; one at a time,
well under half of that.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flows.steps._csv import connect
from flows.steps._io import DataError, atomic_path, ensure_dir, read_json, write_json
from flows.steps.types import quote_ident, quote_literal

__all__ = ["BATCH_COLUMNS", "find_parts", "numeric_columns", "render", "run"]

#: Numeric columns per GROUP BY query (their states take about 60 bytes per column and group).
BATCH_COLUMNS = 500

_INTEGER = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT"}  # fmt: skip
_FLOAT = {"FLOAT", "DOUBLE", "REAL"}


def find_parts(directory: str | os.PathLike[str]) -> list[Path]:
    """All ``*.parquet`` files under ``directory`` (recursively), sorted by path.

    Symlinked folders are followed (runners mount step outputs as symlinks), each real
    folder once.

    Raises:
        DataError: If the directory does not exist or holds no Parquet file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory; pass the directory with the part files")
    files: list[Path] = []
    seen: set[str] = set()
    for folder, subdirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subdirs.clear()
            continue
        seen.add(real)
        files += [Path(folder) / n for n in names if n.endswith(".parquet")]
    if not files:
        raise DataError(f"no *.parquet file under {root}; run the transform step first")
    return sorted(files)


def numeric_columns(
    schema: Sequence[tuple[str, str]], group_by: str, declared: dict[str, str] | None
) -> list[tuple[str, bool]]:
    """``(column, is_integer)`` for the columns to aggregate, in schema order.

    Args:
        schema: ``(name, DuckDB type)`` of the Parquet columns.
        group_by: The group column (never aggregated).
        declared: Column types from ``validate.json`` (``integer``/``float``/...); when
            given they decide which columns are numeric.
    """
    out = []
    for name, duck_type in schema:
        if name == group_by:
            continue
        if declared is not None:
            kind = declared.get(name)
            if kind in ("integer", "float"):
                out.append((name, kind == "integer"))
        elif duck_type in _INTEGER or duck_type in _FLOAT or duck_type.startswith("DECIMAL"):
            out.append((name, duck_type in _INTEGER))
    return out


def _write_rows(result: Any, writer: Any) -> int:
    """Stream a query's rows into a CSV writer, each value rendered; returns the rows."""
    count = 0
    while rows := result.fetchmany(10_000):
        writer.writerows([render(v) for v in row] for row in rows)
        count += len(rows)
    return count


def _paste(parts: Sequence[Path], writer: Any) -> int:
    """Write the rows of the batch files side by side (each row's group value once)."""
    handles = [p.open(newline="", encoding="utf-8") for p in parts]
    try:
        count = 0
        for rows in itertools.zip_longest(*(csv.reader(h) for h in handles)):
            if any(r is None or r[0] != rows[0][0] for r in rows):
                raise RuntimeError("the batches of columns returned different groups")
            writer.writerow([*rows[0], *(v for r in rows[1:] for v in r[1:])])
            count += 1
        return count
    finally:
        for h in handles:
            h.close()


def _statistics(column: str, is_int: bool) -> list[str]:
    """SQL of the minimum, maximum and mean of the quoted ``column``."""
    if is_int:
        return [
            f"min({column})",
            f"max({column})",
            f"CAST(sum({column}) AS DOUBLE) / count({column})",
        ]
    x = f"CAST({column} AS DOUBLE)"
    return [f"min({x})", f"max({x})", f"fsum({x}) / count({column})"]


def render(value: object) -> str:
    """Text of one output cell (see the module docstring for the formats)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def run(
    input_dir: str | os.PathLike[str],
    group_by: str,
    output_dir: str | os.PathLike[str],
    columns_json: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the aggregate step.

    Args:
        input_dir: Directory searched recursively for ``*.parquet`` part files.
        group_by: Column to group by.
        output_dir: Directory for ``aggregates.csv`` and ``aggregate.json``.
        columns_json: Optional ``validate.json`` whose ``columns`` types pick the
            numeric columns.
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``aggregate.json``.

    Raises:
        DataError: If there are no part files, the group column does not exist, or
            ``columns_json`` is unreadable.
    """
    from flows.steps import _db

    files = find_parts(input_dir)
    declared = None
    if columns_json is not None:
        meta = read_json(columns_json)
        if not isinstance(meta, dict) or not isinstance(meta.get("columns"), dict):
            raise DataError(f"{columns_json} has no 'columns' object; pass validate.json")
        declared = {str(k): str(v) for k, v in meta["columns"].items()}
    out = ensure_dir(output_dir)
    con = connect(threads=threads)
    try:
        scan = "read_parquet([" + ", ".join(quote_literal(str(f)) for f in files) + "])"
        try:
            schema = [
                (r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
            ]
        except _db.Error as exc:
            first = str(exc).splitlines()[0]
            raise DataError(f"cannot read the part files under {input_dir} ({first})") from None
        names = [name for name, _ in schema]
        if group_by not in names:
            raise DataError(
                f"group-by column {group_by!r} not found in the part files; "
                f"available columns: {', '.join(names)}"
            )
        measures = numeric_columns(schema, group_by, declared)
        header = [group_by, "row_count"]
        for name, _ in measures:
            header += [f"{name}_min", f"{name}_max", f"{name}_mean"]
        g = quote_ident(group_by)
        batches = [measures[i : i + BATCH_COLUMNS] for i in range(0, len(measures), BATCH_COLUMNS)]
        queries = []
        for number, batch in enumerate(batches or [[]]):
            exprs = [f"{g} AS g{number}"] + (["count(*)"] if number == 0 else [])
            exprs += [e for name, is_int in batch for e in _statistics(quote_ident(name), is_int)]
            queries.append(
                f"SELECT {', '.join(exprs)} FROM {scan} GROUP BY {g} ORDER BY {g} ASC NULLS LAST"
            )
        work = out / ".aggregate.work"
        shutil.rmtree(work, ignore_errors=True)
        with (
            atomic_path(out / "aggregates.csv") as tmp,
            tmp.open("w", newline="", encoding="utf-8") as fh,
        ):
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            if len(queries) == 1:
                groups = _write_rows(con.execute(queries[0]), writer)
            else:  # each batch alone into a file of its rows, then the files side by side
                work.mkdir()
                parts = [work / f"batch-{number}.csv" for number in range(len(queries))]
                for query, part in zip(queries, parts, strict=True):
                    with part.open("w", newline="", encoding="utf-8") as batch_fh:
                        _write_rows(con.execute(query), csv.writer(batch_fh, lineterminator="\n"))
                groups = _paste(parts, writer)
    finally:
        con.close()
        shutil.rmtree(out / ".aggregate.work", ignore_errors=True)
    data = {"groups": groups, "group_by": group_by}
    write_json(out / "aggregate.json", data)
    log(
        f"aggregate: {len(files)} files, {groups} groups by {group_by!r}, {len(measures)} numeric columns"
    )
    return data
