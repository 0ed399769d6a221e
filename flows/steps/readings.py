"""Which type and format read a column's values: :func:`suggest`, used where a column inferred as
text may be numbers or dates written for people (``$1,200.00``, ``03/15/2024``).

It tries the readings :mod:`flows.steps.formats` can declare, parsing each value the way
:func:`flows.steps.types.parse_value` does, and names the reading that parses the most (and a
second one when both parse as many values but give some of them different values). Standard
library only: the steps run in stock Python containers.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from flows.steps.formats import CURRENCIES, PLAIN, Format
from flows.steps.types import parse_value

__all__ = ["Reading", "suggest"]


@dataclass(frozen=True)
class Reading:
    """The type and format that read the most of a column's values (see :func:`suggest`).

    ``fits`` of ``total`` values (counted with their repeats) parse; ``misfit`` is one value that
    does not (None when all do); ``other`` is a different reading that parses as many values but
    gives some of them another value (``1,200`` is 1200 or 1.2), so the choice is the user's.
    """

    type: str
    format: Format
    fits: int
    total: int
    misfit: str | None = None
    other: Reading | None = None


_SEPARATORS = ((",", "."), (".", ","), ("", ","), (" ", ","), ("'", "."), (" ", "."), ("", "."))
_DATE_ORDERS = (("%m", "%d", "%Y"), ("%d", "%m", "%Y"), ("%Y", "%m", "%d"))
_TIMES = ("", " %H:%M", " %H:%M:%S")
_SYMBOL_EDGE = re.compile(r"^[+-]?([^\d\s.,+-]+)|([^\d\s.,+-]+)$")
_DATE_LIKE = re.compile(r"\d{1,4}([/.-])\d{1,2}\1\d{1,4}")


def _candidates(values: list[str]) -> list[tuple[str, Format]]:
    """Readings worth trying for ``values``, most plain first."""
    out: list[tuple[str, Format]] = [(t, PLAIN) for t in ("boolean", "integer", "float")]
    out += [("date", PLAIN), ("timestamp", PLAIN)]
    symbols = {m.group(1) or m.group(2) for v in values if (m := _SYMBOL_EDGE.search(v))}
    currencies = ["", *sorted(s for s in symbols if s in CURRENCIES or re.fullmatch("[A-Z]{3}", s))]
    for currency in currencies:
        for thousands, decimal in _SEPARATORS:
            fmt = Format(thousands=thousands, decimal=decimal, currency=currency)
            if fmt:
                if decimal == ".":
                    out.append(("integer", fmt))
                out.append(("float", fmt))
    seps = {m.group(1) for v in values if (m := _DATE_LIKE.match(v))}
    for sep in sorted(seps):
        for order in _DATE_ORDERS:
            day = sep.join(order)
            out.append(("date", Format(pattern=day)))
            out += [("timestamp", Format(pattern=day + time)) for time in _TIMES]
    return out


def _meaning(value: object) -> object:
    """A parsed value, comparable across types: a date is its midnight (numbers compare as is)."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return _dt.datetime.combine(value, _dt.time())
    return value


def suggest(counts: dict[str, int]) -> Reading | None:
    """The reading (type and format) that parses the most of a column's values, or None when no
    reading parses any (the column is text).

    Args:
        counts: Non-null values (trimmed) and how often each occurs.

    Examples:
        >>> r = suggest({"$42.00": 3, "$1,200.00": 1, "N/A?": 1})
        >>> r.type, str(r.format), r.fits, r.total, r.misfit
        ('float', 'thousands=, currency=$', 4, 5, 'N/A?')
        >>> r = suggest({"01/02/2024": 1, "03/04/2024": 1})
        >>> str(r.format), str(r.other.format)
        ('format=%m/%d/%Y', 'format=%d/%m/%Y')
    """
    values = sorted(counts, key=lambda v: -counts[v])
    total = sum(counts.values())
    best: Reading | None = None
    parsed_best: dict[str, object] = {}
    for type_, fmt in _candidates(values):
        parsed = {v: parse_value(v, type_, fmt) for v in values}
        fits = sum(counts[v] for v, p in parsed.items() if p is not None)
        if fits == 0 or (best is not None and fits <= best.fits):
            if best is not None and fits == best.fits and best.other is None:
                differs = any(
                    p is not None
                    and parsed_best.get(v) is not None
                    and _meaning(p) != _meaning(parsed_best[v])
                    for v, p in parsed.items()
                )
                if differs:
                    best = Reading(best.type, best.format, best.fits, total, best.misfit,
                                   Reading(type_, fmt, fits, total))  # fmt: skip
            continue
        misfit = next((v for v in values if parsed[v] is None), None)
        best, parsed_best = Reading(type_, fmt, fits, total, misfit), parsed
    return best
