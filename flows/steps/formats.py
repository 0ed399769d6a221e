"""How a column declared in ``--schema`` writes its values: number and date formats.

Inference reads numbers and dates only in their plain forms (``1234.5``, ``2024-03-15``); a file
written for people has ``$1,200.00`` or ``03/15/2024``. A schema line may say how such a column is
written, after its type::

    amount: float thousands=, currency=$     # $1,200.00  -> 1200.0
    price: float thousands=. decimal=,       # 1.200,50   -> 1200.5
    qty: integer thousands=,                 # 12,000     -> 12000
    ordered: date format=%m/%d/%Y            # 03/15/2024 -> 2024-03-15
    shipped: timestamp format=%m/%d/%Y %H:%M # 03/15/2024 14:05

Nothing is ever guessed: a format applies only to the column it is declared for, a value that does
not follow it is quarantined (never read another way), and reading a value never changes what it
means: grouping must be exact (``1,20.00`` is refused, not read as 120), one currency per column
(``€5`` in a ``currency=$`` column is refused), and the number written without separators or
symbol (``1200.00``) is accepted too. The rest of the type's rules still hold (no leading zeros, a
float must read back as the same number, a real calendar date).

Options (``key=value``, separated by spaces):

* numbers (``integer``, ``float``): ``thousands=`` one of ``,`` ``.`` ``'`` ``_`` or ``space``;
  ``decimal=`` ``.`` (the default) or ``,`` (floats only); ``currency=`` one of
  :data:`CURRENCIES` or a three-letter code such as ``USD``, written before the number (after an
  optional sign, or before the sign) or after it, with at most one space between;
* dates and timestamps: ``format=`` a pattern of ``%Y`` (4 digits), ``%m``, ``%d``, ``%H`` (1 or 2
  digits), ``%M``, ``%S`` (2 digits) and the characters ``/ - . : , T`` and space; a date's pattern
  holds ``%Y``, ``%m`` and ``%d`` and no time. Two-digit years (``%y``) and month names are
  refused: they do not say one date.

Python and SQL versions of each rule are kept equal by a test, value by value. Standard library
only: the steps run in stock Python containers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CURRENCIES", "PLAIN", "Format", "FormatError", "parse_options"]

#: Currency symbols a format may name (besides three-letter codes such as ``USD``).
CURRENCIES: tuple[str, ...] = ("$", "€", "£", "¥", "₹", "₩", "₽", "₺", "₪", "₫", "₴", "₦", "฿")
_THOUSANDS = {",": ",", ".": ".", "'": "'", "_": "_", "space": " "}
_DATE_PARTS = {"%Y": "[0-9]{4}", "%m": "[0-9]{1,2}", "%d": "[0-9]{1,2}"}
_TIME_PARTS = {"%H": "[0-9]{1,2}", "%M": "[0-9]{2}", "%S": "[0-9]{2}"}
_LITERALS = "/-.:, T"


class FormatError(ValueError):
    """An option of a schema line that cannot be used; the message says which and the fix."""


@dataclass(frozen=True)
class Format:
    """How a declared column writes its values; the default (:data:`PLAIN`) is the plain rules."""

    thousands: str = ""
    decimal: str = "."
    currency: str = ""
    pattern: str = ""

    def __bool__(self) -> bool:
        return self != PLAIN

    def __str__(self) -> str:
        """The options as a schema line writes them (``thousands=, currency=$``)."""
        parts = []
        if self.thousands:
            shown = next(k for k, v in _THOUSANDS.items() if v == self.thousands)
            parts.append(f"thousands={shown}")
        if self.decimal != ".":
            parts.append(f"decimal={self.decimal}")
        if self.currency:
            parts.append(f"currency={self.currency}")
        if self.pattern:
            parts.append(f"format={self.pattern}")
        return " ".join(parts)

    def describe(self) -> str:
        """The format in words (``the currency sign '$' and ',' between thousands``)."""
        if self.pattern:
            return f"the pattern {self.pattern}"
        parts = []
        if self.currency:
            parts.append(f"the currency sign '{self.currency}'")
        if self.thousands:
            shown = "a space" if self.thousands == " " else f"'{self.thousands}'"
            parts.append(f"{shown} between thousands")
        if self.decimal != ".":
            parts.append(f"'{self.decimal}' as the decimal point")
        return " and ".join(parts) or "no options"

    def number_regex(self) -> str:
        """A regex (Python ``re`` and RE2 alike) of a number written in this format."""
        dot = re.escape(self.decimal)
        if self.thousands:
            sep = "[ ]" if self.thousands == " " else re.escape(self.thousands)
            whole = f"(0|[1-9][0-9]{{0,2}}({sep}[0-9]{{3}})+|[1-9][0-9]*)"
        else:
            whole = "(0|[1-9][0-9]*)"
        number = f"({whole}({dot}[0-9]*)?|{dot}[0-9]+)"
        if not self.currency:
            return f"[+-]?{number}"
        cur = re.escape(self.currency) if self.currency == "$" else self.currency
        return f"([+-]?{number}|[+-]?{cur} ?{number}|{cur} ?[+-]{number}|[+-]?{number} ?{cur})"

    def plain_number(self, text: str) -> str:
        """``text`` (which matched :meth:`number_regex`) in plain notation: no currency, no
        thousands separators, ``.`` as the decimal point."""
        if self.currency:
            text = text.replace(self.currency, "").replace(" ", "")
        if self.thousands:
            text = text.replace(self.thousands, "")
        return text.replace(",", ".") if self.decimal == "," else text

    def sql_plain_number(self, x: str) -> str:
        """SQL of :meth:`plain_number` for the VARCHAR expression ``x``."""
        if self.currency:
            x = f"replace(replace({x}, {_lit(self.currency)}, ''), ' ', '')"
        if self.thousands:
            x = f"replace({x}, {_lit(self.thousands)}, '')"
        return f"replace({x}, ',', '.')" if self.decimal == "," else x

    def date_regex(self) -> str:
        """A regex of a date or timestamp written in :attr:`pattern`."""
        out, i = [], 0
        while i < len(self.pattern):
            part = self.pattern[i : i + 2]
            if part in _DATE_PARTS or part in _TIME_PARTS:
                out.append(_DATE_PARTS.get(part) or _TIME_PARTS[part])
                i += 2
            else:
                out.append(re.escape(self.pattern[i]))
                i += 1
        return "".join(out)


#: The plain rules: no options.
PLAIN = Format()


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parse_options(type_: str, words: list[str]) -> Format:
    """The :class:`Format` of a schema line's options (the words after its type).

    Args:
        type_: The line's type (one of :data:`flows.steps.types.TYPES`).
        words: The options, ``key=value`` each (``format=`` takes the rest of the line, so a
            pattern may hold spaces).

    Raises:
        FormatError: An unknown option, one the type does not take, or a value outside the
            lists of the module docstring.

    Examples:
        >>> str(parse_options("float", ["thousands=,", "currency=$"]))
        'thousands=, currency=$'
        >>> parse_options("date", ["format=%m/%d/%Y"]).pattern
        '%m/%d/%Y'
    """
    found: dict[str, str] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        key, eq, value = word.partition("=")
        if not eq or not value:
            raise FormatError(
                f"{word!r} is not an option; write key=value (thousands=, decimal=, currency=,"
                " format=)"
            )
        if key == "format":  # a pattern may hold spaces: the rest of the line
            value, rest = " ".join([value, *rest]), []
        if key in found:
            raise FormatError(f"option {key!r} is given twice; keep one")
        found[key] = value
    numbers, dates = ("integer", "float"), ("date", "timestamp")
    allowed = ("thousands", "decimal", "currency") if type_ in numbers else ("format",)
    for key in found:
        if type_ not in numbers + dates or key not in allowed:
            takes = (
                "thousands=, decimal=, currency="
                if type_ in numbers
                else "format="
                if type_ in dates
                else "no options"
            )
            raise FormatError(f"a {type_} column takes {takes}, not {key}=")
    fmt = Format(
        thousands=_thousands(found.get("thousands")),
        decimal=_decimal(found.get("decimal"), type_),
        currency=_currency(found.get("currency")),
        pattern=_pattern(found.get("format"), type_),
    )
    if fmt.thousands and fmt.thousands == fmt.decimal:
        raise FormatError(
            f"thousands={fmt.thousands} and decimal={fmt.decimal} are the same character; a number"
            " would mean two things: pick two different ones"
        )
    return fmt


def _thousands(value: str | None) -> str:
    if value is None:
        return ""
    if value not in _THOUSANDS:
        raise FormatError(f"thousands={value} is not a separator; use one of , . ' _ space")
    return _THOUSANDS[value]


def _decimal(value: str | None, type_: str) -> str:
    if value is None:
        return "."
    if value not in (".", ","):
        raise FormatError(f"decimal={value} is not a decimal point; use . or ,")
    if type_ == "integer" and value != ".":
        raise FormatError("an integer column has no decimal point; remove decimal=")
    return value


def _currency(value: str | None) -> str:
    if value is None:
        return ""
    if value in CURRENCIES or re.fullmatch("[A-Z]{3}", value):
        return value
    raise FormatError(
        f"currency={value} is not a currency symbol; use one of {' '.join(CURRENCIES)} or a"
        " three-letter code such as USD"
    )


def _pattern(value: str | None, type_: str) -> str:
    if value is None:
        return ""
    parts, i = [], 0
    while i < len(value):
        if value[i] == "%":
            part = value[i : i + 2]
            if part not in _DATE_PARTS and part not in _TIME_PARTS:
                raise FormatError(
                    f"format={value}: {part!r} is not a pattern part; use %Y %m %d %H %M %S (a"
                    " two-digit year or a month name does not say one date)"
                )
            parts.append(part)
            i += 2
        elif value[i] in _LITERALS:
            i += 1
        else:
            raise FormatError(
                f"format={value}: {value[i]!r} is not allowed; between the parts use / - . : , T or"
                " a space"
            )
    if not {"%Y", "%m", "%d"} <= set(parts) or len(parts) != len(set(parts)):
        raise FormatError(f"format={value} needs %Y, %m and %d, each once")
    if type_ == "date" and set(parts) & set(_TIME_PARTS):
        raise FormatError(f"format={value} holds a time; declare the column as timestamp")
    if ("%M" in parts and "%H" not in parts) or ("%S" in parts and "%M" not in parts):
        raise FormatError(f"format={value}: a time needs %H, then %M, then %S")
    return value
