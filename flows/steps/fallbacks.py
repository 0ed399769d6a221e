"""Columns that fell back to ``string``: why, and the ``--schema`` line that would type them.

Inference reads only plain forms and needs 99% of a column's values to fit a type, so a column of
``$1,200.00``, of ``03/15/2024`` or of numbers with a few words among them becomes ``string``:
nothing is lost, but nothing is aggregated either. After the typed pass ``validate`` looks at each
inferred ``string`` column: :func:`flows.steps.readings.suggest` finds the reading (a type and a
format) that parses the most of its first values. When it parses at least half of those, one
query counts the values it parses in the whole column (else the column stays text unreported, and
no query reads the whole column). When it parses at least half of them, the column is reported
(``validate.json`` ``fallbacks``, then ``summary.json`` and the console) with the reason and the
schema line; the user decides. Nothing here changes a type: a suggestion is only ever applied by a
line the user writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flows.steps.formats import PLAIN
from flows.steps.readings import Reading, suggest
from flows.steps.schema import schema_line
from flows.steps.types import TYPES, parse_value, quote_ident, sql_parse_select, sql_trimmed

__all__ = ["SAMPLE_ROWS", "SAMPLE_VALUES", "explain"]

#: Rows whose values are looked at for a suggestion (the count of what it parses is exact).
SAMPLE_ROWS = 20_000
#: The most frequent distinct values per column given to the suggestion.
SAMPLE_VALUES = 100
_PLURAL = {
    "boolean": "booleans",
    "integer": "integers",
    "float": "floats",
    "date": "dates",
    "timestamp": "timestamps",
}


def explain(
    con: Any, stage: str, columns: Sequence[str], types: Sequence[str], declared: set[str]
) -> list[dict[str, Any]]:
    """The inferred ``string`` columns a typed reading parses at least half of, in column order.

    Args:
        con: The DuckDB connection holding ``stage``.
        stage: The typed rows with their position ``rid`` (``p{i}`` holds a string column's text).
        columns: The input's column names.
        types: Their types.
        declared: Columns the schema names (never reported: the user chose).

    Returns:
        One entry per column: ``column``, ``type``, ``format``, ``schema`` (the line),
        ``values`` (non-null), ``would_type`` (how many the line would type), ``example``,
        ``other`` (a second line that reads some values otherwise, or None) and ``why``.
    """
    strings = [i for i, t in enumerate(types) if t == "string" and columns[i] not in declared]
    if not strings:
        return []
    picks = ", ".join(f"p{i} AS {quote_ident(str(i))}" for i in strings)
    rows = con.execute(
        f"SELECT col, t, count(*) AS n FROM (SELECT col, {sql_trimmed('v')} AS t FROM (UNPIVOT"
        f" (SELECT {picks} FROM {stage} WHERE rid < {SAMPLE_ROWS}) ON COLUMNS(*) INTO NAME col"
        " VALUE v)) WHERE regexp_matches(t, '[0-9]') GROUP BY col, t QUALIFY row_number() OVER"
        f" (PARTITION BY col ORDER BY count(*) DESC, t) <= {SAMPLE_VALUES}"
    ).fetchall()
    seen: dict[int, dict[str, int]] = {}
    for col, text, count in rows:
        seen.setdefault(int(col), {})[str(text)] = int(count)
    # A reading that parses less than half of the values looked at is not counted in the whole
    # column (a query over every row): the column is text.
    readings = {
        i: r
        for i, counts in seen.items()
        if (r := suggest(counts)) is not None and 2 * r.fits >= r.total
    }
    order = [i for i in strings if i in readings]
    if not order:
        return []
    parsed = sql_parse_select(
        [(f"p{i}", readings[i].type) for i in order], stage, [readings[i].format for i in order]
    )
    counts = ", ".join(
        f"count(p{j}), count(*) FILTER (WHERE f{j}), any_value(c{j}) FILTER (WHERE f{j})"
        for j in range(len(order))
    )
    found = con.execute(f"SELECT {counts} FROM ({parsed})").fetchone()
    out = []
    for j, i in enumerate(order):
        fits, misfits, misfit = int(found[3 * j]), int(found[3 * j + 1]), found[3 * j + 2]
        if fits and fits >= misfits:
            entry = _entry(columns[i], readings[i], fits, fits + misfits, seen[i], misfit)
            out.append(entry)
    return out


def _entry(
    name: str,
    reading: Reading,
    fits: int,
    values: int,
    sample: dict[str, int],
    misfit: str | None,
) -> dict[str, Any]:
    fmt, kind = reading.format, _PLURAL[reading.type]
    line = schema_line(name, reading.type, fmt)
    if fmt:  # a value the plain rules do not read and the format does
        example = next(
            (v for v in sample if parse_value(v, reading.type, PLAIN) is None
             and parse_value(v, reading.type, fmt) is not None),
            next(iter(sample)),
        )  # fmt: skip
        why = (
            f"its values are {kind} written with {fmt.describe()} (e.g. '{example}'), a form"
            " inference does not read"
        )
    else:
        example = str(misfit if misfit is not None else reading.misfit or next(iter(sample)))
        share = 100 * fits // values
        why = (
            f"{share}% of its values are {kind}, and inference needs 99%"
            f" (e.g. '{example}' is not one of them)"
        )
    if fits < values:
        why += f"; with the line, {values - fits} of its {values} values would be quarantined"
    other = None
    if reading.other is not None:
        other = schema_line(name, reading.other.type, reading.other.format)
        why += (
            f"; '{example}' also reads as another value with '{other}': use the one the file means"
        )
    assert reading.type in TYPES
    return {
        "column": name,
        "type": reading.type,
        "format": str(fmt),
        "schema": line,
        "values": values,
        "would_type": fits,
        "example": example,
        "other": other,
        "why": why,
    }
