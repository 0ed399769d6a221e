"""Property: the SQL that types values (DuckDB's casts first, the exact rules for the rest) gives
what the Python rules give, value by value, for every type, and classifies like them.

Hypothesis draws mixed values: small and 64-bit integers (and beyond), decimals of up to 20
digits, numbers with leading zeros, signs or exponents, thousands separators, dates (real and
not), timestamps, booleans, null tokens, blanks and values padded with whitespace or quoted.
"""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.steps import types as T

_WS = st.sampled_from(["", " ", "\t", "  ", "\r", "\v", "\f", "\n"])


@st.composite
def _number(draw: st.DrawFn) -> str:
    whole = draw(
        st.one_of(
            st.integers(0, 1000),
            st.integers(0, 2**63 + 10),
            st.integers(2**53 - 4, 2**53 + 4),
            st.integers(0, 10**25),
        )
    )
    text = str(whole)
    if draw(st.booleans()):
        text = draw(st.sampled_from(["0", "00", ""])) + text
    if draw(st.booleans()):
        text += "." + draw(st.text(alphabet="0123456789", max_size=20))
    if draw(st.integers(0, 4)) == 0:
        text += draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "+", "-"]))
        text += str(draw(st.integers(0, 400)))
    return draw(st.sampled_from(["", "-", "+"])) + text


@st.composite
def _thousands(draw: st.DrawFn) -> str:
    return f"{draw(st.integers(1000, 10**9)):,}" + draw(st.sampled_from(["", ".5", ".25"]))


@st.composite
def _date(draw: st.DrawFn) -> str:
    y, m, d = draw(st.integers(0, 9999)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    if draw(st.integers(0, 9)) == 0:
        y = draw(st.integers(10000, 294000))  # DuckDB reads and prints five-digit years
    text = f"{y:04d}-{m:02d}-{d:02d}"
    if draw(st.booleans()):
        h, mi, s = draw(st.integers(0, 25)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
        text += draw(st.sampled_from([" ", "T"])) + f"{h:02d}:{mi:02d}:{s:02d}"
        text += draw(st.sampled_from(["", ".5", ".123456", ".1234567", "Z", "+02"]))
    return text


_CORE = st.one_of(
    _number(),
    _thousands(),
    _date(),
    st.sampled_from([*T.NULL_TOKENS, *T.TRUE_TOKENS, *T.FALSE_TOKENS, "TRUE", "No", "y"]),
    st.text(alphabet="abcNAUL/ul-0.9 ", max_size=6),
)


@st.composite
def _value(draw: st.DrawFn) -> str:
    core = draw(_CORE)
    if draw(st.integers(0, 5)) == 0:
        core = f'"{core}"'  # a quote kept in the value (as a CSV field '""1""' reads)
    return draw(_WS) + core + draw(_WS)


@settings(max_examples=60, deadline=None)
@given(st.lists(_value(), min_size=1, max_size=200))
def test_sql_typing_and_classes_are_the_python_rules(values: list[str]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest($1::VARCHAR[]) AS x", [values])
    for type_ in T.TYPES:
        rows = con.execute(T.sql_parse_select([("x", type_)], "v")).fetchall()
        assert [r[0] for r in rows] == values
        for raw, parsed, fails in rows:
            expected = T.parse_value(raw, type_)
            assert (parsed, type(parsed)) == (expected, type(expected)), (type_, raw)
            assert fails == (not T.is_null(raw) and expected is None), (type_, raw)
    classified = con.execute(
        f"SELECT x, {T.sql_classify('t')} FROM (SELECT x, {T.sql_trimmed('x')} AS t FROM v)"
    ).fetchall()
    assert [c for _, c in classified] == [T.classify(x) for x in values]
