"""Formats a schema line declares (thousands separators, currency, decimal comma, date patterns):
the options, the Python rules, and the SQL that validate runs, value by value."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pytest

from flows.steps import types as T
from flows.steps.formats import Format, FormatError, parse_options
from flows.steps.readings import suggest


def _fmt(type_: str, options: str) -> Format:
    return parse_options(type_, options.split())


@pytest.mark.parametrize(
    ("type_", "options", "value", "expected"),
    [
        ("float", "thousands=, currency=$", "$1,200.00", 1200.0),
        ("float", "thousands=, currency=$", "1,200.00", 1200.0),
        ("float", "thousands=, currency=$", "1200.00", 1200.0),  # no separators: the same number
        ("float", "thousands=, currency=$", "$42.00", 42.0),
        ("float", "thousands=, currency=$", "-$5.50", -5.5),
        ("float", "thousands=, currency=$", "$-5.50", -5.5),
        ("float", "thousands=, currency=$", "5.50 $", 5.5),
        ("float", "thousands=, currency=$", "$ 1,234,567.5", 1234567.5),
        ("float", "thousands=, currency=$", "1,20.00", None),  # bad grouping: never 120
        ("float", "thousands=, currency=$", "12,00", None),
        ("float", "thousands=, currency=$", "€5.00", None),  # another currency: refused
        ("float", "thousands=, currency=$", "$$5", None),
        ("float", "thousands=, currency=$", "$01.5", None),  # leading zero: a code
        ("float", "thousands=, currency=$", "1e3", None),  # a format is plain notation
        ("float", "thousands=, currency=$", " $7 ", 7.0),  # trimmed like every value
        ("float", "thousands=. decimal=,", "1.200,50", 1200.5),
        ("float", "thousands=. decimal=,", "1,5", 1.5),
        ("float", "thousands=. decimal=,", "1.5", None),  # a group of 3 digits is needed
        ("float", "thousands=space decimal=, currency=€", "1 234,56 €", 1234.56),
        ("float", "thousands=' currency=CHF", "CHF 1'234.50", 1234.5),
        ("float", "thousands=,", "9,007,199,254,740,993", None),  # a float must read back
        ("integer", "thousands=,", "9,007,199,254,740,993", 9007199254740993),
        ("integer", "thousands=, currency=$", "$12,000", 12000),
        ("integer", "thousands=,", "12,000.5", None),
        ("date", "format=%m/%d/%Y", "03/15/2024", dt.date(2024, 3, 15)),
        ("date", "format=%m/%d/%Y", "3/5/2024", dt.date(2024, 3, 5)),
        ("date", "format=%m/%d/%Y", "13/01/2024", None),
        ("date", "format=%m/%d/%Y", "02/30/2024", None),
        ("date", "format=%m/%d/%Y", "03/15/24", None),  # two-digit years are never read
        ("date", "format=%m/%d/%Y", "2024-03-15", None),  # the pattern, not the plain form
        ("date", "format=%d.%m.%Y", "15.03.2024", dt.date(2024, 3, 15)),
        ("timestamp", "format=%m/%d/%Y %H:%M", "03/15/2024 14:05", dt.datetime(2024, 3, 15, 14, 5)),
        ("timestamp", "format=%m/%d/%Y %H:%M", "03/15/2024 24:00", None),
        ("timestamp", "format=%m/%d/%Y", "03/15/2024", dt.datetime(2024, 3, 15)),
    ],
)
def test_a_format_reads_the_forms_people_write(
    type_: str, options: str, value: str, expected: object
) -> None:
    assert T.parse_value(value, type_, _fmt(type_, options)) == expected


@pytest.mark.parametrize(
    ("type_", "options", "message"),
    [
        ("float", "thousands=x", "is not a separator"),
        ("float", "decimal=;", "is not a decimal point"),
        ("integer", "decimal=,", "has no decimal point"),
        ("float", "thousands=, decimal=,", "are the same character"),
        ("float", "currency=dollars", "is not a currency symbol"),
        ("float", "format=%m/%d/%Y", "takes thousands=, decimal=, currency="),
        ("date", "thousands=,", "takes format="),
        ("string", "format=%Y", "takes no options"),
        ("date", "format=%m/%d/%y", "is not a pattern part"),
        ("date", "format=%b %d %Y", "is not a pattern part"),
        ("date", "format=%m/%d", "needs %Y, %m and %d"),
        ("date", "format=%m/%d/%Y %H:%M", "declare the column as timestamp"),
        ("date", "format=%Y|%m|%d", "is not allowed"),
        ("float", "thousands", "is not an option"),
        ("float", "thousands=, thousands=.", "given twice"),
    ],
)
def test_an_option_that_cannot_be_used_says_why(type_: str, options: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        _fmt(type_, options)


def test_the_options_are_written_back_as_a_schema_line_writes_them() -> None:
    text = "thousands=space decimal=, currency=€"
    assert str(_fmt("float", text)) == text
    assert str(_fmt("timestamp", "format=%d.%m.%Y %H:%M")) == "format=%d.%m.%Y %H:%M"
    assert not Format() and _fmt("float", "thousands=,")


_FORMATS = [
    ("float", "thousands=, currency=$"),
    ("float", "thousands=. decimal=, currency=€"),
    ("float", "thousands=space decimal=,"),
    ("integer", "thousands=' currency=USD"),
    ("date", "format=%m/%d/%Y"),
    ("date", "format=%d.%m.%Y"),
    ("timestamp", "format=%Y/%m/%d %H:%M:%S"),
    ("timestamp", "format=%m-%d-%Y"),
]


def _values() -> list[str]:
    values = [
        "$1,200.00", "1,200.00", "1.200,00", "1 200,00", "1'200", "USD 1'200", "1'200 USD",
        "$-5", "-$5", "$ 5", "5 $", "5$", "$5 ", " $5", "$$5", "€5", "5 €", "-€1.000,5", "1,2",
        "1,20", "1,234,567", "1,234,5678", "0,5", "0.5", ",5", ".5", "5.", "5,", "00,5", "01",
        "1e3", "9,007,199,254,740,993", "9007199254740993", "12345678901234567890", "-0",
        "03/15/2024", "3/5/2024", "15.03.2024", "1.1.2000", "02/30/2024", "02/29/2024",
        "00/10/2024", "10/00/2024", "03/15/0000", "03/15/0001", "2024/03/15 07:05:09",
        "2024/3/5 7:05:09", "2024/03/15 24:00:00", "2024/03/15 07:60:00", "03-15-2024",
        "03/15/24", "", "NA", " 03/15/2024 ", "abc", "USD", "$", ",", ".",
    ]  # fmt: skip
    values += ["".join(t) for t in itertools.product("1,.$ ", repeat=3)]
    return values


@pytest.mark.parametrize(("type_", "options"), _FORMATS)
def test_sql_reads_formats_as_python_does(type_: str, options: str) -> None:
    fmt = _fmt(type_, options)
    values = _values()
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest($1::VARCHAR[]) AS x", [values])
    rows = con.execute(T.sql_parse_select([("x", type_)], "v", [fmt])).fetchall()
    assert [r[0] for r in rows] == values
    for raw, parsed, fails in rows:
        expected = T.parse_value(raw, type_, fmt)
        assert (parsed, type(parsed)) == (expected, type(expected)), (options, raw)
        assert fails == (not T.is_null(raw) and expected is None), (options, raw)


@pytest.mark.parametrize(
    ("counts", "reading"),
    [
        ({"$42.00": 5, "$1,200.00": 2}, ("float", "thousands=, currency=$", 7, 7)),
        ({"1,200.00": 3, "84.00": 4, "oops": 1}, ("float", "thousands=,", 7, 8)),
        ({"12,000": 2, "5": 1, "1,000,000": 1}, ("integer", "thousands=,", 4, 4)),
        ({"1.200,50 €": 1, "3,99 €": 1}, ("float", "thousands=. decimal=, currency=€", 2, 2)),
        ({"03/15/2024": 1, "12/31/2023": 1}, ("date", "format=%m/%d/%Y", 2, 2)),
        ({"15.03.2024 14:05": 1}, ("timestamp", "format=%d.%m.%Y %H:%M", 1, 1)),
        ({"12": 96, "7": 2, "abc": 2}, ("integer", "", 98, 100)),  # plain, under 99%
        ({"1234567890123456789": 7, "1.5": 3}, ("integer", "", 7, 10)),
    ],
)
def test_suggest_finds_the_reading_of_most_values(
    counts: dict[str, int], reading: tuple[str, str, int, int]
) -> None:
    found = suggest(counts)
    assert found is not None
    assert (found.type, str(found.format), found.fits, found.total) == reading


def test_suggest_names_a_second_reading_that_would_change_values() -> None:
    found = suggest({"1,200": 2, "3,500": 1})  # 1200 or 1.2: the file must say
    assert found is not None and found.other is not None
    assert (found.format.thousands, found.other.format.decimal) == (",", ",")
    found = suggest({"03/15/2024": 1})  # only one order of day and month reads it
    assert found is not None and found.other is None


@pytest.mark.parametrize("counts", [{"Smith, John": 3}, {"02134": 2, "00501": 1}, {"x": 1}])
def test_suggest_leaves_text_alone(counts: dict[str, int]) -> None:
    assert suggest(counts) is None
