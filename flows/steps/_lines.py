"""Physical-line bookkeeping for ``validate``: line numbers and raw text of records.

DuckDB's CSV reader returns records in file order but without their line numbers, and it
skips blank lines. Two cheap extra reads fill the gap:

* :func:`scan_lines`, a byte scan in Python (C-speed ``bytes.count``/``find``), counts
  the physical lines and finds the blank ones;
* :func:`fetch_lines`, a DuckDB read of the file as plain lines (one VARCHAR per line,
  numbered with a streaming ``row_number()``), returns the raw text of wanted lines and
  the lines DuckDB silently accepted with trailing extra empty fields.

With the sorted list of *excluded* lines ``e_0 < e_1 < ...`` (blank lines and lines
DuckDB rejected), the n-th accepted record (0-based ``rid``) sits on line::

    rid + 2 + #{j : e_j - 2 - j <= rid}

because ``e_j - 2 - j`` is the number of accepted records before line ``e_j``. This holds
when every record is one physical line (:meth:`LineScan.exact`); when a record spans
several lines (a quoted field with a newline) later line numbers are approximate.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.steps._csv import raw_lines_sql

__all__ = [
    "LineScan",
    "count_fields",
    "excluded_table",
    "extra_field_lines",
    "fetch_lines",
    "map_lines_sql",
    "rid_of_line",
    "scan_lines",
]


_CHUNK = 1 << 24


@dataclass
class LineScan:
    """Line counts of the input (a fast pure-Python byte scan).

    Attributes:
        total: Number of physical lines, header included (a last line without a line
            end counts).
        blanks: Line numbers of empty lines (nothing but the line end), ascending.
    """

    total: int = 0
    blanks: list[int] = field(default_factory=list)

    def exact(self, records: int) -> bool:
        """True if every record is exactly one physical line (so line numbers are exact).

        Args:
            records: Accepted plus rejected records DuckDB read.
        """
        return self.total - 1 - len(self.blanks) == records


def _blank_offsets(block: bytes) -> list[int]:
    """Offsets of the line ends of empty lines in ``block`` (which starts a line)."""
    found = []
    patterns = (b"\n\n", b"\n\r\n") if b"\r" in block else (b"\n\n",)
    for pattern in patterns:
        pos = block.find(pattern)
        while pos != -1:
            found.append(pos + len(pattern) - 1)
            pos = block.find(pattern, pos + 1)
    if block.startswith((b"\n", b"\r\n")):
        found.append(block.index(b"\n"))
    return sorted(found)


def scan_lines(path: Path) -> LineScan:
    """Count lines and find blank lines of ``path``, reading it in 16 MiB blocks.

    The work is done by ``bytes.find``/``bytes.count`` (C loops); Python only sees the
    blank lines.
    """
    scan = LineScan()
    carry = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            block = carry + chunk
            cut = block.rfind(b"\n") + 1
            block, carry = block[:cut], block[cut:]
            last, line = 0, scan.total + 1
            for off in _blank_offsets(block):
                line += block.count(b"\n", last, off)
                last = off
                scan.blanks.append(line)
            scan.total += block.count(b"\n")
    if carry:
        scan.total += 1
    return scan


def count_fields(raw: str) -> int:
    """Number of CSV fields in one physical line (0 if it does not parse)."""
    if '"' not in raw:
        return raw.count(",") + 1
    try:
        return len(next(csv.reader([raw], strict=True), []))
    except csv.Error:
        return 0


def extra_field_lines(
    candidates: Iterable[tuple[int, str]], ncols: int, rejected: Iterable[int]
) -> list[tuple[int, str, int]]:
    """Lines DuckDB accepted although they have more fields than the header.

    DuckDB ignores empty fields after the last column (``1,2,3,`` reads as 3 fields);
    by the step's rules such a row has a wrong number of fields.

    Args:
        candidates: ``(line, raw)`` of lines ending in a comma (see :func:`fetch_lines`).
        ncols: Number of header columns.
        rejected: Lines DuckDB rejected (already quarantined).

    Returns:
        ``(line, raw, fields)`` for each such line.
    """
    skip = set(rejected)
    out = []
    for line, raw in candidates:
        n = count_fields(raw)
        if line not in skip and n > ncols:
            out.append((line, raw, n))
    return out


def rid_of_line(line: int, excluded: Sequence[int]) -> int:
    """Inverse of the line mapping: the 0-based accepted-record index on ``line``."""
    return line - 2 - bisect.bisect_left(excluded, line)


def excluded_table(con: Any, name: str, reject_table: str, blanks: Sequence[int]) -> None:
    """Create temp table ``name(g, cnt)`` for :func:`map_lines_sql`.

    Args:
        con: DuckDB connection.
        name: Table to create.
        reject_table: DuckDB reject-errors table (its ``line`` column is used).
        blanks: Blank line numbers.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name}_e AS SELECT unnest($1::BIGINT[]) AS e", [list(blanks)]
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS "
        "SELECT e - 1 - row_number() OVER (ORDER BY e) AS g, row_number() OVER (ORDER BY e) AS cnt "
        f"FROM (SELECT e FROM {name}_e UNION SELECT DISTINCT CAST(line AS BIGINT) FROM {reject_table})"
    )


def map_lines_sql(rows: str, excluded: str) -> str:
    """SQL adding ``line`` to ``rows`` (a relation with a 0-based ``rid`` column).

    Args:
        rows: Relation (table name or parenthesised query) with column ``rid``.
        excluded: Table made by :func:`excluded_table`.
    """
    return (
        f"SELECT r.*, r.rid + 2 + coalesce(x.cnt, 0) AS line FROM {rows} r "
        f"ASOF LEFT JOIN (SELECT g, max(cnt) AS cnt FROM {excluded} GROUP BY g) x "
        "ON r.rid >= x.g"
    )


def fetch_lines(con: Any, path: Path, ncols: int, wanted: str, table: str) -> bool:
    """One plain-line read of ``path`` into temp table ``table(rn, raw, is_trailing)``.

    Keeps the lines listed in ``wanted(line)`` and every line that ends in a comma and
    has at least ``ncols`` commas (``is_trailing`` = true), a candidate for
    :func:`extra_field_lines`.

    Returns:
        False if DuckDB cannot read the file as plain lines (e.g. a line that is not
        UTF-8; the record reader quarantines that line on its own).
    """
    import duckdb

    commas = "strlen(raw) - strlen(replace(raw, ',', ''))"
    trailing = f"(rn > 1 AND suffix(raw, ',') AND {commas} >= {int(ncols)})"
    numbered = f"(SELECT row_number() OVER () AS rn, raw FROM {raw_lines_sql(path)})"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT rn, raw, {trailing} AS is_trailing "
            f"FROM {numbered} WHERE {trailing} OR rn IN (SELECT line FROM {wanted})"
        )
    except duckdb.Error:
        return False
    return True
