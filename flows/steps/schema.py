"""The ``--schema`` file: a flat YAML mapping of column name to type, read the same way by the
command line (before anything runs) and by the ``validate`` step (inside its container).

Steps run in a stock ``python:3.12-slim`` image where only ``duckdb`` is installed, so this module
parses YAML itself, for the one shape a schema has. Every file it accepts is read by YAML (PyYAML's
``safe_load``) as the same mapping; every YAML feature outside that shape is refused with a message
naming the line and the fix, never read differently. The subset:

* one ``column: type`` entry per line, all starting at the same column; blank lines and comments
  (``#`` at the start of a line or after a blank) anywhere; a leading ``---`` and a final ``...``;
* a column name is plain (``signup date``, ``ratio#2``, ``a:b``: a ``:`` or ``#`` is part of the
  name unless a blank follows or precedes it) or quoted, ``'it''s'`` or ``"tab\\there"`` (YAML
  escapes); a plain name YAML would read as something other than text (``1``, ``1.5``, ``true``,
  ``no``, ``null``, ``~``, ``2024-01-31``, ``<<``) must be quoted;
* a type is one of :data:`flows.steps.types.TYPES`, case-insensitive, plain or quoted, and may
  be followed by options saying how the column writes its values (:mod:`flows.steps.formats`:
  ``amount: float thousands=, currency=$``, ``ordered: date format=%m/%d/%Y``);
* a column named twice is an error (YAML would silently keep the last);
* the file is UTF-8 (a byte-order mark is allowed); anything else is an error naming the line.

Refused, each with its own message: lists (``- id: integer``), flow style (``{id: integer}``),
nested mappings, anchors, aliases and tags, block scalars, directives (``%YAML``), several
documents, tabs outside quotes and comments, and control characters. The scanner lives in
:mod:`flows.steps._flat_yaml`. Example::

    ---
    # orders export
    id: integer
    amount: float thousands=, currency=$   # $1,200.00
    "signup date": date format=%m/%d/%Y    # quoted or not, same name
    'a: b': string        # a name holding ': ' must be quoted

Columns not named in the schema are inferred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.steps._flat_yaml import SchemaError, scan, show
from flows.steps._io import DataError, read_regular
from flows.steps.formats import PLAIN, Format, FormatError, parse_options
from flows.steps.types import TYPES

__all__ = [
    "MAX_SCHEMA_BYTES",
    "SchemaEntry",
    "SchemaError",
    "load_schema",
    "parse_schema",
    "read_schema",
    "resolve_schema",
    "schema_line",
]


#: The largest schema file read: room for a line per column of the widest header (1 MiB of names).
MAX_SCHEMA_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SchemaEntry:
    """One ``column: type [options]`` line of a schema file."""

    line: int
    column: str
    type: str
    format: Format = PLAIN
    #: The value as written (the type and its options), as YAML reads it.
    written: str = ""

    def __str__(self) -> str:
        """The line, as a schema file writes it (``amount: float thousands=,``)."""
        return schema_line(self.column, self.type, self.format)


def schema_line(column: str, type_: str, fmt: Format = PLAIN) -> str:
    """A schema line typing ``column`` (its name quoted only when YAML needs it).

    Examples:
        >>> schema_line("amount", "float", parse_options("float", ["currency=$"]))
        'amount: float currency=$'
        >>> schema_line("1", "integer"), schema_line("a: b", "date")
        ("'1': integer", "'a: b': date")
    """
    options = f" {fmt}" if fmt else ""
    key = column
    try:
        plain = [e.column for e in parse_schema(f"{column}: string\n")] == [column]
    except DataError:
        plain = False
    if not plain:
        key = show(column)
    return f"{key}: {type_}{options}"


def parse_schema(text: str, source: str = "schema") -> list[SchemaEntry]:
    """Parse the text of a schema file.

    Args:
        text: The file content.
        source: Name used in error messages (the file path).

    Returns:
        The entries in file order.

    Raises:
        SchemaError: On anything outside the documented subset, an unknown type or a column
            named twice.

    Examples:
        >>> [(e.column, e.type) for e in parse_schema('---\\n"a: b": Integer  # x\\nc#d: date\\n')]
        [('a: b', 'integer'), ('c#d', 'date')]
        >>> str(parse_schema("amount: Float currency=$ thousands=,")[0].format)
        'thousands=, currency=$'
    """
    entries: list[SchemaEntry] = []
    seen: dict[str, int] = {}
    for number, column, written in scan(text, source):
        word, *options = written.split()
        kind = word.lower()
        if kind not in TYPES:
            raise SchemaError(
                source,
                number,
                f"unknown type {word!r} for column {column!r}; allowed types: {', '.join(TYPES)}"
                " (a type may be followed by options, e.g. 'float thousands=, currency=$')",
                column,
            )
        try:
            fmt = parse_options(kind, options)
        except FormatError as exc:
            raise SchemaError(source, number, f"column {column!r}: {exc}", column) from None
        if column in seen:
            raise SchemaError(
                source,
                number,
                f"column {column!r} is already typed on line {seen[column]}; keep one line per"
                " column",
                column,
            )
        seen[column] = number
        entries.append(SchemaEntry(number, column, kind, fmt, written))
    return entries


def resolve_schema(
    entries: Sequence[SchemaEntry], columns: Sequence[str], source: str = "schema"
) -> dict[str, SchemaEntry]:
    """Check schema entries against the input's columns.

    Args:
        entries: Parsed schema lines.
        columns: Column names of the input file, in order.
        source: Name used in error messages.

    Returns:
        Column name to its line, for the columns the schema names.

    Raises:
        SchemaError: If the schema names a column the input does not have.
    """
    known = set(columns)
    for entry in entries:
        if entry.column not in known:
            listed = ", ".join(columns)
            raise SchemaError(
                source,
                entry.line,
                f"unknown column {entry.column!r}; the input's columns are: {listed}",
                entry.column,
                unknown_column=True,
            )
    return {entry.column: entry for entry in entries}


def read_schema(path: str | Path) -> list[SchemaEntry]:
    """Read and parse a schema file (UTF-8, see the module docstring).

    Raises:
        DataError: The file is missing, unreadable, not a regular file (a FIFO, a device, a
            folder) or larger than :data:`MAX_SCHEMA_BYTES`.
        SchemaError: It is not UTF-8 (naming the line and byte), or not a valid schema.
    """
    p = Path(path)
    data, size = read_regular(p, "schema file", "pass a YAML file", MAX_SCHEMA_BYTES + 1)
    if size > MAX_SCHEMA_BYTES or len(data) > MAX_SCHEMA_BYTES:
        raise DataError(
            f"schema file {p} is larger than {MAX_SCHEMA_BYTES >> 20} MiB ({size} bytes); a"
            " schema holds one 'column: type' line per column: is this the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SchemaError(
            str(p),
            line,
            f"byte 0x{data[exc.start]:02x} (offset {exc.start}) is not UTF-8; save the file as"
            f" UTF-8, e.g. iconv -f latin1 -t utf-8 {p.name} > {p.stem}-utf8{p.suffix}",
        ) from None
    return parse_schema(text, str(p))


def load_schema(path: str | Path, columns: Sequence[str]) -> dict[str, SchemaEntry]:
    """Read, parse and resolve a schema file.

    Args:
        path: Schema file.
        columns: Column names of the input file.

    Returns:
        Column name to its line, for the columns the schema names.

    Raises:
        DataError: If the file cannot be read or is invalid.
    """
    return resolve_schema(read_schema(path), columns, str(Path(path)))
