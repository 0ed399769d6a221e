"""Type rules: null tokens, per-type parsing, the 99% narrowest-type inference, SQL parity."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pytest

from flows.steps import types as T


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["true", "False", "T", "f", "YES", "no"], "boolean"),
        (["0", "1", "1", "0"], "integer"),  # 0/1 are integers, not booleans
        (["1", "-2", "+3", "-0"], "integer"),
        (["02134", "10001", "00501"], "string"),  # leading zeros: codes, not numbers
        (["0.5", "-0.25", "0e3"], "float"),
        (["01.5", "2.5"], "string"),
        (["1", "2.5", "3"], "float"),
        (["1e3", "-2.5E-2", ".5", "1."], "float"),
        (["9223372036854775807", "1"], "integer"),
        (["9223372036854775808", "1"], "string"),  # beyond 64 bits: a double would round it
        ([str(10**22 + i) for i in range(30)], "string"),
        (["1.5", "12345678901234567890123"], "string"),
        # a float must read back as the same number: 64-bit integers beyond 2**53 do not
        (["1234567890123456789", "1234567890123456788", "1.5"], "string"),
        (["9007199254740993", "1.5", "2.5"], "string"),
        (["9007199254740993", "1"], "integer"),
        (["9007199254740992", "1.5"], "float"),  # 2**53 is a double
        (["0.30000000000000004", "0.1", "1e23"], "float"),  # 17 digits that read back
        (["0.12345678901234567891", "0.5"], "string"),  # 20 digits do not
        (["2024-02-29", "2023-01-01"], "date"),
        (["2023-02-30", "2023-01-01"], "string"),  # not a real date: 50% misfits
        (["2023-01-01 10:00:00", "2023-01-02T11:30:00.5"], "timestamp"),
        (["2023-01-01", "2023-01-02 11:30:00"], "timestamp"),  # dates fit timestamp
        (["2023-01-01 24:00:00", "2023-01-01 10:00:00"], "string"),
        (["abc", "1"], "string"),
        (["", "NA", "N/A", "null", "NULL", "None"], "string"),  # all null
        ([], "string"),
        (["1", "NA", " 2 ", "null", "\t3\n"], "integer"),  # null tokens do not count
        (["1,5", "2"], "string"),  # no decimal comma
        (["inf", "nan", "1"], "string"),
        (["yes", "no", "1"], "string"),  # a third misfits either way
    ],
)
def test_infer_type(values: list[str], expected: str) -> None:
    assert T.infer_type(values) == expected


@pytest.mark.parametrize(
    ("misfits", "expected"),
    [(0, "integer"), (1, "integer"), (2, "float")],  # 1 of 100 fits the 99% rule, 2 do not
)
def test_infer_type_99_percent_rule(misfits: int, expected: str) -> None:
    values = [str(i) for i in range(100 - misfits)] + ["1.5"] * misfits
    assert T.infer_type(values) == expected


def test_infer_type_99_percent_falls_to_string() -> None:
    assert T.infer_type([str(i) for i in range(98)] + ["x", "y"]) == "string"
    assert T.infer_type([str(i) for i in range(99)] + ["x"]) == "integer"


@pytest.mark.parametrize("token", ["", "NA", "N/A", "null", "NULL", "None", "  NA ", "\tnull\r\n"])
def test_null_tokens(token: str) -> None:
    assert T.is_null(token)
    assert T.classify(token) is None
    for type_ in T.TYPES:
        assert T.parse_value(token, type_) is None


@pytest.mark.parametrize("text", ["na", "Null", "NONE", "n/a", "nil", "-", "0"])
def test_not_null_tokens(text: str) -> None:
    assert not T.is_null(text)


@pytest.mark.parametrize(
    ("text", "type_", "value"),
    [
        ("TRUE", "boolean", True),
        ("no", "boolean", False),
        ("1", "boolean", None),
        (" 42 ", "integer", 42),
        ("1.5", "integer", None),
        ("1e3", "integer", None),
        ("0x10", "integer", None),
        ("1_000", "integer", None),
        ("1e3", "float", 1000.0),
        ("+-5", "float", None),
        ("1e999", "float", None),
        ("9007199254740993", "float", None),  # the double would be ...992
        ("9007199254740993", "integer", 9007199254740993),
        ("-9007199254740992", "float", -9007199254740992.0),
        ("0.1234567890123456789", "float", None),
        ("1e-400", "float", None),  # the double would be 0
        ("1.000000000000000000000", "float", 1.0),  # zeros are not digits that change
        ("2023-1-5", "date", None),
        ("0000-01-01", "date", None),
        ("2024-02-29", "date", dt.date(2024, 2, 29)),
        ("2023-01-05", "timestamp", dt.datetime(2023, 1, 5)),
        ("2023-01-05T10:00:00.123", "timestamp", dt.datetime(2023, 1, 5, 10, 0, 0, 123000)),
        ("2023-01-05 10:00:00+02", "timestamp", None),
        (" padded ", "string", " padded "),  # strings keep their text
    ],
)
def test_parse_value(text: str, type_: str, value: object) -> None:
    assert T.parse_value(text, type_) == value


def test_an_integer_a_double_cannot_hold_is_a_class_of_its_own() -> None:
    assert T.classify("9007199254740993") == "big_integer"
    assert T.classify("9007199254740992") == "integer"
    assert T.classify("-1234567890123456789") == "big_integer"
    assert T.infer_from_counts({"big_integer": 3, "integer": 97}) == "integer"
    assert T.infer_from_counts({"big_integer": 2, "float": 98}) == "string"
    assert T.infer_from_counts({"big_integer": 1, "float": 99}) == "float"


def test_classify_is_the_narrowest_type() -> None:
    assert [T.classify(v) for v in ["t", "7", "7.5", "2023-01-01", "2023-01-01 00:00:00", "x"]] == [
        "boolean",
        "integer",
        "float",
        "date",
        "timestamp",
        "string",
    ]


def _tricky_values() -> list[str]:
    values = [
        "1", "0", "yes", "Y", "T", "TRUE", "no", "1.5", "1e3", " 42", "+7", "0x10", "1_000", "inf",
        "nan", "+-5", "-+5", "1,5", "2023-1-5", "2023-02-30", "20230105", "2023-01-05T10:00:00",
        "2023-01-05 10:00:00+02", "2023-01-05", "2023-01-05 24:00:00", "2023-01-05 23:59:60",
        "NA", " NA", "\tnull\n", "-0", ".5", "1.", ".", "e5", "1e", "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "0001-01-01",
        "0000-01-01", "0999-12-31", "2023-01-05 10:00:00.123456", "2023-01-05 10:00:00.1234567",
        "2023-01-05 10:00", "abc", "  ", "nULL", " true ", "1e999", "-1E-5", "+.5e+3", "\u0663",
        " 2023-01-05 ", "\f5", "\v5", "5\f", "\u00a05", "007", "x" * 40, "1e+-5",
        "02134", "-007", "+0", "0.5", "00.5", "-0.5", "-01.5", "1e05", "0e0", " 0012 ",
        "10000000000000000000000", "-10000000000000000000000.0", "123456789012345678",
        "1234567890123456789", "12345678901234567.5",
        "9007199254740993", "9007199254740992", "-9007199254740993", "18014398509481985",
        "0.30000000000000004", "0.1234567890123456789", "1e23", "1e-400", "4.9e-324",
        "1.7976931348623157e308", "1.7976931348623159e308", "123456789012345.6",
        "1234567890123456.7", "12345.678901234567", "100000000000000000000.5", "1.50000",
        "-0.000", "0.0000000000000000000001", "9223372036854775807.0", "3e-324", "5e-324",
        "2.5e-308", "1e-300", "1e-301", "0e-400", "-1e-400", "1.5e-320",
        # Five-digit years: DuckDB reads and prints them, the rules (and Python) do not.
        "10000-01-01", "12345-06-07", "10000-01-01 00:00:00", "99999-12-31 23:59:59.5",
        "2023-01-05 10:00:00.100", "2023-01-05 10:00:00.5", "2023-01-05 10:00:00.000001",
        # Words DuckDB reads as dates and timestamps.
        "infinity", "-infinity", "Infinity", "-Infinity", "epoch", "now", "today",
    ]  # fmt: skip
    values += ["".join(t) for t in itertools.product("01.e+-_ ", repeat=3)]
    return values


def test_sql_rules_match_python_rules() -> None:
    """The SQL that validate runs agrees with the Python reference, value by value."""
    values = _tricky_values()
    con = duckdb.connect()
    # A source column named like the query's internal aliases (c0) must not leak in.
    con.execute(
        "CREATE TABLE v AS SELECT NULL::VARCHAR AS c0, unnest($1::VARCHAR[]) AS x", [values]
    )
    for type_ in T.TYPES:
        rows = con.execute(T.sql_parse_select([("x", type_)], "v")).fetchall()
        assert [r[0] for r in rows] == values  # input order kept
        for raw, parsed, fails in rows:
            expected = T.parse_value(raw, type_)
            assert (parsed, type(parsed)) == (expected, type(expected)), (type_, raw)
            assert fails == (not T.is_null(raw) and expected is None), (type_, raw)
    classified = con.execute(
        f"SELECT x, {T.sql_classify('t')} FROM (SELECT x, {T.sql_trimmed('x')} AS t FROM v)"
    ).fetchall()
    assert {x: c for x, c in classified} == {x: T.classify(x) for x in values}


def test_infer_from_counts_uses_wider_classes() -> None:
    assert T.infer_from_counts({"integer": 60, "float": 40}) == "float"
    assert T.infer_from_counts({"date": 99, "string": 1}) == "date"
    assert T.infer_from_counts({"date": 50, "timestamp": 50}) == "timestamp"
    assert T.infer_from_counts({"boolean": 50, "integer": 50}) == "string"
    assert T.meets_threshold(99, 100) and not T.meets_threshold(98, 100)


def test_sql_shortcuts_match_python_rules_on_their_edges() -> None:
    """The string column's padded-null match and the classifier's shortcuts (an integer in
    DuckDB's own text; a value that does not start like a number) agree with the Python rules."""
    ws = [" ", "\t", "\n", "\r", "\v", "\f"]
    values = [f"{a}{t}{b}" for t in T.NULL_TOKENS for a in ("", *ws) for b in ("", *ws)]
    values += ["NAx", "xNA", " NA x", "N A", "nA", "NONE", " None\u00a0", "\u00a0NA", "N/A/"]
    values += ["0", "-0", "+0", "5", "-5", "+5", "05", "123456789012345", "-12345678901234"]
    values += ["1234567890123456", "-123456789012345", "9223372036854775807", "1e3", "1.0"]
    values += ["t", "F", "yes", "YES", "No", "true1", "-", "+", ".", "..", "-.5", "+.5", "x1"]
    values += ["\u0663", "\uff11", "2023-01-05", "-2023-01-05", "+2023-01-05", "٣٣"]
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest($1::VARCHAR[]) AS x", [values])
    rows = con.execute(T.sql_parse_select([("x", "string")], "v")).fetchall()
    for raw, parsed, fails in rows:
        assert parsed == T.parse_value(raw, "string") and fails is False, repr(raw)
    classified = con.execute(
        f"SELECT x, {T.sql_classify('t')} FROM (SELECT x, {T.sql_trimmed('x')} AS t FROM v)"
    ).fetchall()
    assert {x: c for x, c in classified} == {x: T.classify(x) for x in values}
