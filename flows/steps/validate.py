"""The ``validate`` step: type the CSV, split it into valid rows and quarantined rows.

Outputs (in ``--output``): ``valid.parquet`` (typed columns, input column and row order),
``quarantine.csv`` (``line,reason,raw``, sorted by line) and ``validate.json``.

How it works (all row work runs in DuckDB, multi-threaded; Python touches only the few
odd lines):

1. **Sample**: the first ``max(100k, 3% of the estimated rows)`` records are classified
   value by value (:func:`flows.steps.types.sql_classify`), giving candidate types.
2. **Typed pass**: the whole file is read once more (``read_csv`` with all-VARCHAR
   columns, ``strict_mode`` and ``store_rejects`` so rows with a wrong number of fields or
   broken quoting are kept aside with their line number and text) and every value is
   parsed as its candidate type into a staging Parquet file that also records, per row,
   which columns failed.
3. **Verification** keeps the 99% rule exact: a candidate must fit 99% of *all* non-null
   values, and every narrower type must already be ruled out by the failures counted in
   the sample. If either cannot be shown, the whole file is classified and the typed
   pass repeated (slower, rare: e.g. columns that are almost all null in the sample).
4. **Quarantine**: DuckDB's rejects, rows DuckDB accepted despite trailing extra empty
   fields, and rows with a value that does not fit its column's type (first failing
   column named). Line numbers and raw text come from a plain-line read of the file
   (:mod:`flows.steps._lines`).

Limitations: the input must be comma-separated UTF-8 with consistent ``\\n`` or
``\\r\\n`` line ends (mixed ends make DuckDB's strict reader fail: exit 65). When a
record spans several physical lines (a quoted field containing a newline), line numbers
of later type-mismatch rows are approximate, their raw text is re-assembled from the
parsed fields, and trailing-extra-field detection is skipped; ``validate.json`` then has
``"line_numbers_exact": false``. A line that is not valid UTF-8 is quarantined (``not
valid UTF-8``); its presence also makes the plain-line read fail, so raw texts are then
re-assembled and trailing extra fields go undetected (line numbers stay exact).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flows.steps import _lines
from flows.steps._csv import SNIFF_BYTES, InputFile, check_input, connect, records_sql
from flows.steps._io import DataError, atomic_path, ensure_dir, write_json
from flows.steps.schema import load_schema
from flows.steps.types import (
    TYPES,
    infer_from_counts,
    meets_threshold,
    ok_count,
    quote_ident,
    quote_literal,
    sql_classify,
    sql_parse_select,
    sql_trimmed,
)

__all__ = ["InvariantError", "run"]

SAMPLE_MIN = 100_000
SAMPLE_FRACTION = 0.03
MAX_GROUP_VALUES = 50
_ARTICLE = {"boolean": "a", "integer": "an", "float": "a", "date": "a", "timestamp": "a"}
_REJECT_REASON = {
    "UNQUOTED VALUE": "malformed quoting (a quote inside an unquoted field or an unclosed quote)",
    "INVALID ENCODING": "not valid UTF-8",
    "LINE SIZE OVER MAXIMUM": "line is longer than the maximum line size (2 MB)",
}


class InvariantError(RuntimeError):
    """input_rows != valid_rows + quarantined_rows: a bug, reported with exit code 1."""


def _sample_size(src: InputFile) -> int:
    with src.path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    per_line = len(head) / max(1, head.count(b"\n"))
    return max(SAMPLE_MIN, int(SAMPLE_FRACTION * src.size / per_line) + 1)


def _read_error(src: InputFile, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(
        f"{src.path}: DuckDB cannot read the file as CSV ({first}); it must be comma-"
        "separated UTF-8 with '\"' quotes and consistent line ends"
    )


def _class_counts(con: Any, src: InputFile, limit: int | None) -> tuple[int, list[dict[str, int]]]:
    """Records read and, per column, values per class, over the first ``limit`` records."""
    n = len(src.columns)
    rows = records_sql(src.path, n) + (f" LIMIT {int(limit)}" if limit else "")
    trimmed = ", ".join(f"{sql_trimmed(f'c{i}')} AS t{i}" for i in range(n))
    hist = ", ".join(f"histogram({sql_classify(f't{i}')})" for i in range(n))
    got, *hists = con.execute(
        f"SELECT count(*), {hist} FROM (SELECT {trimmed} FROM (SELECT * FROM {rows}))"
    ).fetchone()
    return int(got), [{k: int(v) for k, v in (h or {}).items() if k is not None} for h in hists]


def _write_staging(con: Any, src: InputFile, types: Sequence[str], staging: Path, rej: str) -> None:
    """Typed pass: parse every value; record failing columns per row (``_fails``)."""
    n = len(src.columns)
    parsed = sql_parse_select(
        [(f"c{i}", types[i]) for i in range(n)], records_sql(src.path, n, rej)
    )
    typed = [i for i in range(n) if types[i] != "string"]
    if typed:
        items = ", ".join(f"CASE WHEN f{i} THEN {i} END" for i in typed)
        any_fail = " OR ".join(f"f{i}" for i in typed)
        fails = f"CASE WHEN {any_fail} THEN list_filter([{items}], lambda x: x IS NOT NULL) END"
        badval = "CASE " + " ".join(f"WHEN f{i} THEN c{i}" for i in typed) + " END"
    else:
        fails, badval = "CAST(NULL AS INTEGER[])", "CAST(NULL AS VARCHAR)"
    out = ", ".join(f"p{i} AS {quote_ident(name)}" for i, name in enumerate(src.columns))
    con.execute(
        f"COPY (SELECT {out}, {fails} AS _fails, {badval} AS _badval FROM ({parsed})) "
        f"TO {quote_literal(str(staging))} (FORMAT parquet, COMPRESSION snappy)"
    )


def _staging_stats(con: Any, staging: Path, n: int) -> tuple[list[int], list[int]]:
    """Non-null values per column and failing values per column of the staging file."""
    path = quote_literal(str(staging))
    cols = con.execute(f"SELECT * FROM read_parquet({path}) LIMIT 0").description
    counts = ", ".join(f"count({quote_ident(cols[i][0])})" for i in range(n))
    parsed = con.execute(f"SELECT {counts} FROM read_parquet({path})").fetchone()
    fails = [0] * n
    for k, c in con.execute(
        f"SELECT k, count(*) FROM (SELECT unnest(_fails) AS k FROM read_parquet({path}) "
        "WHERE _fails IS NOT NULL) GROUP BY k"
    ).fetchall():
        fails[int(k)] = int(c)
    return [int(p) + f for p, f in zip(parsed, fails, strict=True)], fails


def _settled(type_: str, sample: Mapping[str, int], nonnull: int, fails: int) -> bool:
    """True if the sample's type provably is the file's type under the 99% rule."""
    if nonnull == 0:
        return type_ == "string"
    if not meets_threshold(nonnull - fails, nonnull):
        return False
    sample_total = sum(sample.values())
    for narrower in TYPES[: TYPES.index(type_)]:
        if (sample_total - ok_count(sample, narrower)) * 100 <= nonnull:
            return False
    return True


def _reason_sql(columns: Sequence[str], types: Sequence[str]) -> str:
    whens = []
    for i, (name, type_) in enumerate(zip(columns, types, strict=True)):
        if type_ != "string":
            prefix = quote_literal(f"column {name!r}: '")
            suffix = quote_literal(f"' is not {_ARTICLE[type_]} {type_}")
            whens.append(f"WHEN {i} THEN {prefix} || val || {suffix}")
    return f"CASE k {' '.join(whens)} END" if whens else "NULL"


def _reject_rows(con: Any, rej: str, n: int) -> str:
    """SQL of ``(line, reason, raw)`` for the records DuckDB rejected."""
    known = " ".join(f"WHEN '{k}' THEN {quote_literal(v)}" for k, v in _REJECT_REASON.items())
    return (
        "SELECT line, CASE "
        f"WHEN many IS NOT NULL THEN 'expected {n} fields, found ' || many "
        f"WHEN few IS NOT NULL THEN 'expected {n} fields, found ' || few "
        f"ELSE CASE etype {known} ELSE 'cannot parse the row: ' || msg END END AS reason, "
        "rtrim(ltrim(raw, chr(10) || chr(13)), chr(10) || chr(13)) AS raw FROM ("
        "SELECT CAST(line AS BIGINT) AS line, any_value(csv_line) AS raw, "
        "max(TRY_CAST(regexp_extract(error_message, 'Found: ([0-9]+)', 1) AS BIGINT)) "
        "FILTER (WHERE error_type = 'TOO MANY COLUMNS') AS many, "
        "min(TRY_CAST(regexp_extract(error_message, 'Found: ([0-9]+)', 1) AS BIGINT)) "
        "FILTER (WHERE error_type = 'MISSING COLUMNS') AS few, "
        "min(CAST(error_type AS VARCHAR)) AS etype, min(error_message) AS msg "
        f"FROM {rej}_errors GROUP BY line)"
    )


def _raw_join(src: InputFile, fetched: bool) -> str:
    """SQL join clause giving ``badl`` rows their ``raw`` text."""
    if fetched:
        return "LEFT JOIN (SELECT rn AS line, raw FROM scanned) t USING (line)"
    n = len(src.columns)  # re-assemble the raw text from the parsed fields
    quoted = ", ".join(
        f"CASE WHEN c{i} IS NULL THEN '' WHEN regexp_matches(c{i}, '[\",\\r\\n]') "
        f"THEN '\"' || replace(c{i}, '\"', '\"\"') || '\"' ELSE c{i} END"
        for i in range(n)
    )
    rows = f"(SELECT row_number() OVER () - 1 AS rid, * FROM {records_sql(src.path, n)})"
    return (
        f"LEFT JOIN (SELECT rid, concat_ws(',', {quoted}) AS raw FROM {rows} "
        "WHERE rid IN (SELECT rid FROM bad)) t USING (rid)"
    )


def _quarantine(
    con: Any,
    src: InputFile,
    types: Sequence[str],
    staging: Path,
    rej: str,
    target: Path,
    scan: _lines.LineScan,
) -> tuple[int, int, bool]:
    """Write quarantine.csv. Returns (rows written, trailing-extra rows, exact line numbers)."""
    n = len(src.columns)
    rejected = {r[0] for r in con.execute(f"SELECT DISTINCT line FROM {rej}_errors").fetchall()}
    stage = f"read_parquet({quote_literal(str(staging))}, file_row_number = true)"
    accepted = con.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
    exact = scan.exact(accepted + len(rejected))
    blanks = scan.blanks
    con.execute(
        "CREATE OR REPLACE TEMP TABLE bad AS SELECT file_row_number AS rid, _fails[1] AS k, "
        "CASE WHEN strlen(_badval) > 80 THEN left(_badval, 77) || '...' ELSE _badval END AS val "
        f"FROM {stage} WHERE _fails IS NOT NULL"
    )
    _lines.excluded_table(con, "exg", f"{rej}_errors", blanks)
    con.execute(f"CREATE OR REPLACE TEMP TABLE badl AS {_lines.map_lines_sql('bad', 'exg')}")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE extras (rid BIGINT, line BIGINT, raw VARCHAR, nf BIGINT)"
    )
    fetched = exact and _lines.fetch_lines(con, src.path, n, "badl", "scanned")
    if fetched:
        candidates = con.execute("SELECT rn, raw FROM scanned WHERE is_trailing").fetchall()
        excluded = sorted(set(blanks) | rejected)
        extras = [
            (_lines.rid_of_line(line, excluded), line, raw, nf)
            for line, raw, nf in _lines.extra_field_lines(candidates, n, rejected)
        ]
        if extras:
            con.executemany("INSERT INTO extras VALUES (?, ?, ?, ?)", extras)
    mismatches = (
        f"SELECT line, {_reason_sql(src.columns, types)} AS reason, raw FROM badl "
        f"{_raw_join(src, fetched)} WHERE rid NOT IN (SELECT rid FROM extras)"
    )
    union = (
        f"{_reject_rows(con, rej, n)} UNION ALL "
        f"SELECT line, 'expected {n} fields, found ' || nf, raw FROM extras UNION ALL {mismatches}"
    )
    with atomic_path(target) as tmp:
        written = con.execute(
            f"COPY (SELECT line, reason, raw FROM ({union}) ORDER BY line) "
            f"TO {quote_literal(str(tmp))} (FORMAT csv, HEADER true)"
        ).fetchone()[0]
    extra_rows = con.execute("SELECT count(*) FROM extras").fetchone()[0]
    return int(written), int(extra_rows), exact


def _group_candidates(
    con: Any, valid: Path, columns: Sequence[str], types: Sequence[str]
) -> list[str]:
    strings = [c for c, t in zip(columns, types, strict=True) if t == "string"]
    if not strings:
        return []
    path = quote_literal(str(valid))
    approx = con.execute(
        "SELECT "
        + ", ".join(f"approx_count_distinct({quote_ident(c)})" for c in strings)
        + f" FROM read_parquet({path})"
    ).fetchone()
    maybe = [c for c, a in zip(strings, approx, strict=True) if a <= 2 * MAX_GROUP_VALUES]
    if not maybe:
        return []
    exact = con.execute(
        "SELECT "
        + ", ".join(f"count(DISTINCT {quote_ident(c)})" for c in maybe)
        + f" FROM read_parquet({path})"
    ).fetchone()
    return [c for c, d in zip(maybe, exact, strict=True) if 2 <= d <= MAX_GROUP_VALUES]


def run(
    input_path: str | Path,
    output_dir: str | Path,
    schema_path: str | Path | None = None,
    *,
    sample_rows: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the validate step.

    Args:
        input_path: CSV file to validate.
        output_dir: Directory for ``valid.parquet``, ``quarantine.csv``, ``validate.json``.
        schema_path: Optional schema file fixing some column types.
        sample_rows: Records in the inference sample (default: max(100k, 3% of rows)).
        threads: DuckDB threads (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``validate.json``.

    Raises:
        DataError: If the input or schema is unusable.
        InvariantError: If the row accounting does not add up (a bug).
    """
    import duckdb

    src = check_input(input_path)
    fixed = load_schema(schema_path, src.columns) if schema_path else {}
    out = ensure_dir(output_dir)
    work = out / ".validate.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    con = connect(work / "spill", threads)
    # The byte scan for line numbers runs beside DuckDB (which releases the GIL).
    pool = ThreadPoolExecutor(max_workers=1)
    line_scan = pool.submit(_lines.scan_lines, src.path)
    try:
        k = sample_rows or _sample_size(src)
        n = len(src.columns)
        try:
            got, sample = _class_counts(con, src, k)
            types = [
                fixed.get(c) or infer_from_counts(sample[i]) for i, c in enumerate(src.columns)
            ]
            staging = work / "staging.parquet"
            _write_staging(con, src, types, staging, "rej1")
            rej = "rej1"
            nonnull, fails = _staging_stats(con, staging, n)
            if got >= k and not all(
                src.columns[i] in fixed or _settled(types[i], sample[i], nonnull[i], fails[i])
                for i in range(n)
            ):
                log(f"validate: sample of {k} rows not conclusive; classifying the whole file")
                full = _class_counts(con, src, None)[1]
                types = [
                    fixed.get(c) or infer_from_counts(full[i]) for i, c in enumerate(src.columns)
                ]
                _write_staging(con, src, types, staging, "rej2")
                rej = "rej2"
        except duckdb.Error as exc:
            raise _read_error(src, exc) from None
        quarantined, extras, exact = _quarantine(
            con, src, types, staging, rej, out / "quarantine.csv", line_scan.result()
        )
        rejected = con.execute(f"SELECT count(DISTINCT line) FROM {rej}_errors").fetchone()[0]
        stage = f"read_parquet({quote_literal(str(staging))}, file_row_number = true)"
        accepted = con.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
        cols = ", ".join(quote_ident(c) for c in src.columns)
        with atomic_path(out / "valid.parquet") as tmp:
            valid = con.execute(
                # The NOT IN runs as a join that may reorder rows: sort back to input order, so
                # partitions are contiguous input ranges and re-runs write identical files.
                f"COPY (SELECT {cols} FROM {stage} WHERE _fails IS NULL AND file_row_number "
                f"NOT IN (SELECT rid FROM extras) ORDER BY file_row_number) "
                f"TO {quote_literal(str(tmp))} (FORMAT parquet, COMPRESSION snappy)"
            ).fetchone()[0]
            input_rows = int(accepted) + int(rejected)
            if input_rows != int(valid) + quarantined:
                raise InvariantError(
                    f"row accounting broken: input_rows={input_rows} != valid_rows={valid} + "
                    f"quarantined_rows={quarantined} (extras={extras}); this is a bug"
                )
        result = {
            "input_rows": input_rows,
            "valid_rows": int(valid),
            "quarantined_rows": quarantined,
            "columns": dict(zip(src.columns, types, strict=True)),
            "group_by_candidates": _group_candidates(
                con, out / "valid.parquet", src.columns, types
            ),
            "line_numbers_exact": exact,
        }
    finally:
        pool.shutdown(cancel_futures=True)
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    write_json(out / "validate.json", result)
    log(f"validate: {input_rows} rows, {valid} valid, {quarantined} quarantined")
    return result
