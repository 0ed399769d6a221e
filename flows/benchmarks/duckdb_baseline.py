"""The baseline of benchmark 5: the pipeline's work as one single-process DuckDB script.

``python -m flows.benchmarks.duckdb_baseline --input CSV --output DIR --group-by COLUMN`` reads
the CSV once, types its columns, quarantines bad rows, aggregates per group and writes
``valid.parquet``, ``quarantine.csv`` (``line,reason,raw``), ``aggregates.csv`` and
``summary.json`` into ``DIR``, on all cores, with no orchestration, no intermediate files between
steps and no partitioning: the fastest honest way to do the same work, written as a fair
best-effort baseline. It shares no code with :mod:`flows.steps`; it implements the same rules
from their documentation, and the benchmark checks that both give the same counts, the same
quarantined lines and the same aggregates.

The rules (docs/guides/data-pipeline.md): values are matched after trimming ASCII whitespace;
``""``, ``NA``, ``N/A``, ``null``, ``NULL`` and ``None`` are nulls; the types, narrowest first,
are boolean (true/t/yes, false/f/no, any case), integer (signed 64-bit), float (finite, decimal or
scientific), date (``YYYY-MM-DD``, real dates), timestamp (a date, optionally with
``[ T]HH:MM:SS[.ffffff]``) and string; a column gets the narrowest type that at least 99% of its
non-null values parse as. A row is quarantined when its number of fields differs from the
header's, its quoting is broken, or one of its values does not parse as its column's type.
Aggregates: ``row_count`` and min, max and mean of every integer or float column per group,
nulls ignored, the null group last; integer means from an exact sum, float means from a
compensated sum (``fsum``).

How: types are inferred from the first 100,000 records, then every value is parsed in one pass
that also counts, per column, the non-null values and those that do not fit; the sample's types
are kept only if those counts prove them right under the 99% rule, otherwise the whole file is
classified and parsed again. Simplifications against the pipeline (none matters for the
generated input): line numbers assume one physical line per record and no blank lines, and the
raw text of a type-mismatch row is re-assembled from its fields.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

NULLS = ("", "NA", "N/A", "null", "NULL", "None")
TRUES = ("true", "t", "yes")
FALSES = ("false", "f", "no")
ORDER = ("boolean", "integer", "float", "date", "timestamp", "string")
SAMPLE = 100_000
# Never in real data: makes DuckDB keep empty fields as '' (and count trailing empty fields).
_NEVER = "\x01\x02aiop-baseline-no-null\x03"
_WS = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"
_EDGE_WS = r"^[ \t\n\v\f\r]|[ \t\n\v\f\r]$"
_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_PATTERN = {
    "integer": "[+-]?[0-9]+",
    "float": r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?",
    "date": _DATE,
    "timestamp": _DATE + r"([ T]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?)?",
}
_SQL_TYPE = {"integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "timestamp": "TIMESTAMP"}
_WIDER = {"float": ("integer", "float"), "timestamp": ("date", "timestamp")}


def _one(con: Any, sql: str) -> Any:
    """The first value of the first row of ``sql``."""
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _among(expr: str, words: Sequence[str]) -> str:
    """SQL: ``expr`` equals one of ``words``.

    An OR of equalities, not ``IN (...)``: DuckDB runs a long IN list as a join, which does not
    keep the rows in file order (found here: the table came out rotated).
    """
    return "(" + " OR ".join(f"{expr} = {_lit(w)}" for w in words) + ")"


def _trimmed(c: str) -> str:
    """SQL: ``c`` without surrounding ASCII whitespace (trimming only when there is some)."""
    return f"CASE WHEN regexp_matches({c}, {_lit(_EDGE_WS)}) THEN trim({c}, {_WS}) ELSE {c} END"


def _parsed(t: str, kind: str) -> str:
    """SQL: the trimmed text ``t`` as ``kind``, NULL when it does not fit."""
    if kind == "boolean":
        low = f"lower({t})"
        return f"CASE WHEN {_among(low, TRUES)} THEN true WHEN {_among(low, FALSES)} THEN false END"
    fits = f"regexp_full_match({t}, {_lit(_PATTERN[kind])})"
    if kind in ("date", "timestamp"):
        fits += f" AND NOT starts_with({t}, '0000')"
    cast = f"TRY_CAST({t} AS {_SQL_TYPE[kind]})"
    if kind == "float":
        return f"CASE WHEN {fits} AND isfinite({cast}) THEN {cast} END"
    return f"CASE WHEN {fits} THEN {cast} END"


def _csv(path: Path, n: int, rejects: bool) -> str:
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n))
    errors = "store_rejects = true" if rejects else "ignore_errors = true"
    return (
        f"read_csv({_lit(str(path))}, columns = {{{cols}}}, header = true, auto_detect = false,"
        f" delim = ',', quote = '\"', escape = '\"', strict_mode = true, nullstr = {_lit(_NEVER)},"
        f" {errors})"
    )


def _infer(con: Any, path: Path, n: int, limit: int | None) -> list[dict[str, int]]:
    """Per column: non-null values per narrowest class, over the first ``limit`` records."""
    inner = ", ".join(f"{_trimmed(f'c{i}')} AS t{i}" for i in range(n))
    rows = f"(SELECT * FROM {_csv(path, n, False)}{f' LIMIT {limit}' if limit else ''})"
    classes = []
    for i in range(n):
        t = f"t{i}"
        whens = " ".join(f"WHEN ({_parsed(t, k)}) IS NOT NULL THEN '{k}'" for k in ORDER[:-1])
        classes.append(
            f"histogram(CASE WHEN {_among(t, NULLS)} THEN NULL {whens} ELSE 'string' END)"
        )
    found = con.execute(f"SELECT {', '.join(classes)} FROM (SELECT {inner} FROM {rows})").fetchone()
    return [{k: int(v) for k, v in (h or {}).items()} for h in found]


def _fitting(counts: dict[str, int], kind: str) -> int:
    return sum(v for k, v in counts.items() if kind == "string" or k in _WIDER.get(kind, (kind,)))


def _pick(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if total == 0:  # no non-null value at all
        return "string"
    return next(k for k in ORDER if _fitting(counts, k) * 100 >= total * 99)


def _value(c: str, kind: str) -> str:
    """SQL: the typed value of raw text ``c`` (NULL for nulls and misfits).

    Clean dates and timestamps take a fast path: the cast of the raw text is kept when printing
    it back gives the same text (the canonical form, which the rule accepts). Everything else is
    trimmed only when it has whitespace at an edge, then matched and cast.
    """
    t = _trimmed(c)
    if kind == "string":
        return f"CASE WHEN {_among(t, NULLS)} THEN NULL ELSE {c} END"
    exact = f"CASE WHEN {_among(t, NULLS)} THEN NULL ELSE {_parsed(t, kind)} END"
    if kind not in ("date", "timestamp"):
        return exact
    q = f"TRY_CAST({c} AS {_SQL_TYPE[kind]})"
    width = 10 if kind == "date" else 19
    return (
        f"CASE WHEN strlen({c}) = {width} AND CAST({q} AS VARCHAR) = {c} THEN {q} ELSE {exact} END"
    )


def _misfit(c: str, v: str) -> str:
    """SQL: the non-null text ``c`` did not parse (``v`` is its value)."""
    return f"CASE WHEN {v} IS NOT NULL THEN false ELSE NOT {_among(_trimmed(c), NULLS)} END"


def _parse_pass(con: Any, path: Path, n: int, kinds: Sequence[str]) -> None:
    """Table ``typed``: typed values ``v{i}``, misfit flags ``m{i}`` (typed columns), and for
    rows with a misfit: the first misfit column, its text and all raw fields."""
    for name in ("typed", "reject_errors", "reject_scans"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    typed = [i for i, kind in enumerate(kinds) if kind != "string"]
    values = ", ".join(f"v{i}" for i in range(n))
    raw = ", ".join(f"c{i}" for i in range(n))
    parsed = ", ".join(f"c{i}, {_value(f'c{i}', kind)} AS v{i}" for i, kind in enumerate(kinds))
    flags = "".join(f", {_misfit(f'c{i}', f'v{i}')} AS m{i}" for i in typed)
    if typed:
        first = " ".join(f"WHEN m{i} THEN {i}" for i in typed)
        text = " ".join(f"WHEN m{i} THEN c{i}" for i in typed)
        misfit = " OR ".join(f"m{i}" for i in typed)
        extra = (
            "".join(f", m{i}" for i in typed) + f", CASE {first} END AS bad_col, "
            f"CASE {text} END AS bad_text, CASE WHEN {misfit} THEN [{raw}] END AS fields"
        )
    else:
        extra = ", NULL::INTEGER AS bad_col, NULL::VARCHAR AS bad_text, NULL::VARCHAR[] AS fields"
    # No row number here: a window would serialise the scan. The table's rowids follow the
    # record order (insertion order is preserved) but may have gaps: _line_of_bad_rows ranks them.
    query = f"SELECT {parsed} FROM {_csv(path, n, True)}"
    query = f"SELECT {values}, {raw}{flags} FROM ({query})"
    con.execute(f"CREATE TEMP TABLE typed AS SELECT {values}{extra} FROM ({query})")


def _proven(con: Any, kinds: Sequence[str], sample: list[dict[str, int]]) -> bool:
    """True when the whole file's counts prove every sampled type under the 99% rule."""
    counts = ", ".join(
        f"count(v{i}), {f'count(*) FILTER (WHERE m{i})' if kind != 'string' else '0'}"
        for i, kind in enumerate(kinds)
    )
    got = con.execute(f"SELECT {counts} FROM typed").fetchone()
    for i, kind in enumerate(kinds):
        nonnull, misfits = int(got[2 * i]) + int(got[2 * i + 1]), int(got[2 * i + 1])
        if nonnull == 0:
            if kind != "string":
                return False
            continue
        if misfits * 100 > nonnull:  # the type itself fits fewer than 99%
            return False
        seen = sum(sample[i].values())
        for narrower in ORDER[: ORDER.index(kind)]:  # each narrower type must fail for sure
            if (seen - _fitting(sample[i], narrower)) * 100 <= nonnull:
                return False
    return True


def _line_of_bad_rows(con: Any) -> None:
    """Table ``bad``: the physical ``line`` of each row with a misfit, and its fields.

    A sweep in record order: the k-th rejected record (0-based, in line order) on line ``e`` comes
    after ``e - 2 - k`` accepted records, and an accepted record's line is its index plus 2 plus
    the rejected records swept before it.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE bad AS SELECT rid + 2 + rejected_before AS line, bad_col, "
        "bad_text, fields FROM (SELECT *, sum(is_reject) OVER (ORDER BY pos, is_reject DESC "
        "ROWS UNBOUNDED PRECEDING) AS rejected_before FROM ("
        "SELECT line - 2 - (row_number() OVER (ORDER BY line) - 1) AS pos, 1 AS is_reject, "
        "NULL::BIGINT AS rid, NULL::INTEGER AS bad_col, NULL::VARCHAR AS bad_text, "
        "NULL::VARCHAR[] AS fields FROM (SELECT DISTINCT CAST(line AS BIGINT) AS line "
        "FROM reject_errors) UNION ALL SELECT rid, 0, rid, bad_col, bad_text, fields FROM ("
        "SELECT row_number() OVER (ORDER BY rowid) - 1 AS rid, * FROM typed) "
        "WHERE bad_col IS NOT NULL)) WHERE is_reject = 0"
    )


def _write_quarantine(con: Any, header: Sequence[str], kinds: Sequence[str], out: Path) -> int:
    n = len(header)
    reason = "CASE bad_col " + " ".join(
        f"WHEN {i} THEN {_lit(f'column {name!r}: ' + chr(39))} || "
        f"(CASE WHEN strlen(bad_text) > 80 THEN left(bad_text, 77) || '...' ELSE bad_text END)"
        f" || {_lit(chr(39) + ' is not ' + ('an' if kind == 'integer' else 'a') + ' ' + kind)}"
        for i, (name, kind) in enumerate(zip(header, kinds, strict=True))
        if kind != "string"
    )
    reason = f"{reason} END" if "WHEN" in reason else "NULL"
    quoted = (
        "list_transform(fields, lambda x: CASE WHEN regexp_matches(x, '[\",\\r\\n]') "
        "THEN '\"' || replace(x, '\"', '\"\"') || '\"' ELSE x END)"
    )
    rejects = (
        "SELECT CAST(line AS BIGINT) AS line, CASE "
        "WHEN error_type IN ('TOO MANY COLUMNS', 'MISSING COLUMNS') THEN "
        f"'expected {n} fields, found ' || regexp_extract(error_message, 'Found: ([0-9]+)', 1) "
        "WHEN error_type = 'UNQUOTED VALUE' THEN 'malformed quoting' "
        "ELSE 'cannot parse the row: ' || error_message END AS reason, "
        "trim(csv_line, chr(10) || chr(13)) AS raw FROM "
        "(SELECT *, row_number() OVER (PARTITION BY line ORDER BY error_type) AS k "
        "FROM reject_errors) WHERE k = 1"
    )
    misfits = f"SELECT line, {reason} AS reason, array_to_string({quoted}, ',') AS raw FROM bad"
    return int(
        _one(
            con,
            f"COPY (SELECT * FROM ({rejects} UNION ALL {misfits}) ORDER BY line) "
            f"TO {_lit(str(out))} (FORMAT csv, HEADER true)",
        )
    )


def render(value: object) -> str:
    """One aggregates.csv cell: integers as digits, floats as Python's repr, null as empty."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _aggregate(con: Any, header: Sequence[str], kinds: Sequence[str], group_by: str) -> list[Any]:
    g = header.index(group_by)
    exprs, names = ["count(*)"], [group_by, "row_count"]
    for i, (name, kind) in enumerate(zip(header, kinds, strict=True)):
        if i == g or kind not in ("integer", "float"):
            continue
        mean = f"CAST(sum(v{i}) AS DOUBLE)" if kind == "integer" else f"fsum(v{i})"
        exprs += [f"min(v{i})", f"max(v{i})", f"{mean} / count(v{i})"]
        names += [f"{name}_min", f"{name}_max", f"{name}_mean"]
    rows = con.execute(
        f"SELECT v{g}, {', '.join(exprs)} FROM typed WHERE bad_col IS NULL "
        f"GROUP BY v{g} ORDER BY v{g} ASC NULLS LAST"
    ).fetchall()
    return [names, *rows]


def run(
    input_path: Path, output: Path, group_by: str, threads: int | None = None
) -> dict[str, Any]:
    """Validate, quarantine and aggregate ``input_path`` into ``output``; return the summary.

    Args:
        input_path: the CSV file (header on line 1).
        output: the folder for valid.parquet, quarantine.csv, aggregates.csv and summary.json.
        group_by: the column to aggregate by.
        threads: DuckDB threads (default: all cores).

    Returns:
        Row counts, column types, the group column and the seconds of each phase.

    Example:
        >>> run(Path("input.csv"), Path("out"), "category")["valid_rows"]  # doctest: +SKIP
        9949621
    """
    import duckdb

    started = time.perf_counter()
    with input_path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader([fh.readline().removeprefix("\ufeff")]))
    if group_by not in header:
        raise SystemExit(f"error: {group_by!r} is not a column of {input_path}")
    n = len(header)
    output.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"SET temp_directory = {_lit(str(output / '.spill'))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    phases: dict[str, float] = {}
    mark = time.perf_counter()
    sample = _infer(con, input_path, n, SAMPLE)
    kinds = [_pick(counts) for counts in sample]
    phases["infer_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _parse_pass(con, input_path, n, kinds)
    if not _proven(con, kinds, sample):  # rare: classify everything and parse again
        sample = _infer(con, input_path, n, None)
        kinds = [_pick(counts) for counts in sample]
        _parse_pass(con, input_path, n, kinds)
    phases["parse_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _line_of_bad_rows(con)
    quarantined = _write_quarantine(con, header, kinds, output / "quarantine.csv")
    phases["quarantine_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    cols = ", ".join(f"v{i} AS {_ident(name)}" for i, name in enumerate(header))
    valid = _one(
        con,
        f"COPY (SELECT {cols} FROM typed WHERE bad_col IS NULL) "
        f"TO {_lit(str(output / 'valid.parquet'))} (FORMAT parquet, COMPRESSION snappy)",
    )
    phases["valid_parquet_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    table = _aggregate(con, header, kinds, group_by)
    with (output / "aggregates.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(table[0])
        writer.writerows([render(v) for v in row] for row in table[1:])
    phases["aggregate_s"] = time.perf_counter() - mark
    rejected = _one(con, "SELECT count(DISTINCT line) FROM reject_errors")
    accepted = _one(con, "SELECT count(*) FROM typed")
    con.close()
    summary = {
        "input_rows": int(accepted) + int(rejected),
        "valid_rows": int(valid),
        "quarantined_rows": quarantined,
        "columns": dict(zip(header, kinds, strict=True)),
        "group_by": group_by,
        "groups": len(table) - 1,
        "phases": phases,
        "seconds": time.perf_counter() - started,
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flows.benchmarks.duckdb_baseline``: run :func:`run` and print its summary."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.benchmarks.duckdb_baseline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--input", required=True, type=Path, help="the CSV file")
    parser.add_argument("--output", required=True, type=Path, help="the output folder")
    parser.add_argument("--group-by", required=True, help="the column to aggregate by")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    args = parser.parse_args(argv)
    summary = run(args.input, args.output, args.group_by, args.threads)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
