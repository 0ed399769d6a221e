"""The DuckDB connection and ``read_csv`` call the steps share.

Input files are RFC 4180 CSV: comma-separated, ``"`` quotes (doubled to escape), UTF-8
(a BOM is ignored), first line = header. The checks of the file and its header live in
:mod:`flows.steps.header` (re-exported here); records are counted by
:mod:`flows.steps._records`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.steps.header import SNIFF_BYTES, InputFile, check_input
from flows.steps.types import quote_literal

__all__ = [
    "MAX_RECORD_BYTES",
    "SNIFF_BYTES",
    "InputFile",
    "check_input",
    "connect",
    "records_sql",
]

#: Longest record DuckDB is asked to read; longer ones are quarantined.
MAX_RECORD_BYTES = 64 * 1024 * 1024


def connect(temp_dir: Path | None = None, threads: int | None = None) -> Any:
    """Open an in-memory DuckDB connection configured for the steps.

    Args:
        temp_dir: Where DuckDB may spill to disk.
        threads: Thread count (default: DuckDB's, i.e. all cores).

    Returns:
        A ``duckdb.DuckDBPyConnection``.
    """
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {quote_literal(str(temp_dir))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def records_sql(path: Path, ncols: int, rejects: str) -> str:
    """``read_csv`` call returning the records as VARCHAR columns ``c0..c{n-1}``.

    Args:
        path: CSV file (header on line 1, skipped).
        ncols: Number of header columns.
        rejects: Name prefix for the reject tables (appended to when they exist); rows
            with a wrong number of fields or broken quoting go there instead of failing
            the read. (``ignore_errors`` is not used: after a record with text after a
            closing quote it drops every later record without a word.)

    Returns:
        A relation usable after ``FROM``.
    """
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncols))
    opts = [
        f"columns = {{{cols}}}",
        "header = true",
        "auto_detect = false",
        "delim = ','",
        "quote = '\"'",
        "escape = '\"'",
        "strict_mode = true",
        "null_padding = false",
        "allow_quoted_nulls = false",  # keep "" as a value: a one-column record of "" counts
        f"max_line_size = {MAX_RECORD_BYTES}",
        "store_rejects = true",
        f"rejects_table = '{rejects}_errors'",
        f"rejects_scan = '{rejects}_scans'",
    ]
    call = f"read_csv({quote_literal(str(path))}, {', '.join(opts)})"
    # With one column DuckDB reads a blank line as a record holding NULL; drop those.
    return f"(SELECT * FROM {call} WHERE c0 IS NOT NULL)" if ncols == 1 else call
