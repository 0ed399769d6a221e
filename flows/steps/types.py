"""Column types, null tokens and parsing rules, as pure Python and as DuckDB SQL.

The rules exist twice: as Python functions (:func:`is_null`, :func:`classify`,
:func:`parse_value`, :func:`infer_type`), the readable reference used by tests and small
inputs, and as SQL builders (:func:`sql_classify`, :func:`sql_parse_select`) that
``validate`` runs over millions of rows. Tests check that both
agree value by value.

Rules (values are matched after trimming surrounding ASCII whitespace: space, tab, LF,
CR, VT, FF):

* **null**: one of :data:`NULL_TOKENS` (``""``, ``NA``, ``N/A``, ``null``, ``NULL``,
  ``None``; exact and case-sensitive).
* **boolean**: ``true/false``, ``t/f``, ``yes/no``, case-insensitive. ``0``/``1`` are
  *not* booleans, so integer columns stay integers.
* **integer**: optional sign and ASCII digits, within the signed 64-bit range, without
  leading zeros (``0`` and ``-0`` are integers; ``02134`` is not: it is a code, such as
  a zip code, and stays a string).
* **float**: decimal or scientific notation (``1``, ``-1.5``, ``.5``, ``0.5``, ``1.``,
  ``2e-3``), finite, without leading zeros before the point (``01.5`` is not a float).
  No ``inf``/``nan``, no thousands separators, no decimal comma. The double must read back
  as the same number: its shortest text (Python's ``repr``, DuckDB's ``VARCHAR``) has the
  value's significant digits (``0.1``, ``0.30000000000000004`` and ``1e23`` do;
  ``9007199254740993``, ``1234567890123456789`` and ``0.1234567890123456789`` do not: a
  double would round them). Any value of at most 15 significant digits does.
* **date**: ``YYYY-MM-DD``, a real calendar date (``2023-02-30`` is not), year 0001-9999.
* **timestamp**: ``YYYY-MM-DD HH:MM:SS[.f{1,6}]`` or with ``T`` instead of the space, no
  time zone; a plain date also parses as a timestamp (midnight).
* **string**: anything; strings keep their original, untrimmed text.

A column declared in ``--schema`` with a format (:mod:`flows.steps.formats`: thousands
separators, a currency, a decimal comma, a date pattern) is parsed by that format, then by
the rules above: ``$1,200.00`` in a ``float thousands=, currency=$`` column is ``1200.0``.

Types are ordered narrowest first (:data:`TYPES`). An integer a double holds is also a
float and every date also a timestamp, so :func:`classify` gives each value its narrowest
class (one of :data:`CLASSES`: the types, and ``big_integer`` for an integer a double would
round) and :data:`ACCEPTS` says which classes a type accepts. A column's type is the
narrowest type that at least :data:`THRESHOLD` (99%) of its non-null values parse as; a
column without non-null values is ``string``. So a column of 64-bit ids with a few
decimals is a string (every digit kept), never a float.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from flows.steps.formats import PLAIN, Format

__all__ = [
    "ACCEPTS",
    "CLASSES",
    "DUCKDB_TYPES",
    "FALSE_TOKENS",
    "NULL_TOKENS",
    "THRESHOLD",
    "TRUE_TOKENS",
    "TYPES",
    "classify",
    "infer_from_counts",
    "infer_type",
    "is_null",
    "meets_threshold",
    "ok_count",
    "parse_value",
    "quote_ident",
    "quote_literal",
    "rounded",
    "sql_classify",
    "sql_parse_select",
    "sql_trimmed",
]

TYPES: tuple[str, ...] = ("boolean", "integer", "float", "date", "timestamp", "string")
#: Value classes: the types, and ``big_integer``, a 64-bit integer a double would round.
CLASSES: tuple[str, ...] = ("boolean", "integer", "big_integer", *TYPES[2:])
NULL_TOKENS: tuple[str, ...] = ("", "NA", "N/A", "null", "NULL", "None")
TRUE_TOKENS: tuple[str, ...] = ("true", "t", "yes")
FALSE_TOKENS: tuple[str, ...] = ("false", "f", "no")
THRESHOLD = 0.99
DUCKDB_TYPES: Mapping[str, str] = {
    "boolean": "BOOLEAN",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "string": "VARCHAR",
}
#: For each type, the value classes (see :func:`classify`) it accepts.
ACCEPTS: Mapping[str, frozenset[str]] = {
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"integer", "big_integer"}),
    "float": frozenset({"integer", "float"}),
    "date": frozenset({"date"}),
    "timestamp": frozenset({"date", "timestamp"}),
    "string": frozenset(CLASSES),
}

_WS = " \t\n\r\x0b\x0c"  # ASCII whitespace (string.whitespace)
_WS_LITERAL = "'" + _WS + "'"  # the characters themselves: no chr() calls to fold per use
# A value whose trimmed text is a null token: one RE2 match, which stops at the first character
# that cannot start such a value (nearly every value), instead of seven edge tests and a trim.
_NULL_PADDED = "'[" + _WS + "]*(" + "|".join(NULL_TOKENS) + ")[" + _WS + "]*'"
assert all(re.escape(t) == t for t in NULL_TOKENS)  # the tokens hold no regex syntax
_INT_RE = r"[+-]?(0|[1-9][0-9]*)"
_FLOAT_RE = r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
_DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TS_RE = _DATE_RE + r"([ T]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?)?"
_REGEX = {"integer": _INT_RE, "float": _FLOAT_RE, "date": _DATE_RE, "timestamp": _TS_RE}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------- Python rules


def is_null(value: str | None) -> bool:
    """Return True if ``value`` is missing or a null token after trimming."""
    return value is None or value.strip(_WS) in NULL_TOKENS


def _parse_trimmed(t: str, type_: str) -> object | None:
    """Parse a trimmed, non-null value; None when it does not fit ``type_``."""
    if type_ == "boolean":
        low = t.lower()
        return True if low in TRUE_TOKENS else False if low in FALSE_TOKENS else None
    if type_ == "string":
        return t
    if type_ not in _REGEX:
        raise ValueError(f"unknown type {type_!r}; expected one of {', '.join(TYPES)}")
    if not re.fullmatch(_REGEX[type_], t) or (type_ in ("date", "timestamp") and t[:4] == "0000"):
        return None
    if type_ == "integer":
        n = int(t)
        return n if _INT_MIN <= n <= _INT_MAX else None
    if type_ == "float":
        f = float(t)
        return f if math.isfinite(f) and _digits(repr(f)) == _digits(t) else None
    try:
        return _dt.date.fromisoformat(t) if type_ == "date" else _dt.datetime.fromisoformat(t)
    except ValueError:
        return None


def _digits(number: str) -> str:
    """The significant digits of a number's text (no sign, point, exponent or outer zeros).

    Two texts of one double that have the same digits are the same number (a factor of 10
    between them would be a different double), so a double reads back as its text exactly
    when ``_digits(repr(double)) == _digits(text)``.
    """
    mantissa = number.lower().partition("e")[0]
    return mantissa.lstrip("+-").replace(".", "").strip("0")


def parse_value(value: str | None, type_: str, fmt: Format = PLAIN) -> object | None:
    """Parse one raw CSV value as ``type_``.

    Args:
        value: Raw field text (untrimmed) or None.
        type_: One of :data:`TYPES`.
        fmt: How the column writes its values (declared in ``--schema``).

    Returns:
        ``bool``, ``int``, ``float``, ``date``, ``datetime``, or the original ``str`` for
        strings; None for a null or for a value that does not fit ``type_``.

    Examples:
        >>> from flows.steps.formats import parse_options
        >>> parse_value("$1,200.00", "float", parse_options("float", ["thousands=,", "currency=$"]))
        1200.0
    """
    if value is None or is_null(value):
        return None
    if type_ == "string":
        return value
    t = value.strip(_WS)
    if fmt.pattern:
        return _parse_date(t, type_, fmt)
    if fmt:
        if not re.fullmatch(fmt.number_regex(), t):
            return None
        t = fmt.plain_number(t)
    return _parse_trimmed(t, type_)


def _parse_date(t: str, type_: str, fmt: Format) -> object | None:
    """A trimmed value as a date or timestamp written in ``fmt.pattern``; None if it is not."""
    if not re.fullmatch(fmt.date_regex(), t):
        return None
    try:
        parsed = _dt.datetime.strptime(t, fmt.pattern)
    except ValueError:
        return None
    return parsed.date() if type_ == "date" else parsed


def rounded(value: str) -> str | None:
    """The double a number in float notation would become when a double cannot hold it
    (``'9007199254740993'`` -> ``'9007199254740992.0'``), else None.

    Examples:
        >>> rounded("1234567890123456789"), rounded("0.1"), rounded("abc")
        ('1.2345678901234568e+18', None, None)
    """
    t = value.strip(_WS)
    if not re.fullmatch(_FLOAT_RE, t) or not math.isfinite(f := float(t)):
        return None
    return None if _digits(repr(f)) == _digits(t) else repr(f)


def classify(value: str | None) -> str | None:
    """Return the narrowest class (:data:`CLASSES`) of ``value``, or None for a null."""
    if value is None or is_null(value):
        return None
    t = value.strip(_WS)
    for type_ in TYPES[:-1]:
        if _parse_trimmed(t, type_) is not None:
            if type_ == "integer" and _parse_trimmed(t, "float") is None:
                return "big_integer"
            return type_
    return "string"


def ok_count(counts: Mapping[str, int], type_: str) -> int:
    """Number of values among per-class ``counts`` (:data:`CLASSES`) that parse as ``type_``."""
    return sum(n for cls, n in counts.items() if cls in ACCEPTS[type_])


def meets_threshold(ok: int, total: int) -> bool:
    """True if ``ok`` of ``total`` values is at least :data:`THRESHOLD` (exact arithmetic)."""
    return ok * 100 >= total * round(THRESHOLD * 100)


def infer_from_counts(counts: Mapping[str, int]) -> str:
    """Pick a column type from the number of non-null values in each class.

    Args:
        counts: Class (see :func:`classify`) to number of values.

    Returns:
        The narrowest type accepting at least :data:`THRESHOLD` of the values.
    """
    total = sum(counts.values())
    if total == 0:
        return "string"
    for type_ in TYPES:
        if meets_threshold(ok_count(counts, type_), total):
            return type_
    raise AssertionError("unreachable: string accepts every value")  # pragma: no cover


def infer_type(values: Iterable[str | None]) -> str:
    """Infer a column's type from its raw values (the reference implementation)."""
    counts: dict[str, int] = {}
    for value in values:
        cls = classify(value)
        if cls is not None:
            counts[cls] = counts.get(cls, 0) + 1
    return infer_from_counts(counts)


# --------------------------------------------------------------------------- SQL rules
# The SQL has a fast path for clean values and only trims (DuckDB's multi-character trim
# is slow) when the fast path fails. Regexes run before every TRY_CAST because DuckDB's
# casts are lenient ('1.5' -> BIGINT 2, '1e3', '0x10', '+-5' -> DOUBLE, '24:00:00').


def quote_ident(name: str) -> str:
    """Quote ``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote ``text`` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def _in(expr: str, tokens: Iterable[str]) -> str:
    return f"{expr} IN ({', '.join(quote_literal(t) for t in tokens)})"


def _maybe_padded(x: str) -> str:
    """SQL: ``x`` may start or end with ASCII whitespace: its first or last character (a code
    point) is at most U+0020. Every whitespace character is, so every padded value passes; the
    few others that do (other control characters at an edge) are trimmed to themselves."""
    return f"(ascii({x}) <= 32 OR ascii({x}[-1]) <= 32)"


def _trim(x: str) -> str:
    # DuckDB's trim with a set of characters costs about 6x the two one-character tests that
    # skip it for values without whitespace at an edge (nearly all of them); the tests cost
    # half of testing each whitespace character at each end.
    return f"CASE WHEN {_maybe_padded(x)} THEN trim({x}, {_WS_LITERAL}) ELSE {x} END"


def _null_fast(x: str) -> str:
    return f"({x} IS NULL OR {_in(x, NULL_TOKENS)})"


def _check_formatted(t: str, type_: str, fmt: Format) -> str:
    """SQL: typed value of the trimmed text ``t`` written in ``fmt``, NULL when it does not fit."""
    if fmt.pattern:
        parsed = f"try_strptime({t}, {quote_literal(fmt.pattern)})"
        # DuckDB reads year 0000 as 1 BC; Python refuses it: no date before 0001-01-01.
        typed = f"CAST({parsed} AS {DUCKDB_TYPES[type_]})"
        return (
            f"CASE WHEN regexp_full_match({t}, {quote_literal(fmt.date_regex())}) AND {parsed}"
            f" >= TIMESTAMP '0001-01-01' THEN {typed} END"
        )
    plain = _check_cast(fmt.sql_plain_number(t), type_)
    return f"CASE WHEN regexp_full_match({t}, {quote_literal(fmt.number_regex())}) THEN {plain} END"


def _check_cast(t: str, type_: str) -> str:
    """SQL: typed value of the clean text ``t``, NULL when it does not fit ``type_``."""
    if type_ == "boolean":
        return (
            f"CASE WHEN {_in(f'lower({t})', TRUE_TOKENS)} THEN true "
            f"WHEN {_in(f'lower({t})', FALSE_TOKENS)} THEN false END"
        )
    if type_ == "string":
        return t
    cond = f"regexp_full_match({t}, '{_REGEX[type_]}')"
    cast = f"TRY_CAST({t} AS {DUCKDB_TYPES[type_]})"
    if type_ == "float":  # DuckDB's VARCHAR of a double is its shortest text, as repr
        # Up to 15 characters (15 digits) a normal double always reads back: compare only longer
        # texts and the tiny ones (1e-400 underflows).
        short = f"strlen({t}) <= 15 AND abs({cast}) > 1e-300"
        same = f"{_sql_digits(t)} = {_sql_digits(f'CAST({cast} AS VARCHAR)')}"
        return f"CASE WHEN {cond} AND isfinite({cast}) AND ({short} OR {same}) THEN {cast} END"
    if type_ in ("date", "timestamp"):
        cond += f" AND NOT starts_with({t}, '0000')"
    return f"CASE WHEN {cond} THEN {cast} END"


def _sql_digits(x: str) -> str:
    """SQL: :func:`_digits` of the number text ``x``."""
    return f"trim(translate(split_part(lower({x}), 'e', 1), '+-.', ''), '0')"


# Fast paths: a cheap test on the raw text that accepts a subset of what the rule
# accepts (checked value by value against the Python rules in the tests); anything it
# does not accept goes through the exact (regex) check on the trimmed text.
def _fast(c: str, q: str, type_: str) -> tuple[str, str]:
    """(pre, accept) SQL: ``pre`` computes ``q`` from raw ``c``; ``accept`` tests ``q``."""
    if type_ == "integer":
        return f"TRY_CAST({c} AS BIGINT)", f"CAST({q} AS VARCHAR) = {c}"
    if type_ == "float":
        # Only short plain decimals take the fast path: no leading zero, at most 15
        # characters (so at most 15 digits: a double holds them); the rest is checked exactly.
        first, second = f"ascii({c})", f"ascii(substr({c}, 2, 1))"
        starts_well = (  # 1-9, '.', '0' not followed by a digit, '-' then 1-9
            f"({first} BETWEEN 49 AND 57 OR {first} = 46 OR ({first} = 48 AND NOT {second} "
            f"BETWEEN 48 AND 57) OR ({first} = 45 AND {second} BETWEEN 49 AND 57))"
        )
        guard = (
            f"strlen({c}) <= 15 AND {starts_well} AND NOT contains({c}, '_') "
            f"AND NOT contains({c}, '+-')"
        )
        # An exponent may underflow (1e-400 is no double): tiny values and zeros go the exact
        # way (an OR that lets zeros through here cost a quarter of the column's time).
        return (
            f"CASE WHEN {guard} THEN TRY_CAST({c} AS DOUBLE) END",
            f"isfinite({q}) AND abs({q}) > 1e-300",
        )
    if type_ in ("date", "timestamp"):
        # A value that is DuckDB's own text of the date (timestamp) it reads as, in years 1 to
        # 9999. DuckDB also reads and prints five-digit years and (-)infinity, which the rules
        # refuse; it prints year 0000 as 0001 BC, so that one never equals its text.
        kind = DUCKDB_TYPES[type_]
        return f"TRY_CAST({c} AS {kind})", (
            f"{q} >= {kind} '0001-01-01' AND {q} < {kind} '10000-01-01' "
            f"AND CAST({q} AS VARCHAR) = {c}"
        )
    return _check_cast(c, type_), f"{q} IS NOT NULL"


def sql_parse_select(
    columns: Sequence[tuple[str, str]], source: str, formats: Sequence[Format] | None = None
) -> str:
    """SELECT parsing raw VARCHAR columns of ``source`` into typed values.

    Args:
        columns: ``(expression, type)`` per output column ``i``; the expression reads
            the raw text from ``source``.
        source: Relation (table function, table or parenthesised query).
        formats: How each column writes its values (default: the plain rules).

    Returns:
        A query with, per column ``i``: ``c{i}`` (raw text), ``p{i}`` (typed value, NULL
        for nulls and misfits) and ``f{i}`` (true for a non-null value that does not
        fit the type), in ``source`` order.
    """
    # Each level computes what the next needs once, so an expression is written (and planned)
    # once per column: the trimmed text ``t`` is computed only where the fast path did not
    # accept the value, and every later test reads it by name.
    levels: list[list[str]] = [[] for _ in range(7)]
    lvl0, lvl1, lvl2, lvl3, lvl4, lvl5, lvl6 = levels
    for i, (expr, type_) in enumerate(columns):
        c, n, q, a, t, p = f"c{i}", f"n{i}", f"q{i}", f"a{i}", f"t{i}", f"p{i}"
        lvl0.append(f"{expr} AS {c}")
        fmt = formats[i] if formats else PLAIN
        if type_ != "string" and not fmt:
            # The fast path first: a value it accepts is never a null token (every accepted
            # form starts like a number or a date, or is a boolean word), so the null test
            # runs only on the values it did not accept.
            pre, accept = _fast(c, q, type_)
            lvl1.append(f"{c}, {pre} AS {q}")
            lvl2.append(f"{c}, {q}, coalesce({accept}, false) AS {a}")
            lvl3.append(f"{c}, {q}, {a}, CASE WHEN {a} THEN false ELSE {_null_fast(c)} END AS {n}")
            check = _check_cast(t, type_)
        else:
            lvl1.append(f"{c}, {_null_fast(c)} AS {n}")
        if type_ == "string":
            for level in (lvl2, lvl3, lvl4):
                level.append(f"{c}, {n}")
            # A null token with whitespace around it is the only other null: only a value that
            # may be padded meets the regex.
            lvl5.append(
                f"{c}, CASE WHEN {n} THEN NULL WHEN NOT {_maybe_padded(c)} THEN {c} "
                f"WHEN regexp_full_match({c}, {_NULL_PADDED}) THEN NULL ELSE {c} END AS {p}"
            )
            lvl6.append(f"{c}, {p}, false AS f{i}")
            continue
        if fmt:  # no fast path: every value goes through its format
            lvl2.append(f"{c}, {n}, NULL AS {q}")
            lvl3.append(f"{c}, {n}, {q}, false AS {a}")
            check = _check_formatted(t, type_, fmt)
        lvl4.append(
            f"{c}, {n}, {q}, {a}, CASE WHEN {n} OR {a} THEN NULL ELSE {_trim(c)} END AS {t}"
        )
        lvl5.append(
            f"{c}, {n}, {t}, CASE WHEN {a} THEN {q} WHEN {n} THEN NULL ELSE {check} END AS {p}"
        )
        lvl6.append(
            f"{c}, {p}, CASE WHEN {n} OR {p} IS NOT NULL THEN false "
            f"WHEN {_in(t, NULL_TOKENS)} THEN false ELSE true END AS f{i}"
        )
    query = f"SELECT {', '.join(lvl0)} FROM {source}"
    for level in (lvl1, lvl2, lvl3, lvl4, lvl5, lvl6):
        query = f"SELECT {', '.join(level)} FROM ({query})"
    return query


def sql_trimmed(x: str) -> str:
    """SQL: the raw VARCHAR ``x`` trimmed, or NULL when it is a null (input of classify)."""
    return f"CASE WHEN {_null_fast(x)} THEN NULL ELSE {_trim(x)} END"


def sql_classify(t: str) -> str:
    """SQL giving the narrowest class (:func:`classify`) of a :func:`sql_trimmed` value (NULL
    for nulls).

    Slower than :func:`sql_parse_select` (it tries every type); ``validate`` runs it on a sample
    and only falls back to the whole file when the sample cannot settle a column.
    """

    def then(type_: str) -> str:
        if type_ != "integer":
            return f"'{type_}'"
        # Up to 15 characters an integer is a double's; longer ones are checked.
        exact = f"strlen({t}) <= 15 OR ({_check_cast(t, 'float')}) IS NOT NULL"
        return f"CASE WHEN {exact} THEN 'integer' ELSE 'big_integer' END"

    whens = " ".join(
        f"WHEN ({_check_cast(t, type_)}) IS NOT NULL THEN {then(type_)}" for type_ in TYPES[:-1]
    )
    # Shortcuts before the rules, each exact. A value that does not start like a number
    # ([0-9+-.]) can be neither an integer, a float, a date nor a timestamp (tested first: DuckDB's
    # casts of text are slow). An integer in DuckDB's own text of it (no sign, no leading zero) of
    # at most 15 characters is an `integer`. The typing fast paths (:func:`_fast`) of a float and
    # of a date accept only values of that class: no integer passes the float's (its guard lets
    # through only canonical integers of at most 15 characters, taken by the integer shortcut
    # before it), and a date's text is no number. Only a text of 10 bytes can be a date in DuckDB's
    # text (a failed cast to DATE costs about 250 ns, 10 times a test of the length).
    number_start = f"(ascii({t}) BETWEEN 48 AND 57 OR ascii({t}) IN (43, 45, 46))"
    fast_float = _fast(t, f"({_fast(t, '', 'float')[0]})", "float")[1]
    fast_date = _fast(t, f"TRY_CAST({t} AS DATE)", "date")[1]
    shortcuts = (
        f"WHEN NOT {number_start} THEN CASE WHEN "
        f"({_check_cast(t, 'boolean')}) IS NOT NULL THEN 'boolean' ELSE 'string' END "
        f"WHEN strlen({t}) <= 15 AND CAST(TRY_CAST({t} AS BIGINT) AS VARCHAR) = {t} "
        f"THEN 'integer' WHEN {fast_float} THEN 'float' "
        f"WHEN strlen({t}) = 10 AND {fast_date} THEN 'date'"
    )
    return (
        f"CASE WHEN {t} IS NULL OR {_in(t, NULL_TOKENS)} THEN NULL {shortcuts} {whens} "
        "ELSE 'string' END"
    )
