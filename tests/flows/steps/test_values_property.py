"""Property: no value changes on its way from the input to Parquet and to the aggregates.

Hypothesis writes files whose numeric columns mix small integers, 64-bit integers (many
beyond 2**53, where a double cannot hold every integer), decimals of up to 20 significant
digits, and null tokens. The ``validate``, ``transform`` and ``aggregate`` steps run on the
file. Whatever type each column gets, every valid value must read back as the number (or
the text) the file holds, every quarantined value must be one its column's type refuses,
and each group's minimum and maximum must be the file's own numbers.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.steps import aggregate, transform, validate
from flows.steps import types as T

from .conftest import query, quiet

# See test_records_property.py: Prefect's worker threads may touch `random` while a test draws.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

_INT64 = st.integers(-(2**63), 2**63 - 1)
_NEAR_2_53 = st.integers(2**53 - 8, 2**53 + 8).flatmap(
    lambda n: st.sampled_from([n, -n])
)  # fmt: skip


@st.composite
def _decimal_text(draw: st.DrawFn) -> str:
    whole = draw(st.integers(0, 10**12))
    frac = draw(st.text(alphabet="0123456789", min_size=1, max_size=20))
    sign = draw(st.sampled_from(["", "-"]))
    return f"{sign}{whole}.{frac}"


_VALUE = st.one_of(
    st.integers(-1000, 1000).map(str),
    _INT64.map(str),
    _NEAR_2_53.map(str),
    _decimal_text(),
    st.sampled_from(["1.5", "2.25", "-0.5", "1e23", "0.30000000000000004"]),
    st.sampled_from(list(T.NULL_TOKENS)),
)
# Columns whose values come mostly from one kind, so that every type gets inferred.
_COLUMN = st.sampled_from(
    [
        _VALUE,
        st.one_of(_INT64.map(str), _NEAR_2_53.map(str)),
        st.one_of(_INT64.map(str), _decimal_text()),
        st.one_of(st.integers(-1000, 1000).map(str), _decimal_text()),
        st.one_of(_NEAR_2_53.map(str), st.sampled_from(["1.5", "2.25"])),
    ]
)


def _number(text: str) -> Decimal:
    return Decimal(text.strip())


def _same(typed: Any, text: str, type_: str) -> bool:
    """True if ``typed`` (read from Parquet) is the value ``text`` holds, for ``type_``."""
    if T.is_null(text):
        return typed is None
    if type_ == "string":
        return bool(typed == text)
    if type_ == "integer":
        return type(typed) is int and typed == int(text.strip())
    assert type_ == "float"
    return type(typed) is float and Decimal(repr(typed)) == _number(text)


@st.composite
def _files(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    x, y = draw(_COLUMN), draw(_COLUMN)
    count = draw(st.integers(1, 60))
    return [(draw(st.sampled_from(["a", "b"])), draw(x), draw(y)) for _ in range(count)]


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_files())
def test_no_value_changes_from_the_input_to_parquet_and_the_aggregates(
    tmp_path_factory: Any, rows: list[tuple[str, str, str]]
) -> None:
    root = tmp_path_factory.mktemp("values")
    src = root / "in.csv"
    src.write_text("g,x,y\n" + "".join(f"{g},{x},{y}\n" for g, x, y in rows), encoding="utf-8")
    result = validate.run(src, root / "v", threads=1, log=quiet)
    types = result["columns"]
    assert result["input_rows"] == len(rows)

    with (root / "v" / "quarantine.csv").open(newline="", encoding="utf-8") as fh:
        quarantined = {int(r["line"]) - 2: r["reason"] for r in csv.DictReader(fh)}
    valid = [r for i, r in enumerate(rows) if i not in quarantined]
    for i, reason in quarantined.items():  # refused, never changed: a value its type refuses
        column = reason.split("'")[1]
        text = rows[i][["g", "x", "y"].index(column)]
        assert T.parse_value(text, types[column]) is None, (reason, text)

    typed = query(f"SELECT * FROM '{root / 'v' / 'part-00000.parquet'}'")
    assert len(typed) == len(valid)
    for got, row in zip(typed, valid, strict=True):
        for value, text, name in zip(got, row, ["g", "x", "y"], strict=True):
            assert _same(value, text, types[name]), (name, types[name], text, value)

    transform.run(root / "v", root / "parts" / "p0", 0, 1, "g", log=quiet)
    aggregate.run(root / "parts", "g", root / "a", log=quiet)
    with (root / "a" / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        table = {r["g"]: r for r in csv.DictReader(fh)}
    for group in {r[0] for r in valid}:
        members = [r for r in valid if r[0] == group]
        assert int(table[group]["row_count"]) == len(members)
        for k, name in ((1, "x"), (2, "y")):
            if types[name] not in ("integer", "float"):
                assert f"{name}_min" not in table[group]
                continue
            numbers = [_number(r[k]) for r in members if not T.is_null(r[k])]
            low, high = table[group][f"{name}_min"], table[group][f"{name}_max"]
            if not numbers:
                assert (low, high) == ("", "")
                continue
            assert (_number(low), _number(high)) == (min(numbers), max(numbers)), name


def test_the_property_sees_64_bit_integers_beside_decimals(tmp_path: Path) -> None:
    """The case the issue reported, pinned: the property would find it, this shows it."""
    rows = [("a", str(1234567890123456789 - i), "1") for i in range(5)]
    rows += [("b", f"{i}.5", "2") for i in range(5)]
    test_no_value_changes_from_the_input_to_parquet_and_the_aggregates.hypothesis.inner_test(  # type: ignore[attr-defined]
        _Factory(tmp_path), rows
    )


class _Factory:
    """The one method of pytest's TempPathFactory the property uses."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path
