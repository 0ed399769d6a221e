"""Scanning the flat YAML mapping of a schema file, without PyYAML (steps run where only duckdb is
installed). The rules are documented in :mod:`flows.steps.schema`, the only user of this module;
every choice follows what PyYAML's ``safe_load`` does with the same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flows.steps._io import DataError
from flows.steps.types import TYPES

__all__ = ["SchemaError", "scan", "show"]

#: YAML line breaks (PyYAML also breaks lines at NEL, LS and PS).
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
#: What separates the parts of a line: PyYAML takes only spaces, and refuses a tab outside quotes
#: and comments.
_BLANK = " "
#: Characters YAML does not allow in a file (its printable set is the complement).
_NOT_PRINTABLE = re.compile("[^\t\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Plain scalars YAML 1.1 (PyYAML) resolves to something other than a string, by tag.
_IMPLICIT = (
    ("a boolean", re.compile(r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF")),
    ("a number", re.compile(
        r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    )),
    ("a number", re.compile(
        r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+"
    )),
    ("a merge key", re.compile(r"<<")),
    ("null", re.compile(r"~|null|Null|NULL")),
    ("a date", re.compile(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}"
        r":[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?"
    )),
)  # fmt: skip
#: Characters that cannot start a plain scalar (``-``, ``?`` and ``:`` can, before a non-blank).
_NOT_PLAIN_START = ",[]{}#&*!|>'\"%@`"
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
    "L": "\u2028", "P": "\u2029",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class SchemaError(DataError):
    """A schema file that cannot be used: where (``path``, ``line``), and what and how to fix it.

    ``str()`` reads ``<path>:<line>: <problem>``; ``column`` is the column the problem is about,
    when there is one; ``unknown_column`` is set when that column is not in the input.
    """

    def __init__(
        self,
        source: str,
        line: int,
        problem: str,
        column: str | None = None,
        *,
        unknown_column: bool = False,
    ) -> None:
        super().__init__(f"{source}:{line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem
        self.column = column
        self.unknown_column = unknown_column


class _Line:
    """One line being parsed: its number, text and a read position."""

    def __init__(self, number: int, text: str, source: str) -> None:
        self.number = number
        self.text = text
        self.pos = 0
        self.source = source

    def fail(self, problem: str, column: str | None = None) -> SchemaError:
        return SchemaError(self.source, self.number, problem, column)

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANK:
            self.pos += 1
        if self.text.startswith("\t", self.pos):
            raise self.tab(self.pos)

    def tab(self, pos: int) -> SchemaError:
        return self.fail(
            f"a tab at column {pos + 1}; YAML allows only spaces between the parts of a line"
            " (tabs only inside quotes and comments): replace it with spaces"
        )

    def rest_is_comment(self) -> bool:
        """Only blanks, then nothing or a comment, from the read position on."""
        before = self.pos
        self.skip_blanks()
        rest = self.text[self.pos :]
        blank_before = self.pos > before or self.pos == 0
        return not rest or (rest.startswith("#") and blank_before)


def scan(text: str, source: str) -> Iterator[tuple[int, str, str]]:
    """The ``(line, column, value)`` entries of a flat YAML mapping, in file order; ``value`` is
    the text YAML reads (unquoted, without the comment and outer blanks).

    Raises:
        SchemaError: On anything outside the subset (see :mod:`flows.steps.schema`). The value's
            meaning (a type and its options) and duplicates are the caller's to check.
    """
    previous: int | None = None
    indent: int | None = None
    started = ended = False
    lines = _BREAK.split(text.removeprefix("\ufeff"))
    for number, raw in enumerate(lines, start=1):
        line = _Line(number, raw, source)
        bad = _NOT_PRINTABLE.search(raw)
        if bad:
            raise line.fail(
                f"character U+{ord(bad.group()):04X} at column {bad.start() + 1} is not allowed in"
                " YAML; remove it (write it as an escape inside double quotes if a name needs it)"
            )
        if line.rest_is_comment():
            continue
        lead = raw[: len(raw) - len(raw.lstrip(_BLANK))]
        if ended:
            raise line.fail(
                "text after the '...' that ends the document; a schema file holds one mapping:"
                " remove the '...' or what follows it"
            )
        if lead == "" and _is_marker(raw, "---"):
            if started or previous is not None:
                raise line.fail(
                    "a second YAML document ('---'); a schema file holds one mapping of"
                    " 'column: type' lines: remove this '---' and merge the documents"
                )
            started = True
            line.pos = 3
            if not line.rest_is_comment():
                raise line.fail("text after '---'; put each 'column: type' on its own line")
            continue
        if lead == "" and _is_marker(raw, "..."):
            ended = True
            line.pos = 3
            if not line.rest_is_comment():
                raise line.fail("text after '...'; the document ends there")
            continue
        if lead == "" and raw.startswith("%"):
            raise line.fail("a YAML directive; schema files do not use directives: remove the line")
        line.pos = len(lead)
        if indent is None:
            indent = len(lead)
        elif len(lead) != indent:
            detail = f" (line {previous} above starts at column {indent + 1})" if previous else ""
            raise line.fail(
                f"this line is indented differently from the 'column: type' lines{detail}; a"
                " schema is one flat mapping: start every line at the same column, and write"
                " nested mappings as one 'column: type' line"
            )
        column = _key(line)
        yield number, column, _value(line, column)
        previous = number


def _is_marker(raw: str, marker: str) -> bool:
    return raw.startswith(marker) and (len(raw) == 3 or raw[3] in _BLANK)


def _key(line: _Line) -> str:
    """The column name at the read position (plain or quoted), up to and past its ``:``."""
    text, start = line.text, line.pos
    first = text[start]
    if first in "\"'":
        name = _quoted(line)
        line.skip_blanks()
        if not text.startswith(":", line.pos):
            raise line.fail(
                f"expected ':' and a type after the quoted name {name!r}; write it as"
                f" {show(name)}: <type>"
            )
        line.pos += 1
        return name
    following = text[start + 1 : start + 2]
    if first == "-" and following in ("", " ", "\t"):
        raise line.fail(
            "a list item ('- ...'); a schema is a mapping: write 'column: type' lines without"
            " the '- '"
        )
    if first == "?" and following in ("", " ", "\t"):
        raise line.fail("a complex key ('? ...'); write 'column: type' on one line")
    if first == ":" and following in ("", " ", "\t"):
        raise line.fail("expected 'column: type', found a type without a column name")
    if first in "{[":
        raise line.fail(
            "YAML flow style ('{...}' or '[...]'); write one 'column: type' line per column"
        )
    if first in "&*!":
        raise line.fail(
            "a YAML anchor, alias or tag; schema files do not use them: write the plain"
            " 'column: type' line"
        )
    if first in _NOT_PLAIN_START:
        raise line.fail(
            f"a column name cannot start with {first!r} unless it is quoted; write"
            f' "{text[start:].split(": ")[0].strip()}": <type>'
        )
    end = _plain_end(line, start)
    name = text[start:end].rstrip(_BLANK)
    line.pos = end
    if not text.startswith(":", end):
        raise line.fail(
            f"expected 'column: type', found {text.strip()!r}; write one 'column: type' per line"
            f" (types: {', '.join(TYPES)})"
        )
    line.pos += 1
    for what, pattern in _IMPLICIT:
        if pattern.fullmatch(name):
            raise line.fail(
                f"YAML reads the column name {name} as {what}, not as text; quote it:"
                f" '{name}': <type>",
                name,
            )
    return name


def _plain_end(line: _Line, start: int) -> int:
    """Where a plain scalar starting at ``start`` ends: at ``': '``, a final ``:``, or a comment."""
    text, pos = line.text, start
    while pos < len(text):
        ch = text[pos]
        if ch == "\t":
            raise line.tab(pos)
        if ch == ":" and (pos + 1 == len(text) or text[pos + 1] in _BLANK):
            return pos
        if ch == "#" and text[pos - 1] in _BLANK:
            return pos
        pos += 1
    return pos


def _value(line: _Line, column: str) -> str:
    """The value (a type and its options) after ``column:``, as YAML reads it."""
    text = line.text
    if text.startswith("\t", line.pos):
        raise line.tab(line.pos)
    blank = line.pos < len(text) and text[line.pos] in _BLANK
    line.skip_blanks()
    if line.pos >= len(text) or (text[line.pos] == "#" and blank):
        raise line.fail(
            f"column {column!r} has no type; write {show(column)}: <type> on one line (a"
            f" nested mapping is not a schema). Types: {', '.join(TYPES)}",
            column,
        )
    if not blank:
        raise line.fail(f"put a space after the ':' of column {column!r}", column)
    first = text[line.pos]
    if first in "\"'":
        value = _quoted(line)
        if not line.rest_is_comment():
            raise line.fail(f"text after the quoted type of column {column!r}; remove it", column)
    elif first in "{[&*!|>" or (first == "-" and text[line.pos + 1 : line.pos + 2] in ("", " ")):
        raise line.fail(
            f"the type of column {column!r} is not a plain word (YAML lists, flow style,"
            f" anchors, tags and block scalars are not used here); write {show(column)}:"
            f" <type> with a type among {', '.join(TYPES)}",
            column,
        )
    else:
        start = line.pos
        end = _plain_end(line, start)
        if end < len(text) and text[end] == ":":
            raise line.fail(
                f"a second ': ' on the line of column {column!r}; a name holding ': ' must be"
                " quoted, e.g. 'a: b': string",
                column,
            )
        value = text[start:end].rstrip(_BLANK)
    return value


def _quoted(line: _Line) -> str:
    """A single- or double-quoted scalar at the read position, on this line."""
    text, quote = line.text, line.text[line.pos]
    out: list[str] = []
    pos = line.pos + 1
    while pos < len(text):
        ch = text[pos]
        if quote == "'" and ch == "'":
            if text.startswith("''", pos):
                out.append("'")
                pos += 2
                continue
            line.pos = pos + 1
            return "".join(out)
        if quote == '"' and ch == '"':
            line.pos = pos + 1
            return "".join(out)
        if quote == '"' and ch == "\\":
            pos = _escape(line, text, pos, out)
            continue
        out.append(ch)
        pos += 1
    raise line.fail(
        f"expected 'column: type', but the quote {quote} at column {line.pos + 1} is not closed"
        " on this line; close it (a quoted name or type stays on one line)"
    )


def _escape(line: _Line, text: str, pos: int, out: list[str]) -> int:
    code = text[pos + 1 : pos + 2]
    if code in _ESCAPES:
        out.append(_ESCAPES[code])
        return pos + 2
    size = _HEX_ESCAPES.get(code)
    digits = text[pos + 2 : pos + 2 + size] if size else ""
    if size and len(digits) == size and all(c in "0123456789abcdefABCDEF" for c in digits):
        out.append(chr(int(digits, 16)))
        return pos + 2 + size
    raise line.fail(
        f"'\\{code}' is not a YAML escape; write '\\\\' for a backslash, or use single quotes"
    )


def show(name: str) -> str:
    """``name`` as a schema key that YAML reads back as ``name``."""
    return "'" + name.replace("'", "''") + "'"
