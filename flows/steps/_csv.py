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
    "line_limit",
    "records_sql",
]

#: Longest record DuckDB is asked to read; longer ones are quarantined.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: DuckDB's own ``max_line_size`` default, the smallest limit the steps ask for.
DEFAULT_LINE_BYTES = 2 * 1024 * 1024


def line_limit(longest: int) -> int:
    """The ``max_line_size`` to read a file whose longest record has at most ``longest``
    bytes (:attr:`flows.steps._records.RecordScan.longest`): a power of two of at least
    twice that, between DuckDB's default and :data:`MAX_RECORD_BYTES`.

    DuckDB reads a file with one thread when its limit is large (its buffer is 16 times the
    limit, 1 GiB at 64 MiB), so a file of short records is read with a small one.

    Examples:
        >>> line_limit(100) >> 20, line_limit(3 << 20) >> 20, line_limit(1 << 30) >> 20
        (2, 8, 64)
    """
    limit = DEFAULT_LINE_BYTES
    while limit < 2 * longest and limit < MAX_RECORD_BYTES:
        limit *= 2
    return limit


def connect(temp_dir: Path | None = None, threads: int | None = None) -> Any:
    """Open an in-memory DuckDB connection configured for the steps.

    Args:
        temp_dir: Where DuckDB may spill to disk.
        threads: Thread count (default: DuckDB's, i.e. all cores).

    Returns:
        A ``duckdb.DuckDBPyConnection``.
    """
    from flows.steps import _db

    con = _db.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {quote_literal(str(temp_dir))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def records_sql(path: Path, ncols: int, rejects: str, max_line: int = MAX_RECORD_BYTES) -> str:
    """``read_csv`` call returning the records as VARCHAR columns ``c0..c{n-1}``.

    Args:
        path: CSV file (header on line 1, skipped).
        ncols: Number of header columns.
        rejects: Name prefix for the reject tables (appended to when they exist); rows
            with a wrong number of fields or broken quoting go there instead of failing
            the read. (``ignore_errors`` is not used: after a record with text after a
            closing quote it drops every later record without a word.)
        max_line: DuckDB's ``max_line_size`` (see :func:`line_limit`).

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
        f"max_line_size = {int(max_line)}",
        "store_rejects = true",
        f"rejects_table = '{rejects}_errors'",
        f"rejects_scan = '{rejects}_scans'",
    ]
    call = f"read_csv({quote_literal(str(path))}, {', '.join(opts)})"
    # With one column DuckDB reads a blank line as a record holding NULL; drop those.
    return f"(SELECT * FROM {call} WHERE c0 IS NOT NULL)" if ncols == 1 else call
