"""The ``aggregate`` step: merge the transform steps' partial statistics into per-group ones.

Each ``transform`` step writes the partial statistics of its partitions (see
:mod:`flows.steps.transform`); this step reads those of every transform step under
``--input-dir`` and writes ``aggregates.csv``::

    <group>,row_count,<c>_min,<c>_max,<c>_mean,...

for every numeric column ``c`` (declared ``integer`` or ``float`` in ``validate.json``, not the
group column), in input column order. Rows are sorted by the group value ascending, the null
group last (rendered as an empty field). Nulls are ignored by min/max/mean; a group whose values
are all null gets empty cells.

Number format (stable): integers as decimal digits; floats as Python's ``repr`` (the
shortest text that reads back to the same double, e.g. ``0.1``, ``1234.5``, ``1e+20``);
booleans ``true``/``false``; dates ``YYYY-MM-DD``; timestamps ``YYYY-MM-DD HH:MM:SS[.f]``.
Means are ``sum / count``. Integer columns: an exact integer sum (the partial sums are exact,
so their sum is the one-pass sum), cast to the nearest double, the same as Python's
``float(int)`` (checked with DuckDB 2.0.1, ties included), then divided. Float columns: DuckDB's
Kahan-compensated ``fsum`` of the partitions' own ``fsum``: within a few units in the last
place of one ``fsum`` over all the values, but not always the same double, and it may change
with the partition count.

Partial statistics (the contract between the two steps, kept here beside the merge so the
two halves are read together): a transform output folder holds :data:`PARTIALS_JSON` and the
files it lists, ``partial-<B:05d>.parquet`` for batch ``B`` of :data:`BATCH_COLUMNS` numeric
columns. Each file has one row per group value of its partitions and positional columns, so no
user column name can collide: ``g`` (the group value, its Parquet type), ``row_count``, and per
numeric column ``j`` (0-based over all batches) ``m<j>_min``, ``m<j>_max``, ``m<j>_sum``,
``m<j>_n`` (the non-null count). Integer columns keep their type for min and max and store the
sum as ``DECIMAL(38,0)``: DuckDB writes a ``HUGEINT`` (the type of an integer ``sum``) to
Parquet as ``DOUBLE``, which loses digits past 2**53. Float columns store the min, max and
``fsum`` of the values cast to ``DOUBLE``. :data:`PARTIALS_JSON` says which partitions the
folder covers, the group column, the numeric columns (``[name, "integer" | "float"]``) and the
files with the range of columns each holds; the merge checks that the folders agree on all of
it and cover every partition once.

Wide files: both steps work :data:`BATCH_COLUMNS` numeric columns per query, one query after
the other. Here each batch's merged rows go into a CSV file in ``OUTPUT/.aggregate.work``
(removed at the end), and the batches' rows (one per group, in the same order, checked) are
pasted side by side. One query over every column kills the process with SIGFPE (DuckDB 2.0)
once a group's aggregate states are wider than DuckDB's 256 KiB block: about 4,700 columns of
min, max and mean. Queries running side by side took 1.3 GB for 16,384 columns; one at a time,
well under half of that.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flows.steps._csv import connect
from flows.steps._io import DataError, atomic_path, ensure_dir, read_json, write_json
from flows.steps.types import quote_literal

__all__ = [
    "BATCH_COLUMNS",
    "PARTIALS_JSON",
    "numeric_columns",
    "partial_name",
    "partial_statistics",
    "render",
    "run",
]

#: Numeric columns per GROUP BY query (their states take about 60 bytes per column and group).
BATCH_COLUMNS = 500

#: The file of a transform output folder that describes its partial statistics.
PARTIALS_JSON = "partials.json"


def partial_name(batch: int) -> str:
    """File name of the partial statistics of batch ``batch`` of numeric columns."""
    return f"partial-{batch:05d}.parquet"


def _walk(root: Path) -> list[tuple[str, list[str]]]:
    """``(folder, file names)`` of every folder under ``root``, symlinked folders followed and
    each real folder once (two mounts of one step output must not count it twice)."""
    found: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for folder, subdirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subdirs.clear()
            continue
        seen.add(real)
        subdirs.sort()
        found.append((folder, names))
    return found


def numeric_columns(
    schema: Sequence[tuple[str, str]], group_by: str, declared: dict[str, str]
) -> list[tuple[str, bool]]:
    """``(column, is_integer)`` for the columns to aggregate, in schema order: those
    ``validate.json`` declares ``integer`` or ``float``, never the group column.

    Args:
        schema: ``(name, DuckDB type)`` of the Parquet columns.
        group_by: The group column (never aggregated).
        declared: Column types from ``validate.json`` (``integer``/``float``/...).
    """
    return [
        (name, declared[name] == "integer")
        for name, _ in schema
        if name != group_by and declared.get(name) in ("integer", "float")
    ]


def partial_statistics(index: int, column: str, is_int: bool) -> list[str]:
    """SQL of the partial statistics of the quoted ``column``, numeric column ``index``:
    ``m<index>_min``, ``_max``, ``_sum`` and ``_n`` (see the module docstring)."""
    m = f"m{index}"
    x = column if is_int else f"CAST({column} AS DOUBLE)"
    total = f"CAST(sum({x}) AS DECIMAL(38,0))" if is_int else f"fsum({x})"
    return [
        f"min({x}) AS {m}_min",
        f"max({x}) AS {m}_max",
        f"{total} AS {m}_sum",
        f"count({column}) AS {m}_n",
    ]


def _merged_statistics(index: int, is_int: bool) -> list[str]:
    """SQL of the minimum, maximum and mean of numeric column ``index`` from its partials."""
    m = f"m{index}"
    total = f"CAST(sum({m}_sum) AS DOUBLE)" if is_int else f"fsum({m}_sum)"
    # NULLIF: an all-null group has n = 0, and DuckDB 2.0 divides by zero to inf, not NULL.
    return [f"min({m}_min)", f"max({m}_max)", f"{total} / NULLIF(sum({m}_n), 0)"]


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


def _well_formed(meta: Any) -> bool:
    """Whether ``meta`` has the shape :func:`flows.steps.transform.run` writes."""
    if not isinstance(meta, dict):
        return False
    ints = [meta.get(k) for k in ("partition", "count", "partitions")]
    measures, files = meta.get("measures"), meta.get("files")
    return (
        all(isinstance(v, int) for v in ints)
        and isinstance(meta.get("group_by"), str)
        and isinstance(measures, list)
        and all(
            isinstance(m, list) and len(m) == 2 and isinstance(m[0], str)
            and m[1] in ("integer", "float")
            for m in measures
        )
        and isinstance(files, list)
        and bool(files)
        and all(
            isinstance(f, dict) and isinstance(f.get("file"), str)
            and isinstance(f.get("measures"), list) and len(f["measures"]) == 2
            and all(isinstance(i, int) and 0 <= i <= len(measures) for i in f["measures"])
            for f in files
        )
    )  # fmt: skip


def _layout(meta: dict[str, Any]) -> tuple[Any, ...]:
    """What every transform output of one run must agree on."""
    return (meta.get("group_by"), meta.get("partitions"), meta.get("measures"), meta.get("files"))


def _read_partials(root: Path, group_by: str) -> tuple[list[Path], dict[str, Any]]:
    """The transform output folders under ``root`` and their common :data:`PARTIALS_JSON`.

    Raises:
        DataError: If there is none, one is malformed, they disagree, their group column is not
            ``group_by``, or they do not cover every partition exactly once.
    """
    if not root.is_dir():
        raise DataError(
            f"{root} is not a directory; pass the folder holding the transform steps' outputs"
        )
    folders = sorted(Path(folder) for folder, names in _walk(root) if PARTIALS_JSON in names)
    if not folders:
        raise DataError(
            f"no transform output ({PARTIALS_JSON}) under {root}; run the transform steps first"
        )
    metas: list[dict[str, Any]] = []
    for folder in folders:
        meta = read_json(folder / PARTIALS_JSON)
        if not _well_formed(meta):
            raise DataError(
                f"{folder / PARTIALS_JSON} is not the partial statistics of a transform step"
                " of this release; run the transform steps again"
            )
        metas.append(meta)
    first = metas[0]
    for folder, meta in zip(folders, metas, strict=True):
        if _layout(meta) != _layout(first):
            raise DataError(
                f"the transform outputs {folders[0]} and {folder} disagree on the group"
                " column, the partition count or the numeric columns; run every transform step"
                " of the run again over the same validate output"
            )
    if first["group_by"] != group_by:
        raise DataError(
            f"the transform steps under {root} grouped by {first['group_by']!r}, not"
            f" {group_by!r}; run them again with --group-by={group_by}, or aggregate by"
            f" {first['group_by']!r}"
        )
    covered = Counter(
        i for meta in metas for i in range(meta["partition"], meta["partition"] + meta["count"])
    )
    k = first["partitions"]
    if sorted(covered.elements()) != list(range(k)):
        missing = sorted(set(range(k)) - set(covered))
        twice = sorted(i for i, n in covered.items() if n > 1)
        raise DataError(
            f"the transform outputs under {root} do not cover partitions 0..{k - 1}"
            f" once each (missing: {missing or 'none'}; more than once: {twice or 'none'});"
            " pass the folder holding one output per transform step of the run"
        )
    return folders, first


def _parquet_list(files: Sequence[Path]) -> str:
    """SQL list literal of the file paths."""
    return "[" + ", ".join(quote_literal(str(f)) for f in files) + "]"


def _check_columns(con: Any, files: Sequence[Path], root: Path, measures: range) -> None:
    """Raise :class:`DataError` unless every file is readable Parquet with the columns of
    ``measures`` (a missing or broken file, or one of another layout). Every file's footer is
    read: ``read_parquet`` of a list reads only the first file's until the query runs."""
    from flows.steps import _db

    try:
        found = con.execute(
            f"SELECT file_name, list(name) FROM parquet_schema({_parquet_list(files)})"
            " GROUP BY file_name"
        ).fetchall()
    except _db.Error as exc:
        first = str(exc).splitlines()[0]
        raise DataError(
            f"cannot read the partial statistics under {root} ({first}); run the transform"
            " steps again"
        ) from None
    wanted = ["g", "row_count"]
    wanted += [f"m{j}_{s}" for j in measures for s in ("min", "max", "sum", "n")]
    for name, columns in found:
        have = set(columns)
        if missing := [c for c in wanted if c not in have]:
            raise DataError(
                f"{name} lacks the columns {', '.join(missing[:5])} of the partial statistics;"
                " run the transform steps again"
            )


def run(
    input_dir: str | os.PathLike[str],
    group_by: str,
    output_dir: str | os.PathLike[str],
    *,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the aggregate step.

    Args:
        input_dir: Directory searched recursively for the transform steps' outputs (one folder
            per step, each with its :data:`PARTIALS_JSON`).
        group_by: Column to group by (the one the transform steps grouped by).
        output_dir: Directory for ``aggregates.csv`` and ``aggregate.json``.
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``aggregate.json``.

    Raises:
        DataError: If there are no transform outputs, they disagree with each other or with
            ``group_by``, miss or repeat a partition, or their files are unreadable.
    """
    root = Path(input_dir)
    folders, meta = _read_partials(root, group_by)
    measures = [(str(name), kind == "integer") for name, kind in meta["measures"]]
    header = [group_by, "row_count"]
    for name, _ in measures:
        header += [f"{name}_min", f"{name}_max", f"{name}_mean"]
    batch_files = [[folder / batch["file"] for folder in folders] for batch in meta["files"]]
    out = ensure_dir(output_dir)
    work = out / ".aggregate.work"
    shutil.rmtree(work, ignore_errors=True)
    con = connect(threads=threads)
    try:
        queries = []
        for number, (batch, files) in enumerate(zip(meta["files"], batch_files, strict=True)):
            start, end = batch["measures"]
            _check_columns(con, files, root, range(start, end))
            scan = f"read_parquet({_parquet_list(files)})"
            exprs = ["g"] + (["sum(row_count)"] if number == 0 else [])
            exprs += [e for j in range(start, end) for e in _merged_statistics(j, measures[j][1])]
            queries.append(
                f"SELECT {', '.join(exprs)} FROM {scan} GROUP BY g ORDER BY g ASC NULLS LAST"
            )
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
        shutil.rmtree(work, ignore_errors=True)
    data = {"groups": groups, "group_by": group_by}
    write_json(out / "aggregate.json", data)
    outputs = f"{len(folders)} transform output" + ("s" if len(folders) != 1 else "")
    log(
        f"aggregate: {outputs} ({meta['partitions']} partitions), {groups} groups by"
        f" {group_by!r}, {len(measures)} numeric columns"
    )
    return data
