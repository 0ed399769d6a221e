"""CSV input checks (pure Python) and the DuckDB ``read_csv`` calls the steps share.

Input files are RFC 4180 CSV: comma-separated, ``"`` quotes (doubled to escape), UTF-8
(a BOM is ignored), ``\\n`` or ``\\r\\n`` line ends (not mixed), first line = header.
"""

from __future__ import annotations

import codecs
import csv
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.steps._io import DataError
from flows.steps.types import quote_literal

__all__ = [
    "SNIFF_BYTES",
    "InputFile",
    "check_input",
    "connect",
    "raw_lines_sql",
    "records_sql",
]

SNIFF_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1024 * 1024
# A separator that does not occur in text, so DuckDB returns each physical line whole.
_LINE_DELIM = "\x1f\x1e"


@dataclass(frozen=True)
class InputFile:
    """A CSV file that passed :func:`check_input`."""

    path: Path
    columns: tuple[str, ...]
    size: int


def _header_names(line: str, path: Path) -> tuple[str, ...]:
    names = next(csv.reader([line]), [])
    if not names or names == [""]:
        raise DataError(f"{path}: the first line (header) is empty; add a header line")
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if not name.strip():
            raise DataError(
                f"{path}: header column {i} has an empty name; name every column in line 1"
            )
        key = name.lower()
        if key in seen:
            raise DataError(
                f"{path}: header column {i} {name!r} repeats column {seen[key]} "
                "(names are compared case-insensitively); make the names unique"
            )
        seen[key] = i
    return tuple(names)


def check_input(path: str | os.PathLike[str]) -> InputFile:
    """Check that ``path`` is a usable CSV file and read its header.

    Args:
        path: The input file.

    Returns:
        The file's path, header column names and size.

    Raises:
        DataError: If the file is missing, not a regular file, empty, binary (NUL bytes
            or invalid UTF-8 in the first 64 KiB), or has no valid header.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataError(f"input file {p} does not exist; check the path") from None
    except OSError as exc:
        raise DataError(f"input file {p} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"input {p} is not a regular file; pass a CSV file")
    if st.st_size == 0:
        raise DataError(f"input file {p} is empty; it needs at least a header line")
    try:
        with p.open("rb") as fh:
            head = fh.read(max(SNIFF_BYTES, MAX_HEADER_BYTES))
    except OSError as exc:
        raise DataError(f"input file {p} cannot be read ({exc.strerror})") from None
    sniff = head[:SNIFF_BYTES]
    if b"\x00" in sniff:
        raise DataError(f"input file {p} looks binary (NUL bytes in the first 64 KiB); pass CSV")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sniff, final=len(head) <= SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"input file {p} is not UTF-8 text (bad byte at offset {exc.start}); "
            "convert it to UTF-8 CSV"
        ) from None
    end = head.find(b"\n")
    if end == -1 and len(head) < st.st_size:
        raise DataError(f"input file {p}: header line is longer than 1 MiB; is this CSV?")
    first = head if end == -1 else head[:end]
    try:
        line = first.decode("utf-8").removeprefix("\ufeff").rstrip("\r")
    except UnicodeDecodeError:
        raise DataError(f"input file {p}: header line is not UTF-8; convert it") from None
    return InputFile(p, _header_names(line, p), st.st_size)


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


def records_sql(path: Path, ncols: int, rejects: str | None = None) -> str:
    """``read_csv`` call returning the records as VARCHAR columns ``c0..c{n-1}``.

    Args:
        path: CSV file (header on line 1, skipped).
        ncols: Number of header columns.
        rejects: Name prefix for the reject tables; rows with a wrong number of fields
            or broken quoting go there instead of failing the read. None skips such rows.

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
    ]
    if rejects:
        opts += [
            "store_rejects = true",
            f"rejects_table = '{rejects}_errors'",
            f"rejects_scan = '{rejects}_scans'",
        ]
    else:
        opts.append("ignore_errors = true")
    call = f"read_csv({quote_literal(str(path))}, {', '.join(opts)})"
    # With one column DuckDB reads a blank line as a record holding NULL; drop those.
    return f"(SELECT * FROM {call} WHERE c0 IS NOT NULL)" if ncols == 1 else call


def raw_lines_sql(path: Path) -> str:
    """``read_csv`` call returning each physical line as ``raw`` (NULL for blank lines).

    Line ends (``\\n``/``\\r\\n``) are stripped; the header is line 1.
    """
    return (
        f"read_csv({quote_literal(str(path))}, columns = {{'raw': 'VARCHAR'}}, "
        f"header = false, auto_detect = false, delim = '{_LINE_DELIM}', quote = '', "
        "escape = '', strict_mode = false, all_varchar = true)"
    )
