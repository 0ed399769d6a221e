"""The ``validate`` step: type the CSV, split it into valid rows and quarantined rows.

Outputs (in ``--output``): the valid rows as ``K`` partitions ``part-00000.parquet`` ..
``part-<K-1>.parquet`` (``--partitions K``, default 1; typed columns, input column and row order,
zstd; partition ``I`` holds the valid rows among the records read at positions
``[I*n//K, (I+1)*n//K)``, so the partitions in order are the valid rows in input order),
``quarantine.csv`` (``line,reason,raw``, sorted by line) and ``validate.json`` (the counts, the
``columns`` and their types, the ``formats`` the schema declared, and the ``fallbacks``: inferred
``string`` columns a typed reading would type, with the ``--schema`` line for each; see
:mod:`flows.steps.fallbacks`).

How it works (row work runs in DuckDB, multi-threaded; Python touches only odd records):

1. **Count**: :mod:`flows.steps._records` scans the file's bytes (in a thread, beside
   DuckDB) and counts its records by the CSV quoting rules, independently of DuckDB.
   This count is ``input_rows``.
2. **Sample**: the first 25k records are classified value by value
   (:func:`flows.steps.types.sql_classify`), giving candidate types. 25k records settle every
   column of a file of up to 2M records whose values all fail the narrower types (step 4 needs
   1.2% of them); larger files extend the sample. Classifying costs about 0.2-0.4 us a value, so
   the sample is kept to what the proof needs (it was 100k: 0.3-0.5 s of a 1M-record run).
3. **Typed pass**: the file is read once more (``read_csv`` with all-VARCHAR columns,
   ``strict_mode`` and ``store_rejects``) and every value is parsed as its candidate type
   into a staging table that also records, per row, which columns failed. The table lives
   in DuckDB's buffers (spilled to the work folder when memory runs short): encoding it as
   Parquet and reading it back cost about a third more at 10M rows. The pass does not wait
   for the count (which takes 2 s of a 10M-record file): the sample and the pass read with
   DuckDB's default ``max_line_size`` (at 64 MiB DuckDB reads a file on one core), and should
   DuckDB find a longer record they are read again with the limit fit to the longest record
   the count found (:func:`~flows.steps._csv.line_limit`), then with 64 MiB.
4. **Verification** keeps the 99% rule exact: a candidate must fit 99% of *all* non-null
   values, and every narrower type must already be ruled out by the failures counted in
   the sample or, over every record, by the typed values themselves (:func:`_ruled_out`: no
   integer or date is of a narrower type's class, a float with a fraction was no integer, a
   timestamp with a time of day no date), more than 1% of all the column's non-null values.
   In a large file 25k records cannot show that 1% for a text column: the sample is then
   extended by as many records as the
   failure rates seen so far say it needs (about 1.2% of the file for columns where every
   value fails the narrower types), which only adds evidence and never changes a type.
   Where the count of records already shows that an extension could not settle a column
   (a few decimals among integers), the typed pass classifies that column's values too,
   so its classes are the whole file's without a second read.
   If either still cannot be shown, the rest of the file is classified, for the columns
   that are still open only (the others' types are proven), and the typed pass is repeated
   only when that changes a type (rare: e.g. columns that are almost all null in the
   sample). A column whose narrower type fails on 1-10% of its values (a few decimals
   among integers) is such a column in a file of a million records.
5. **Reconciliation**: every record DuckDB rejected is found in the scan (by its byte
   position); the records DuckDB accepted must then be exactly the others, in order
   (their number is checked). Records whose last fields are empty are re-counted from
   their bytes (DuckDB drops trailing empty fields silently); if one has too many
   fields, the record-by-record path below takes over, so that its values do not count
   in the type inference.
6. **Record-by-record path**: when the file's records do not all end with LF or all with
   CRLF (CR-only or mixed line ends), when DuckDB cannot read the file, when the numbers
   do not agree (e.g. a record DuckDB skipped without a word), or when DuckDB accepted a
   record whose quotes it reads otherwise (:attr:`~flows.steps._records.RecordScan.odd_quotes`), each
   record of the scan is parsed in Python (``csv``), the ones with a wrong number of
   fields, bad quoting, invalid UTF-8 or over :data:`~flows.steps._csv.MAX_RECORD_BYTES`
   are quarantined, and the others are written to a clean copy that DuckDB types.
7. **Partitions**: each is one ``COPY`` of a range of staging rows, the partitions written
   side by side with the cores shared out among them (an ordered ``COPY`` on several threads
   buffers row groups to keep their order: 190 MB more on a 1M-row file of 19 columns); those
   of a file wider than :data:`BATCH_COLUMNS` one at a time (each writer holds buffers for
   every column).
8. **Quarantine**: rejected records, records with extra fields, and records with a value
   that does not fit its column's type (first failing column named), each with the
   physical line where it starts and its bytes (UTF-8; bytes that are not UTF-8 are
   written as ``\\xNN`` escapes). The value a mismatch names must be in its record's bytes:
   a proof that the staging rows were matched to the right records.
"""

from __future__ import annotations

import csv
import shutil
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.steps import _records, fallbacks
from flows.steps._csv import (
    DEFAULT_LINE_BYTES,
    MAX_RECORD_BYTES,
    check_input,
    connect,
    line_limit,
    records_sql,
)
from flows.steps._io import InvariantError, UsageError, atomic_path, ensure_dir, write_json
from flows.steps.formats import PLAIN, Format
from flows.steps.schema import SchemaEntry, load_schema
from flows.steps.types import (
    TYPES,
    infer_from_counts,
    meets_threshold,
    ok_count,
    quote_ident,
    quote_literal,
    rounded,
    sql_classify,
    sql_parse_select,
    sql_trimmed,
)

__all__ = ["InvariantError", "run"]

SAMPLE_MIN = 25_000
#: Extra records classified beyond what the sample's failure rates say is needed.
SAMPLE_MARGIN = 1.2
#: Largest extension of the sample, as a share of the records; beyond, the whole file.
SAMPLE_MAX_SHARE = 0.25
BATCH_COLUMNS = 100
#: The temp table of the typed pass (see :func:`_write_staging`).
STAGE = "staging"
#: Widest file whose classes are counted column by column (wider: unpivoted).
WIDE_CLASSIFY = 32
_ARTICLE = {"boolean": "a", "integer": "an", "float": "a", "date": "a", "timestamp": "a"}
_REJECT_REASON = {
    "UNQUOTED VALUE": "malformed quoting (text after a closing quote, or an unclosed quote)",
    "INVALID ENCODING": "not valid UTF-8",
    "LINE SIZE OVER MAXIMUM": f"record is longer than {MAX_RECORD_BYTES >> 20} MiB",
}
csv.field_size_limit(MAX_RECORD_BYTES + 1)


@dataclass
class _Plan:
    """How the rows of the staging table map to the records of the scan.

    ``skipped``: records that never reached the staging table, with their reason.
    ``kept``: record index of each staging row, when not implied by ``skipped``.
    """

    skipped: dict[int, str] = field(default_factory=dict)
    kept: array[int] | None = None

    def records_of(self, rids: Iterable[int]) -> list[int]:
        """Record index of each staging row in ``rids`` (ascending)."""
        if self.kept is not None:
            return [self.kept[r] for r in rids]
        out, skipped, j = [], sorted(self.skipped), 0
        for rid in rids:
            k = rid + 1 + j
            while j < len(skipped) and skipped[j] <= k:
                j += 1
                k += 1
            out.append(k)
        return out


def _class_counts(
    con: Any,
    path: Path,
    n: int,
    limit: int | None,
    offset: int = 0,
    only: Sequence[int] | None = None,
    max_line: int = MAX_RECORD_BYTES,
) -> tuple[int, list[dict[str, int]]]:
    """Records read and, per column, values per class, over ``limit`` records after the
    first ``offset`` (all records when ``limit`` is None); only the columns ``only`` are
    classified when given (the others get ``{}``). ``max_line``: see :func:`_typed`.

    Up to :data:`WIDE_CLASSIFY` columns, one histogram per column in one query (fastest): each
    row's values are classified as one list by one lambda, so that DuckDB plans the classifier
    once (about 6 ms a copy: one per column cost flights' 19 columns 0.1 s, more than classifying
    25k records). Wider files have their values unpivoted into one column first, so the query has
    the same size for any number of columns.
    """
    rows = records_sql(path, n, "classes", max_line) + (f" LIMIT {int(limit)}" if limit else "")
    rows += f" OFFSET {int(offset)}" if offset else ""
    cols = list(range(n)) if only is None else list(only)
    counts: list[dict[str, int]] = [{} for _ in range(n)]
    if not cols:  # every column's classes come from elsewhere: only the records are counted
        return int(
            con.execute(f"SELECT count(*) FROM (SELECT c0 FROM {rows})").fetchone()[0]
        ), counts
    if len(cols) <= WIDE_CLASSIFY:
        values = ", ".join(f"c{i}" for i in cols)
        classes = (
            f"list_transform(list_transform([{values}], lambda v: {sql_trimmed('v')}), "
            f"lambda t: {sql_classify('t')})"
        )
        hist = "".join(f", histogram(k[{j + 1}])" for j in range(len(cols)))
        got, *hists = con.execute(
            f"SELECT count(*){hist} FROM (SELECT {classes} AS k FROM (SELECT * FROM {rows}))"
        ).fetchone()
        for i, h in zip(cols, hists, strict=True):
            counts[i] = {k: int(v) for k, v in (h or {}).items() if k is not None}
        return int(got), counts
    got = con.execute(f"SELECT count(*) FROM (SELECT c0 FROM {rows})").fetchone()[0]
    picked = ", ".join(f"c{i}" for i in cols)
    classes = con.execute(
        f"SELECT col, cls, count(*) FROM (SELECT col, {sql_classify('t')} AS cls FROM ("
        f"SELECT col, {sql_trimmed('v')} AS t FROM (UNPIVOT (SELECT {picked} FROM {rows}) "
        "ON COLUMNS(*) INTO NAME col VALUE v))) WHERE cls IS NOT NULL GROUP BY ALL"
    ).fetchall()
    for col, cls, count in classes:
        counts[int(str(col)[1:])][str(cls)] = int(count)
    return int(got), counts


def _merge(into: list[dict[str, int]], added: Sequence[Mapping[str, int]]) -> None:
    """Add per-column class counts ``added`` to ``into``."""
    for counts, more in zip(into, added, strict=True):
        for cls, count in more.items():
            counts[cls] = counts.get(cls, 0) + count


def _staging_select(
    types: Sequence[str],
    formats: Sequence[Format],
    cols: Sequence[int],
    source: str,
    classify: Sequence[int] = (),
) -> str:
    """SELECT of ``p{i}`` (typed), ``_fails`` and ``_badval`` for columns ``cols``, and the
    class (:func:`~flows.steps.types.sql_classify`) of each value of the columns ``classify``
    as ``_k{i}``."""
    parsed = sql_parse_select(
        [(f"c{i}", types[i]) for i in cols], source, [formats[i] for i in cols]
    )
    # sql_parse_select numbers its outputs 0..len(cols)-1; map them back to column indexes.
    typed = [(j, i) for j, i in enumerate(cols) if types[i] != "string"]
    if typed:
        # Batches keep these chains short: a chain as deep as thousands of columns makes
        # DuckDB's planner slow and can overflow its stack.
        items = ", ".join(f"CASE WHEN f{j} THEN {i} END" for j, i in typed)
        any_fail = " OR ".join(f"f{j}" for j, _ in typed)
        fails = f"CASE WHEN {any_fail} THEN list_filter([{items}], lambda x: x IS NOT NULL) END"
        badval = "CASE " + " ".join(f"WHEN f{j} THEN c{j}" for j, _ in typed) + " END"
    else:
        fails, badval = "CAST(NULL AS INTEGER[])", "CAST(NULL AS VARCHAR)"
    out = ", ".join(f"p{j} AS p{i}" for j, i in enumerate(cols))
    if classify:
        at = {i: j for j, i in enumerate(cols)}
        trimmed = ", ".join(f"{sql_trimmed(f'c{at[i]}')} AS _t{i}" for i in classify)
        parsed = f"SELECT *, {trimmed} FROM ({parsed})"
        out += "".join(f", {sql_classify(f'_t{i}')} AS _k{i}" for i in classify)
    return f"SELECT {out}, {fails} AS _fails, {badval} AS _badval FROM ({parsed})"


def _write_staging(
    con: Any,
    path: Path,
    types: Sequence[str],
    formats: Sequence[Format],
    work: Path,
    rej: str,
    max_line: int = MAX_RECORD_BYTES,
    classify: Sequence[int] = (),
) -> None:
    """Typed pass into table :data:`STAGE`: every value parsed into ``p0..``, the failing
    columns of each row (``_fails``) and the first failing value (``_badval``); with the
    class of every value of the columns ``classify`` (``_k{i}``; narrow files only).

    Up to :data:`BATCH_COLUMNS` columns are parsed in one query straight from the file.
    Wider files are read once into a table, parsed in batches of columns (each query
    stays small, each batch a Parquet file in ``work``) and the batches joined back by
    position, so the work grows with the number of cells.
    """
    n = len(types)
    if n <= BATCH_COLUMNS:
        rows = records_sql(path, n, rej, max_line)
        select = _staging_select(types, formats, range(n), rows, classify)
        con.execute(f"CREATE OR REPLACE TABLE {STAGE} AS {select}")
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE raw_records AS SELECT * FROM "
        + records_sql(path, n, rej, max_line)
    )
    parts = []
    for b, lo in enumerate(range(0, n, BATCH_COLUMNS)):
        cols = range(lo, min(n, lo + BATCH_COLUMNS))
        source = f"(SELECT {', '.join(f'c{i}' for i in cols)} FROM raw_records)"
        part = work / f"staging-{b}.parquet"
        select = _staging_select(types, formats, cols, source)
        select = select.replace("AS _fails,", f"AS _fails{b},").replace(
            "AS _badval FROM", f"AS _badval{b} FROM"
        )
        con.execute(f"COPY ({select}) TO {quote_literal(str(part))} (FORMAT parquet)")
        parts.append(part)
    con.execute("DROP TABLE raw_records")
    joined = " POSITIONAL JOIN ".join(f"read_parquet({quote_literal(str(p))})" for p in parts)
    fails = ", ".join(f"coalesce(_fails{b}, [])" for b in range(len(parts)))
    badval = ", ".join(f"_badval{b}" for b in range(len(parts)))
    cols_out = ", ".join(f"p{i}" for i in range(n))
    con.execute(
        f"CREATE OR REPLACE TABLE {STAGE} AS SELECT {cols_out}, "
        f"nullif(flatten([{fails}]), []) AS _fails, coalesce({badval}) AS _badval FROM {joined}"
    )
    for part in parts:
        part.unlink()


def _ruled_out(type_: str, p: str) -> list[tuple[tuple[str, ...], str | None]]:
    """How the typed values ``p`` of a column of type ``type_`` show that values fail its
    narrower types: (narrower types, SQL filter of the values that provably fail them; None:
    every value). Each count is a lower bound of the failures, over every record.

    No value of an ``integer`` or ``date`` column is of a class a narrower type accepts
    (:data:`~flows.steps.types.ACCEPTS`: their classes are disjoint), nor is a ``float`` or
    ``timestamp`` one of ``boolean``'s, ``integer``'s or ``float``'s. A float with a fraction
    was no integer's text, a timestamp with a time of day no date's. (Text columns are left to
    the sample: a test of each text cost 0.4 s per column of 10M rows, more than extending the
    sample.)
    """
    narrower = TYPES[: TYPES.index(type_)]
    if type_ in ("integer", "date"):
        return [(narrower, None)]
    if type_ == "float":
        return [(("boolean",), None), (("integer",), f"{p} <> trunc({p})")]
    if type_ == "timestamp":
        return [(narrower[:-1], None), (("date",), f"{p} <> date_trunc('day', {p})")]
    return []


def _staging_stats(
    con: Any, types: Sequence[str]
) -> tuple[int, list[int], list[int], list[dict[str, int]]]:
    """Rows, non-null values per column and failing values per column of the staging table,
    and per column, a lower bound of its values that fail each narrower type (:func:`_ruled_out`;
    the filtered counts only up to :data:`BATCH_COLUMNS` columns: a wider file's sample is the
    whole file).
    """
    n = len(types)
    counts = [f"count(p{i})" for i in range(n)]
    evidence: list[tuple[int, tuple[str, ...], int]] = []  # column, narrower types, its count
    for i, type_ in enumerate(types):
        for narrower, where in _ruled_out(type_, f"p{i}"):
            if where is None:  # every typed value: count(p{i})
                evidence.append((i, narrower, i))
            elif n <= BATCH_COLUMNS:
                evidence.append((i, narrower, len(counts)))
                counts.append(f"count(p{i}) FILTER (WHERE {where})")
    rows, *got = con.execute(f"SELECT count(*), {', '.join(counts)} FROM {STAGE}").fetchone()
    parsed = [int(c) for c in got[:n]]
    ruled: list[dict[str, int]] = [{} for _ in range(n)]
    for i, narrower, at in evidence:
        ruled[i].update(dict.fromkeys(narrower, int(got[at])))
    fails = [0] * n
    for k, c in con.execute(
        f"SELECT k, count(*) FROM (SELECT unnest(_fails) AS k FROM {STAGE} "
        "WHERE _fails IS NOT NULL) GROUP BY k"
    ).fetchall():
        fails[int(k)] = int(c)
    return int(rows), [p + f for p, f in zip(parsed, fails, strict=True)], fails, ruled


def _numbered(con: Any) -> tuple[str, int]:
    """The staging rows with ``rid``, each row's 0-based position in input order, and their
    number.

    A table's rowids follow the insertion order, which the connection keeps
    (``preserve_insertion_order``), so they are the positions when they have no gap (the
    case in every run seen; checked each time). Otherwise a window counts the positions.
    """
    rows, top = con.execute(f"SELECT count(*), coalesce(max(rowid) + 1, 0) FROM {STAGE}").fetchone()
    if int(rows) == int(top):
        return f"(SELECT rowid AS rid, * FROM {STAGE})", int(rows)
    return f"(SELECT row_number() OVER (ORDER BY rowid) - 1 AS rid, * FROM {STAGE})", int(rows)


def _settled(
    type_: str, sample: Mapping[str, int], nonnull: int, fails: int,
    ruled: Mapping[str, int] | None = None,
) -> bool:  # fmt: skip
    """True if the sample's type provably is the file's type under the 99% rule: it fits 99%
    of the ``nonnull`` values, and more than 1% fail each narrower type, as counted in the
    sample or, over every record, by ``ruled`` (:func:`_staging_stats`)."""
    if nonnull == 0:
        return type_ == "string"
    if not meets_threshold(nonnull - fails, nonnull):
        return False
    sample_total = sum(sample.values())
    for narrower in TYPES[: TYPES.index(type_)]:
        failing = sample_total - ok_count(sample, narrower)
        if max(failing, (ruled or {}).get(narrower, 0)) * 100 <= nonnull:
            return False
    return True


def _extension(
    types: Sequence[str],
    sample: Sequence[Mapping[str, int]],
    got: int,
    rows: int,
    stats: tuple[list[int], list[int]],
    unsettled: Iterable[int],
) -> int:
    """Records to classify after the first ``got`` so that the ``unsettled`` columns' narrower
    types are ruled out, estimated from the failure rates in the sample; 0 when extending
    cannot settle them (a candidate that fails the 99% rule, no values, or too many records).

    ``stats``: non-null and failing values per column over all ``rows`` staging rows.
    """
    nonnull, fails = stats
    needed = got
    for i in unsettled:
        seen = sum(sample[i].values())
        if nonnull[i] == 0 or seen == 0 or not meets_threshold(nonnull[i] - fails[i], nonnull[i]):
            return 0
        narrower = TYPES[: TYPES.index(types[i])]
        worst = min((seen - ok_count(sample[i], t) for t in narrower), default=seen)
        if worst == 0:
            return 0
        # Failures grow with the records classified: worst per `got`; more than 1% is needed.
        needed = max(needed, int((nonnull[i] // 100 + 1) * got / worst * SAMPLE_MARGIN) + 1)
    return needed - got if needed <= rows * SAMPLE_MAX_SHARE else 0


def _foreseen(
    types: Sequence[str], sample: Sequence[Mapping[str, int]], got: int, records: int,
    free: Iterable[int],
) -> list[int]:  # fmt: skip
    """The columns among ``free`` whose type the sample of ``got`` records cannot settle and
    that an extension of the sample could not settle either (see :func:`_extension`), as
    foreseen from the ``records`` of the scan before the typed pass: they are classified in
    the typed pass (one read of the file, not two)."""
    out: list[int] = []
    if records <= got:
        return out
    for i in free:
        seen = sum(sample[i].values())
        if seen == 0:
            continue  # all null in the sample: left to the checks after the typed pass
        nonnull = seen * records // got  # values foreseen in the whole file
        if _settled(types[i], sample[i], nonnull, 0):
            continue
        narrower = TYPES[: TYPES.index(types[i])]
        worst = min((seen - ok_count(sample[i], t) for t in narrower), default=seen)
        needed = (nonnull // 100 + 1) * got / worst * SAMPLE_MARGIN if worst else records
        if needed - got > records * SAMPLE_MAX_SHARE:
            out.append(i)
    return out


def _staged_classes(con: Any, cols: Sequence[int]) -> list[dict[str, int]]:
    """Values per class of the columns ``cols`` over every staging row (``_k{i}``)."""
    hists = con.execute(
        f"SELECT {', '.join(f'histogram(_k{i})' for i in cols)} FROM {STAGE}"
    ).fetchone()
    return [{k: int(v) for k, v in (h or {}).items() if k is not None} for h in hists]


def _too_long(con: Any, rej: str) -> bool:
    """True if DuckDB refused a record of the typed pass as longer than its limit."""
    return bool(
        con.execute(
            f"SELECT count(*) FROM {rej}_errors WHERE error_type = 'LINE SIZE OVER MAXIMUM'"
        ).fetchone()[0]
    )


def _records_foreseen(path: Path) -> int:
    """About how many records ``path`` holds, from the LFs in its first MiB: a plan for which
    columns the typed pass classifies (:func:`_foreseen`) made before the scan has counted them.
    A wrong guess costs time, never a wrong type: a column it leaves out is classified after."""
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    return path.stat().st_size * head.count(b"\n") // max(len(head), 1)


def _typed(
    con: Any, path: Path, columns: Sequence[str], fixed: Mapping[str, SchemaEntry], k: int,
    work: Path, log: Callable[[str], None],
    scanned: Callable[[bool], tuple[int, int] | None] = lambda wait: (0, MAX_RECORD_BYTES),
) -> tuple[list[str], str, int]:  # fmt: skip
    """Infer the types and fill the staging table. Returns (types, reject table, rows).

    ``scanned(wait)``: the file's records and at least the bytes of its longest record (the
    scan's, running beside DuckDB), or None when ``wait`` is false and the scan is not done.
    The passes read the file with :func:`line_limit` of the longest when it is known, else with
    DuckDB's default limit (the scan of a large file ends during the typed pass, not before it);
    both let DuckDB read on every core when the records are short. Should DuckDB find a record
    over the limit, the pass is repeated with the scan's limit, then with
    :data:`MAX_RECORD_BYTES`, so a record is refused as too long only over that; the sample is
    read again with the pass's limit whenever it is larger than the one it was read with. The
    records tell which columns the sample cannot settle (:func:`_foreseen`; foreseen from the
    file's size while the scan runs): the typed pass classifies their values too, instead of a
    second read of the file after it.
    """
    n = len(columns)
    formats = [fixed[c].format if c in fixed else PLAIN for c in columns]
    free = [i for i, c in enumerate(columns) if c not in fixed]
    # The sample is read with DuckDB's default line limit: the 64 MiB one reads with one thread
    # and a 1 GiB buffer (0.4 s more on any large file).
    got, sample = _class_counts(con, path, n, k, max_line=DEFAULT_LINE_BYTES)
    sampled = DEFAULT_LINE_BYTES
    known = scanned(False)
    if known is None:
        records, limit = _records_foreseen(path), DEFAULT_LINE_BYTES
    else:
        records, limit = known[0], line_limit(known[1])
    for rej in ("rej1", "rej1b", "rej1c"):
        if limit > sampled:
            got, sample = _class_counts(con, path, n, k, max_line=limit)
            sampled = limit
        types = [
            fixed[c].type if c in fixed else infer_from_counts(sample[i])
            for i, c in enumerate(columns)
        ]
        whole = (
            _foreseen(types, sample, got, records, free) if got >= k and n <= BATCH_COLUMNS else []
        )
        _write_staging(con, path, types, formats, work, rej, limit, whole)
        if limit == MAX_RECORD_BYTES or not _too_long(con, rej):
            break
        found = scanned(True)
        scan_limit = line_limit(found[1]) if found else MAX_RECORD_BYTES
        limit = scan_limit if scan_limit > limit else MAX_RECORD_BYTES
    if whole:
        names = ", ".join(columns[i] for i in whole[:5]) + (", ..." if len(whole) > 5 else "")
        log(f"validate: sample of {got} rows not conclusive for {names}; classifying them all")
    rows, nonnull, fails, ruled = _staging_stats(con, types)
    for i, counts in zip(whole, _staged_classes(con, whole) if whole else [], strict=True):
        sample[i] = counts  # every record's classes, not the sample's
    new = list(types)
    for i in whole:
        new[i] = infer_from_counts(sample[i])

    def unsettled() -> list[int]:
        return [
            i
            for i in free
            if i not in whole and not _settled(types[i], sample[i], nonnull[i], fails[i], ruled[i])
        ]

    seen = got  # records whose classes are in `sample`
    more = _extension(types, sample, got, rows, (nonnull, fails), unsettled()) if got >= k else 0
    if more:
        # Only the unsettled columns need the evidence; a settled column stays settled.
        added, extra = _class_counts(con, path, n, more, got, unsettled(), limit)
        seen += added
        _merge(sample, extra)
    open_ = unsettled() if got >= k else []
    if open_:
        # The settled columns' types are proven (the sample's failures and the typed pass's
        # counts over every record); only the open ones need the rest of the file classified,
        # and the typed pass is repeated only when a type changes.
        names = ", ".join(columns[i] for i in open_[:5]) + (", ..." if len(open_) > 5 else "")
        log(f"validate: sample of {seen} rows not conclusive for {names}; classifying the rest")
        _merge(sample, _class_counts(con, path, n, None, seen, open_, limit)[1])
        for i in open_:
            new[i] = infer_from_counts(sample[i])
    if new == types:
        return types, rej, rows
    log("validate: the whole file gives other types; typing it again")
    _write_staging(con, path, new, formats, work, "rej2", limit)
    rows = _staging_stats(con, new)[0]
    return new, "rej2", rows


def _field_count(raw: bytes) -> int | None:
    """Number of CSV fields of one record's bytes (None if its quoting is broken)."""
    text = raw.decode("utf-8", errors="surrogateescape")
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error:
        return None
    return len(rows[0]) if len(rows) == 1 else None


def _reconcile(con: Any, scan: _records.RecordScan, rej: str, rows: int, n: int) -> _Plan | None:
    """Match DuckDB's accepted and rejected records to the scan's; None if they differ, or
    if DuckDB accepted a record with too many fields: it read that record without its
    trailing empty fields and counted its values when inferring the types (the clean copy
    of the record-by-record path leaves them out)."""
    known = " ".join(f"WHEN '{k}' THEN {quote_literal(v)}" for k, v in _REJECT_REASON.items())
    rejects = con.execute(
        "SELECT pos, CASE "
        f"WHEN many IS NOT NULL THEN 'expected {n} fields, found ' || many "
        f"WHEN few IS NOT NULL THEN 'expected {n} fields, found ' || few "
        f"ELSE CASE etype {known} ELSE 'cannot parse the row: ' || msg END END, etype, raw FROM ("
        "SELECT CAST(line_byte_position AS BIGINT) AS pos, "
        "max(TRY_CAST(regexp_extract(error_message, 'Found: ([0-9]+)', 1) AS BIGINT)) "
        "FILTER (WHERE error_type = 'TOO MANY COLUMNS') AS many, "
        "min(TRY_CAST(regexp_extract(error_message, 'Found: ([0-9]+)', 1) AS BIGINT)) "
        "FILTER (WHERE error_type = 'MISSING COLUMNS') AS few, "
        "min(CAST(error_type AS VARCHAR)) AS etype, min(error_message) AS msg, "
        f"any_value(csv_line) AS raw FROM {rej}_errors GROUP BY line_byte_position)"
    ).fetchall()
    candidates = [k for k in scan.trailing_empty if k >= 1]
    where, records = scan.lookup((int(row[0]) for row in rejects), candidates)
    plan = _Plan()
    for pos, reason, etype, raw in rejects:
        index = where.get(int(pos), 0)
        if index < 1:
            return None
        # DuckDB's own copy of the record must be the scanned one (cheap proof of the
        # mapping; DuckDB may add the blank lines before it and shows bad bytes as '?').
        text = records[index].raw.decode("utf-8", errors="replace")
        if etype != "INVALID ENCODING" and str(raw).strip("\r\n") not in (
            text,
            text[: len(str(raw))],
        ):
            return None
        plan.skipped.setdefault(index, str(reason).splitlines()[0])
    if rows != scan.records - len(plan.skipped):
        return None
    for k in candidates:
        found = None if k in plan.skipped else _field_count(records[k].raw)
        if found is not None and found > n:
            return None
    return plan


def _record_reason(raw: bytes, n: int) -> tuple[str | None, list[str]]:
    """Why a record cannot be a row (None if it can), and its fields."""
    if len(raw) > MAX_RECORD_BYTES:
        return f"record is longer than {MAX_RECORD_BYTES >> 20} MiB", []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})", []
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error:
        return _REJECT_REASON["UNQUOTED VALUE"], []
    if len(rows) != 1:
        return _REJECT_REASON["UNQUOTED VALUE"], []
    if len(rows[0]) != n:
        return f"expected {n} fields, found {len(rows[0])}", []
    return None, rows[0]


def _normalize(scan: _records.RecordScan, n: int, target: Path) -> _Plan:
    """Record-by-record path: write the readable records to a clean CSV for DuckDB."""
    plan = _Plan(kept=array("q"))
    assert plan.kept is not None
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow([f"c{i}" for i in range(n)])
        for record in scan.iter_records():
            if record.index == 0:
                continue
            reason, fields = _record_reason(record.raw, n)
            if reason is None:
                writer.writerow(fields)
                plan.kept.append(record.index)
            else:
                plan.skipped[record.index] = reason
    return plan


def _mismatch(name: str, type_: str, value: str, fmt: Format = PLAIN) -> str:
    """The reason of a value that does not fit its column's type."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    reason = f"column {name!r}: '{shown}' is not {_ARTICLE[type_]} {type_}"
    if fmt:
        return f"{reason} written with {fmt}"
    double = rounded(value) if type_ == "float" else None
    return f"{reason} (a float would make it {double})" if double else reason


def _raw_text(raw: bytes) -> str:
    """A record's bytes as text: exact for UTF-8, ``\\xNN`` for bytes that are not."""
    return raw.decode("utf-8", errors="backslashreplace")


def _reasons(
    con: Any,
    plan: _Plan,
    columns: Sequence[str],
    types: Sequence[str],
    formats: Sequence[Format],
    stage: str,
) -> tuple[dict[int, str], dict[int, str]]:
    """Record index -> reason of every quarantined record, and record index -> the value that
    does not fit for the records quarantined for one.

    ``stage``: the staging rows with their position, ``rid`` (see :func:`_numbered`)."""
    bad = con.execute(
        f"SELECT rid, _fails[1], _badval FROM {stage} WHERE _fails IS NOT NULL ORDER BY rid"
    ).fetchall()
    reasons = dict(plan.skipped)
    values: dict[int, str] = {}
    for (_, k, v), index in zip(bad, plan.records_of(int(r) for r, _, _ in bad), strict=True):
        reasons[index] = _mismatch(columns[k], types[k], str(v), formats[k])
        values[index] = str(v)
    return reasons, values


def _write_quarantine(
    scan: _records.RecordScan,
    reasons: Mapping[int, str],
    target: Path,
    values: Mapping[int, str] | None = None,
) -> int:
    """Write quarantine.csv (sorted by line) from the scan; returns the rows written.

    ``values``: record index -> the value named in its reason; each must be in the record's
    bytes (as they are, or with its quotes doubled), a proof that the typed pass's rows were
    matched to the right records.

    Runs in a thread while DuckDB writes the partitions.
    """
    records = scan.fetch(reasons)
    if len(records) != len(reasons):
        raise InvariantError(f"{len(reasons) - len(records)} quarantined records not found")
    for index, value in (values or {}).items():
        text = records[index].raw.decode("utf-8", errors="replace")
        if value not in text and value.replace('"', '""') not in text:
            raise InvariantError(
                f"line {records[index].line}: its reason names {value[:80]!r}, which the record "
                "does not hold; the typed rows were matched to the wrong records (a bug)"
            )
    with atomic_path(target) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["line", "reason", "raw"])
        for index in sorted(reasons):
            record = records[index]
            writer.writerow([record.line, reasons[index], _raw_text(record.raw)])
    return len(reasons)


def run(
    input_path: str | Path,
    output_dir: str | Path,
    schema_path: str | Path | None = None,
    *,
    partitions: int = 1,
    sample_rows: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the validate step.

    Args:
        input_path: CSV file to validate.
        output_dir: Directory for the ``part-*.parquet`` partitions, ``quarantine.csv``,
            ``validate.json``.
        schema_path: Optional schema file fixing some column types.
        partitions: How many partitions ``K`` the valid rows are written as.
        sample_rows: Records in the first inference sample (default 25k; extended when
            the file is too large for it to settle the types).
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``validate.json``.

    Raises:
        UsageError: If ``partitions`` is below 1.
        DataError: If the input or schema is unusable.
        InvariantError: If the row accounting does not add up (a bug).

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "in.csv").write_text("zip,n\\n02134,1\\n10001,x\\n")
        >>> r = run(d / "in.csv", d / "out", log=lambda _: None)
        >>> r["input_rows"], r["columns"]
        (2, {'zip': 'string', 'n': 'integer'})
    """
    from flows.steps import _db
    from flows.steps.transform import bounds, part_name

    if partitions < 1:
        raise UsageError("--partitions must be at least 1")
    src = check_input(input_path)
    columns = src.columns
    fixed = load_schema(schema_path, columns) if schema_path else {}
    out = ensure_dir(output_dir)
    work = out / ".validate.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    con = connect(work / "spill", threads)
    # The byte scan that counts records runs beside DuckDB (which releases the GIL).
    pool = ThreadPoolExecutor(max_workers=1)
    counting = pool.submit(_records.scan, src.path, len(columns))
    k = sample_rows or SAMPLE_MIN
    try:
        plan: _Plan | None = None
        types, rej, rows = list(columns), "", 0
        try:
            types, rej, rows = _typed(
                con, src.path, columns, fixed, k, work, log,
                lambda wait: (
                    (counting.result().records, counting.result().longest)
                    if wait or counting.done() else None
                ),
            )  # fmt: skip
            read = True
        except _db.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log(f"validate: DuckDB cannot read the file directly ({first})")
            read = False
        scan = counting.result()
        # DuckDB reads one kind of line end per file; with mixed or CR ones it may split
        # or reject records differently from the CSV rules, so it does not read them.
        if read and scan.uniform_line_ends:
            plan = _reconcile(con, scan, rej, rows, len(columns))
        if plan is not None and any(k not in plan.skipped for k in scan.odd_quotes):
            # DuckDB accepted a record whose quotes it reads otherwise than RFC 4180 (a
            # quote after a blank opens quoting for it; text after a closing quote may be
            # kept): its values would not be the file's.
            plan = None
        if plan is None:
            log("validate: reading the file record by record")
            clean = work / "records.csv"
            plan = _normalize(scan, len(columns), clean)
            kept = plan.kept or array("q")
            try:
                types, rej, rows = _typed(
                    con, clean, columns, fixed, k, work, log,
                    lambda wait: (len(kept), MAX_RECORD_BYTES),
                )  # fmt: skip
            except _db.Error as exc:
                raise InvariantError(f"DuckDB cannot read the clean copy ({exc})") from None
            assert plan.kept is not None
            if rows != len(plan.kept):
                raise InvariantError(f"clean copy: {len(plan.kept)} records written, {rows} read")
        stage, staged = _numbered(con)
        formats = [fixed[c].format if c in fixed else PLAIN for c in columns]

        def quarantine(found: _Plan, cur: Any) -> int:
            try:  # its own connection (a cursor): the partitions are written meanwhile
                reasons, values = _reasons(cur, found, columns, types, formats, stage)
            finally:
                cur.close()
            return _write_quarantine(scan, reasons, out / "quarantine.csv", values)

        writing = pool.submit(quarantine, plan, con.cursor())
        cols = ", ".join(f"p{i} AS {quote_ident(c)}" for i, c in enumerate(columns))
        # A filter keeps the input order (insertion order is preserved): no sort, so partitions
        # are contiguous input ranges and re-runs write identical files. Each partition is a
        # range of staging positions, written here once: the valid rows are never re-read
        # and re-encoded to be cut (ADR 0022, amendment of 2026-12-07, night).

        def write_part(i: int) -> int:
            start, end = bounds(staged, i, partitions)
            cur = con.cursor()  # its own connection to the same database: the tables are shared
            try:
                with atomic_path(out / part_name(i)) as tmp:
                    return int(
                        cur.execute(
                            f"COPY (SELECT {cols} FROM {stage} WHERE _fails IS NULL"
                            f" AND rid >= {start} AND rid < {end}) "
                            f"TO {quote_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
                        ).fetchone()[0]
                    )
            finally:
                cur.close()

        # The partitions of a file of up to BATCH_COLUMNS columns are written side by side, the
        # cores shared out among them (one each when there are as many partitions as cores, the
        # pipeline's default): an ordered COPY on several threads buffers row groups to keep
        # their order (190 MB more on flights). A wider file's are written one at a time on every
        # core: there each writer's column buffers are the cost (two writers of 16,384 columns
        # held 390 MB more than one), and its few rows make few row groups to buffer.
        cores = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
        side = min(cores, partitions) if len(columns) <= BATCH_COLUMNS else 1
        con.execute(f"SET threads = {max(1, cores // side)}")
        with ThreadPoolExecutor(max_workers=side) as writers:
            parts = list(writers.map(write_part, range(partitions)))
        con.execute(f"SET threads = {cores}")
        valid = sum(parts)
        quarantined = writing.result()
        input_rows = scan.records
        if input_rows != valid + quarantined:
            raise InvariantError(
                f"row accounting broken: input_rows={input_rows} != valid_rows={valid} + "
                f"quarantined_rows={quarantined}; this is a bug"
            )
        fell_back = fallbacks.explain(con, stage, columns, types, set(fixed))
        result = {
            "input_rows": input_rows,
            "valid_rows": valid,
            "quarantined_rows": quarantined,
            "parts": parts,
            "columns": dict(zip(columns, types, strict=True)),
            "formats": {c: str(e.format) for c, e in fixed.items() if e.format},
            "fallbacks": fell_back,
        }
    finally:
        pool.shutdown(cancel_futures=True)
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    write_json(out / "validate.json", result)
    log(f"validate: {input_rows} rows, {valid} valid, {quarantined} quarantined")
    for entry in fell_back:
        log(f"validate: column {entry['column']!r} is text: {entry['why']}; to type it, add to"
            f" --schema: {entry['schema']}")  # fmt: skip
    return result
