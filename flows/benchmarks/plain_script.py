"""The plain DuckDB script a data engineer would write instead of the pipeline.

``python -m flows.benchmarks.plain_script --input CSV --output DIR --group-by COLUMN`` does what
the pipeline's job amounts to, the way DuckDB's documentation suggests and nothing more:
``read_csv(..., nullstr='NA', store_rejects=true)`` into a table (DuckDB's own type detection,
bad rows into its rejects table), ``COPY`` of the table to ``valid.parquet``, and per group the
row count and the min, max and mean of every numeric column into ``aggregates.csv``. No record
count of its own, no 99% rule, no leading-zero or precision rules, no quarantine file: what
that costs is the difference between this script and the pipeline.

``--typed-read`` does only DuckDB's typed read of the file to Parquet (``COPY (FROM
read_csv(...)) TO ...``), the measure of the ``validate`` step alone.

Prints one JSON line: rows read, rows rejected, the column types and the phases' seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run", "typed_read"]

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read(path: Path) -> str:
    return f"read_csv({_lit(str(path))}, nullstr='NA', store_rejects=true)"


def typed_read(csv_path: Path, output: Path) -> dict[str, Any]:
    """DuckDB's own typed read of ``csv_path`` to ``output/valid.parquet``."""
    import duckdb

    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = duckdb.connect()
    target = output / "valid.parquet"
    rows = con.execute(
        f"COPY (FROM {_read(csv_path)}) TO {_lit(str(target))} (FORMAT parquet)"
    ).fetchone()
    assert rows is not None
    con.close()
    return {"rows": int(rows[0]), "seconds": time.perf_counter() - started}


def run(csv_path: Path, output: Path, group_by: str) -> dict[str, Any]:
    """The script: read into a table, write Parquet, aggregate per group."""
    import duckdb

    output.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS FROM {_read(csv_path)}")
    phases["read_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    target = output / "valid.parquet"
    con.execute(f"COPY t TO {_lit(str(target))} (FORMAT parquet)")
    phases["parquet_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    described = con.execute("DESCRIBE t").fetchall()
    types = {str(name): str(type_) for name, type_, *_ in described}
    numeric = [c for c, t in types.items() if t.startswith(_NUMERIC) and c != group_by]
    stats = ", ".join(
        f"{fn}({_ident(c)}) AS {_ident(f'{c}_{fn}')}"
        for c in numeric
        for fn in ("min", "max", "avg")
    )
    g = _ident(group_by)
    aggregates = output / "aggregates.csv"
    con.execute(
        f"COPY (SELECT {g}, count(*) AS row_count{', ' + stats if stats else ''} FROM t "
        f"GROUP BY {g} ORDER BY {g} NULLS LAST) TO {_lit(str(aggregates))} (HEADER)"
    )
    phases["aggregate_s"] = time.perf_counter() - mark
    rows = con.execute("SELECT count(*) FROM t").fetchone()
    rejected = con.execute("SELECT count(*) FROM reject_errors").fetchone()
    assert rows is not None and rejected is not None
    con.close()
    return {
        "rows": int(rows[0]),
        "rejected": int(rejected[0]),
        "columns": types,
        "phases": phases,
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m flows.benchmarks.plain_script")
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--group-by")
    parser.add_argument("--typed-read", action="store_true", help="typed read to Parquet only")
    args = parser.parse_args(argv)
    if args.typed_read:
        result = typed_read(args.input, args.output)
    elif not args.group_by:
        parser.error("--group-by is needed (unless --typed-read)")
    else:
        result = run(args.input, args.output, args.group_by)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
