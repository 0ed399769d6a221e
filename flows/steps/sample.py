"""Deterministic sample CSV generator (the ``ingest`` step without ``--input``).

The whole file is produced by one DuckDB ``COPY`` statement: every value is derived
from ``hash(row, seed, stream)``, so the output depends only on ``rows`` and ``seed``
(and the DuckDB version's hash function), runs on all cores and never loops over rows
in Python. Each line is assembled as a single string and written with quoting
disabled, so the CSV quoting seen in the file is exactly the one built here.

Columns (see :data:`COLUMNS`): ``id`` integer, ``customer`` string (about 1% written as
a quoted ``"Last, First"``), ``category`` one of :data:`CATEGORIES`, ``amount`` float
with 2 decimals, ``quantity`` integer, ``active`` ``true``/``false``, ``signup_date``
``YYYY-MM-DD``, ``event_ts`` ``YYYY-MM-DD HH:MM:SS``. Optional fields hold a null
token (``""``, ``NA``, ``N/A``, ``null``, ``NULL``, ``None``) in 1-2% of rows.

About :data:`MALFORMED_PER_MILLE` per mille of the rows are malformed, in four equally
likely kinds: a missing field (7 fields), an extra non-empty field (9 fields), a
non-numeric amount (``abc`` or ``"12,5x"``), or an impossible signup date
(``2023-02-30``). :func:`count_malformed` returns their exact number, which is exactly
what ``validate`` quarantines for a generated file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flows.steps._io import atomic_path

__all__ = [
    "CATEGORIES",
    "COLUMNS",
    "MALFORMED_PER_MILLE",
    "count_malformed",
    "generate",
]

COLUMNS: tuple[str, ...] = (
    "id",
    "customer",
    "category",
    "amount",
    "quantity",
    "active",
    "signup_date",
    "event_ts",
)
CATEGORIES: tuple[str, ...] = (
    "beauty",
    "books",
    "clothing",
    "electronics",
    "grocery",
    "home",
    "sports",
    "toys",
)
MALFORMED_PER_MILLE = 5

_FIRST = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Greta", "Hugo", "Ines", "Jonas",
          "Kenji", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Yara")  # fmt: skip
_LAST = ("Smith", "Garcia", "Müller", "Nguyen", "Okafor", "Rossi", "Kowalski", "Tanaka", "Silva",
         "Jensen", "Dubois", "Ivanova", "Cohen", "Haddad", "Larsen", "Moreau", "Novak", "O'Brien",
         "Patel", "Zhang")  # fmt: skip


_NAMES = tuple(f"{first} {last}" for first in _FIRST for last in _LAST)
_QUOTED_NAMES = tuple(f'"{last}, {first}"' for first in _FIRST for last in _LAST)


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: tuple[str, ...], h: str) -> str:
    return f"{_sql_list(values)}[1 + ({h} % {len(values)})::INTEGER]"


# Three independent 64-bit hash streams, sliced into bit fields (h0: malformed kind,
# customer, category; h1: amount, quantity, active; h2: signup_date, event_ts).
_FIELDS_SQL = f"""
SELECT
  i,
  h0 % 1000 < {MALFORMED_PER_MILLE} AS bad,
  (h0 >> 10) % 4 AS bad_kind,
  (h0 >> 12) % 2 AS bad_variant,
  CAST(i AS VARCHAR) AS f_id,
  CASE WHEN (h0 >> 16) % 100 < 2 THEN ''
       WHEN (h0 >> 16) % 100 < 3 THEN {_pick(_QUOTED_NAMES, "(h0 >> 24)")}
       ELSE {_pick(_NAMES, "(h0 >> 24)")} END
    AS f_customer,
  CASE WHEN (h0 >> 40) % 100 < 1 THEN '' ELSE {_pick(CATEGORIES, "(h0 >> 48)")} END
    AS f_category,
  CASE WHEN h1 % 100 < 1 THEN 'NA'
       ELSE CAST(CAST((h1 >> 8) % 200000 AS DECIMAL(9, 0)) / 100 AS DECIMAL(9, 2))::VARCHAR
  END AS f_amount,
  CASE WHEN (h1 >> 28) % 100 < 1 THEN 'null' ELSE CAST(1 + (h1 >> 36) % 20 AS VARCHAR) END
    AS f_quantity,
  CASE WHEN (h1 >> 44) % 100 < 1 THEN 'N/A' WHEN (h1 >> 52) % 10 < 7 THEN 'true'
       ELSE 'false' END AS f_active,
  CASE WHEN h2 % 100 < 1 THEN 'NULL' WHEN h2 % 100 < 2 THEN 'None'
       ELSE CAST(DATE '2015-01-01' + CAST((h2 >> 8) % 3650 AS INTEGER) AS VARCHAR) END
    AS f_signup,
  CASE WHEN (h2 >> 24) % 100 < 1 THEN ''
       ELSE CAST(make_timestamp(CAST(1704067200000000 + ((h2 >> 32) % 31536000) * 1000000
                                     AS BIGINT)) AS VARCHAR) END AS f_event
FROM (
  SELECT i, hash(i, $seed, 0) AS h0, hash(i, $seed, 1) AS h1, hash(i, $seed, 2) AS h2
  FROM range(1, $rows + 1) t(i)
)
"""

_LINE_SQL = """
SELECT CASE
  WHEN bad AND bad_kind = 0 THEN
    concat_ws(',', f_id, f_customer, f_category, f_amount, f_quantity, f_active, f_signup)
  WHEN bad AND bad_kind = 1 THEN
    concat_ws(',', f_id, f_customer, f_category, f_amount, f_quantity, f_active, f_signup,
              f_event, 'extra')
  WHEN bad AND bad_kind = 2 THEN
    concat_ws(',', f_id, f_customer, f_category,
              CASE WHEN bad_variant = 0 THEN 'abc' ELSE '"12,5x"' END,
              f_quantity, f_active, f_signup, f_event)
  WHEN bad THEN
    concat_ws(',', f_id, f_customer, f_category, f_amount, f_quantity, f_active,
              '2023-02-30', f_event)
  ELSE
    concat_ws(',', f_id, f_customer, f_category, f_amount, f_quantity, f_active, f_signup,
              f_event)
  END AS line
FROM fields
"""


def _connect(threads: int | None) -> Any:
    from flows.steps import _db

    con = _db.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    return con


def count_malformed(rows: int, seed: int) -> int:
    """Return how many of the ``rows`` generated for ``seed`` are malformed.

    Args:
        rows: Number of data rows.
        seed: Generator seed.

    Returns:
        The exact number of malformed rows :func:`generate` writes for these arguments.
    """
    con = _connect(None)
    try:
        sql = f"WITH fields AS ({_FIELDS_SQL}) SELECT count(*) FROM fields WHERE bad"
        row = con.execute(sql, {"rows": rows, "seed": seed}).fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def generate(path: str | os.PathLike[str], rows: int, seed: int, threads: int | None = None) -> int:
    """Write the sample CSV (header plus ``rows`` data lines) atomically to ``path``.

    Args:
        path: Target file; written as ``<path>.tmp`` and renamed into place.
        rows: Number of data rows (``>= 0``).
        seed: Seed; the same ``(rows, seed)`` gives a byte-identical file.
        threads: DuckDB thread count (default: all cores).

    Returns:
        The size of the written file in bytes.

    Raises:
        ValueError: If ``rows`` is negative.
    """
    if rows < 0:
        raise ValueError("rows must be >= 0")
    target = Path(path)
    header = ",".join(COLUMNS)
    con = _connect(threads)
    try:
        with atomic_path(target) as tmp:
            # The header trick: the single output column is *named* like the CSV header, and
            # the \x01 delimiter with quoting disabled writes every line verbatim.
            tmp_sql = str(tmp).replace("'", "''")
            con.execute(
                f'COPY (WITH fields AS ({_FIELDS_SQL}) SELECT line AS "{header}" '
                f"FROM ({_LINE_SQL})) TO '{tmp_sql}' "
                "(FORMAT csv, HEADER true, DELIMITER '\x01', QUOTE '', ESCAPE '')",
                {"rows": rows, "seed": seed},
            )
        return target.stat().st_size
    finally:
        con.close()
