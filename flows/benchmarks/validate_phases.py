"""What each promise of ``validate`` costs: ``python -m flows.benchmarks.validate_phases CSV``.

Runs the phases of the validate step one at a time, on one connection, each after the other
(so that none hides behind another), and prints their CPU and wall seconds as JSON lines beside
DuckDB's own typed read of the same file:

* ``record_scan``: the independent count of records (:mod:`flows.steps._records`; in the step it
  runs in a thread beside DuckDB);
* ``sample_classes``: the classes of the first records (:data:`~flows.steps.validate.SAMPLE_MIN`,
  the 99% rule's evidence);
* ``typed_pass``: every value parsed by the pipeline's rules into the staging table, read with
  the line limit fit to the longest record, and the classes of the columns the sample cannot
  settle, as the step does;
* ``valid_parquet``: the valid rows written as Parquet (zstd, as the step writes its partitions);
* ``duckdb_typed_read``: ``read_csv(..., nullstr='NA')`` into a table, DuckDB's own types.

Best of ``--repeat`` runs (default 3) by CPU time.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "phases"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phases(csv_path: Path, repeat: int = 3) -> dict[str, dict[str, float]]:
    """CPU and wall seconds of each phase (best of ``repeat`` by CPU)."""
    from flows.steps import _records, validate
    from flows.steps._csv import DEFAULT_LINE_BYTES, check_input, connect, line_limit
    from flows.steps.formats import PLAIN
    from flows.steps.types import infer_from_counts, quote_literal

    src = check_input(csv_path)
    n = len(src.columns)
    # The valid rows go to a folder of this run's own, never beside the user's file.
    scratch = tempfile.TemporaryDirectory(prefix="aiop-validate-phases-")
    con = connect()
    counter = [0]
    types: list[str] = []
    whole: list[int] = []
    scanned = _records.scan(src.path, n)
    limit = line_limit(scanned.longest)

    def rej() -> str:
        counter[0] += 1
        return f"r{counter[0]}"

    def sample() -> None:
        got, counts = validate._class_counts(
            con, src.path, n, validate.SAMPLE_MIN, max_line=DEFAULT_LINE_BYTES
        )
        types[:] = [infer_from_counts(c) for c in counts]
        whole[:] = validate._foreseen(types, counts, got, scanned.records, range(n))

    def typed_pass() -> None:
        work = Path(scratch.name)  # batch files of a wide file: the tool's folder, never the user's
        validate._write_staging(con, src.path, types, [PLAIN] * n, work, rej(), limit, whole)

    def valid_parquet() -> None:
        target = quote_literal(str(Path(scratch.name) / "valid.parquet"))
        cols = ", ".join(f"p{i}" for i in range(n))
        con.execute(
            f"COPY (SELECT {cols} FROM {validate.STAGE} WHERE _fails IS NULL) TO {target} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )

    def typed_read() -> None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE typed AS FROM "
            f"read_csv({quote_literal(str(csv_path))}, nullstr='NA', store_rejects=true)"
        )

    steps: dict[str, Callable[[], Any]] = {
        "record_scan": lambda: _records.scan(src.path, n),
        "sample_classes": sample,
        "typed_pass": typed_pass,
        "valid_parquet": valid_parquet,
        "duckdb_typed_read": typed_read,
    }
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for name, step in steps.items():
            cpu, wall = _cpu(), time.perf_counter()
            step()
            took = {"cpu_s": _cpu() - cpu, "wall_s": time.perf_counter() - wall}
            if name not in best or took["cpu_s"] < best[name]["cpu_s"]:
                best[name] = took
    con.close()
    scratch.cleanup()
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m flows.benchmarks.validate_phases")
    parser.add_argument("csv", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for name, took in phases(args.csv, args.repeat).items():
        print(json.dumps({"phase": name, **{k: round(v, 3) for k, v in took.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
