"""The ``--schema`` file: a flat YAML mapping of column name to type, read the same way by the
command line (before anything runs) and by the ``validate`` step (inside its container).

The file is read by PyYAML (a requirement the ``validate`` agent declares); what is accepted is
exactly what ``yaml.safe_load`` reads as a flat mapping of text to text, and every YAML feature
outside that shape is refused with a message naming the line and the fix, never read differently:

* one ``column: type`` entry per line, all starting at the same column; blank lines and comments
  anywhere; a leading ``---`` and a final ``...``;
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
nested mappings, anchors, aliases and tags, block scalars, a type continued on the next line,
directives (``%YAML``), several documents, tabs outside quotes and comments, and control
characters. Example::

    ---
    # orders export
    id: integer
    amount: float thousands=, currency=$   # $1,200.00
    "signup date": date format=%m/%d/%Y    # quoted or not, same name
    'a: b': string        # a name holding ': ' must be quoted

Columns not named in the schema are inferred.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


# -- reading the YAML -------------------------------------------------------------------------

#: What YAML reads a plain column name as, by the tag PyYAML's resolver gives it.
_READ_AS = {
    "bool": "a boolean",
    "int": "a number",
    "float": "a number",
    "merge": "a merge key",
    "null": "null",
    "timestamp": "a date",
}
_STR = "tag:yaml.org,2002:str"
_NOT_A_WORD = (
    "the type of column {column!r} is not a plain word (YAML lists, flow style, anchors, tags"
    " and block scalars are not used here); write {key}: <type> with a type among {types}"
)


def show(name: str) -> str:
    """``name`` as a schema key that YAML reads back as ``name``."""
    return "'" + name.replace("'", "''") + "'"


def _line_of(mark: Any) -> int:
    """The 1-based line of a PyYAML mark (1 when there is none)."""
    return int(mark.line) + 1 if mark is not None else 1


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _first_entry_line(lines: list[str]) -> int | None:
    """The number of the first line holding an entry (not blank, a comment or a marker)."""
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip(" ").removeprefix("\ufeff")
        if stripped and not stripped.startswith(("#", "---", "...", "%")):
            return number
    return None


def _indented_differently(lines: list[str], number: int) -> str:
    first = _first_entry_line(lines)
    detail = (
        f" (line {first} above starts at column {_indent(lines[first - 1]) + 1})"
        if first is not None and first < number
        else ""
    )
    return (
        f"this line is indented differently from the 'column: type' lines{detail}; a schema is"
        " one flat mapping: start every line at the same column, and write nested mappings as"
        " one 'column: type' line"
    )


def _syntax_error(exc: yaml.YAMLError, text: str, source: str) -> SchemaError:
    """PyYAML's error, said as the schema's rule it breaks, at its line."""
    lines = text.splitlines() or [""]
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        return SchemaError(
            source,
            line,
            f"character U+{exc.character if isinstance(exc.character, int) else ord(exc.character):04X}"
            f" at column {column} is not allowed in YAML; remove it (write it as an escape inside"
            " double quotes if a name needs it)",
        )
    assert isinstance(exc, yaml.MarkedYAMLError)
    problem, context = exc.problem or "", exc.context or ""
    at = _line_of(exc.problem_mark)
    if "'\\t'" in problem:
        column = exc.problem_mark.column + 1 if exc.problem_mark else 1
        return SchemaError(
            source,
            at,
            f"a tab at column {column}; YAML allows only spaces between the parts of a line"
            " (tabs only inside quotes and comments): replace it with spaces",
        )
    if "unknown escape character" in problem:
        code = problem.rsplit(" ", 1)[-1].strip("'")
        return SchemaError(
            source,
            at,
            f"'\\{code}' is not a YAML escape; write '\\\\' for a backslash, or use single quotes",
        )
    if "mapping values are not allowed here" in problem:
        first = _first_entry_line(lines)
        raw = lines[at - 1] if at <= len(lines) else ""
        if first is not None and _indent(raw) != _indent(lines[first - 1]):
            return SchemaError(source, at, _indented_differently(lines, at))
        return SchemaError(
            source,
            at,
            "a second ': ' on this line; a name holding ': ' must be quoted, e.g. 'a: b': string",
        )
    if "expected '<document start>'" in problem:
        return SchemaError(
            source,
            at,
            "text after the '...' that ends the document; a schema file holds one mapping:"
            " remove the '...' or what follows it",
        )
    where = _line_of(exc.context_mark) if exc.context_mark is not None else at
    if "quoted scalar" in context:
        column = exc.context_mark.column + 1 if exc.context_mark else 1
        return SchemaError(
            source,
            where,
            f"expected 'column: type', but the quote at column {column} is not closed on this"
            " line; close it (a quoted name or type stays on one line)",
        )
    if "could not find expected ':'" in problem:
        raw = lines[where - 1].strip() if where <= len(lines) else ""
        return SchemaError(
            source,
            where,
            f"expected 'column: type', found {raw!r}; write one 'column: type' per line"
            f" (types: {', '.join(TYPES)})",
        )
    said = " ".join(f"{context} {problem}".split())
    return SchemaError(
        source,
        where,
        f"expected 'column: type' lines, but YAML says: {said}; write one 'column: type' per line",
    )


def _plain_key_problem(name: str) -> str | None:
    """What YAML reads a plain column name as when that is not text (None when it is text)."""
    tag: str = yaml.resolver.Resolver().resolve(  # type: ignore[no-untyped-call]
        yaml.ScalarNode, name, (True, False)
    )
    if tag == _STR:
        return None
    what = _READ_AS.get(tag.rsplit(":", 1)[-1], f"a {tag.rsplit(':', 1)[-1]}")
    return f"YAML reads the column name {name} as {what}, not as text; quote it: '{name}': <type>"


def scan(text: str, source: str) -> Iterator[tuple[int, str, str]]:
    """The ``(line, column, value)`` entries of a flat YAML mapping, in file order; ``value`` is
    the text YAML reads (unquoted, without the comment and outer blanks).

    Raises:
        SchemaError: On anything outside the shape the module docstring describes. The value's
            meaning (a type and its options) and duplicates are the caller's to check.
    """
    try:
        events = list(yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, source) from None
    lines = text.splitlines() or [""]
    documents = [e for e in events if isinstance(e, yaml.DocumentStartEvent)]
    for document in documents:
        if document.version or document.tags:
            raise SchemaError(
                source,
                _line_of(document.start_mark),
                "a YAML directive; schema files do not use directives: remove the line",
            )
    if len(documents) > 1:
        raise SchemaError(
            source,
            _line_of(documents[1].start_mark),
            "a second YAML document ('---'); a schema file holds one mapping of 'column: type'"
            " lines: remove this '---' and merge the documents",
        )
    body = [e for e in events if not isinstance(e, yaml.StreamStartEvent | yaml.StreamEndEvent)][
        1:-1
    ]  # between the document's start and end
    if not body:
        return
    root = body[0]
    line = _line_of(root.start_mark)
    if isinstance(root, yaml.ScalarEvent):
        if root.value == "" and root.style is None:
            return  # an empty document: no entries
        raise SchemaError(
            source,
            line,
            f"expected 'column: type', found {lines[line - 1].strip()!r}; write one"
            f" 'column: type' per line (types: {', '.join(TYPES)})",
        )
    if isinstance(root, yaml.SequenceStartEvent) and not root.flow_style:
        raise SchemaError(
            source,
            line,
            "a list item ('- ...'); a schema is a mapping: write 'column: type' lines without"
            " the '- '",
        )
    if isinstance(root, yaml.CollectionStartEvent) and root.flow_style:
        raise SchemaError(
            source,
            line,
            "YAML flow style ('{...}' or '[...]'); write one 'column: type' line per column",
        )
    if not isinstance(root, yaml.MappingStartEvent) or root.anchor or root.tag:
        raise SchemaError(
            source,
            line,
            "a YAML anchor, alias or tag; schema files do not use them: write the plain"
            " 'column: type' lines",
        )
    position = 1
    while position < len(body) - 1:
        key = body[position]
        line = _line_of(key.start_mark)
        if not isinstance(key, yaml.ScalarEvent):
            if isinstance(key, yaml.CollectionStartEvent) and not key.flow_style:
                raise SchemaError(source, line, "a complex key ('? ...'); write 'column: type'")
            raise SchemaError(
                source,
                line,
                "a YAML anchor, alias, tag or flow style as a column name; write the plain"
                " 'column: type' line",
            )
        if key.anchor or key.tag:
            raise SchemaError(
                source,
                line,
                "a YAML anchor, alias or tag; schema files do not use them: write the plain"
                " 'column: type' line",
            )
        column = key.value
        if key.style is None:
            if column == "":
                raise SchemaError(
                    source, line, "expected 'column: type', found a type without a column name"
                )
            problem = _plain_key_problem(column)
            if problem:
                raise SchemaError(source, line, problem, column)
        value = body[position + 1]
        position += 2
        key_text = show(column)
        if isinstance(value, yaml.MappingStartEvent) and not value.flow_style:
            raise SchemaError(
                source,
                line,
                f"column {column!r} has no type; write {key_text}: <type> on one line (a nested"
                f" mapping is not a schema). Types: {', '.join(TYPES)}",
                column,
            )
        if (
            not isinstance(value, yaml.ScalarEvent)
            or value.anchor
            or value.tag
            or value.style in ("|", ">")
        ):
            raise SchemaError(
                source,
                line,
                _NOT_A_WORD.format(column=column, key=key_text, types=", ".join(TYPES)),
                column,
            )
        if not value.value.strip():
            raise SchemaError(
                source,
                line,
                f"column {column!r} has no type; write {key_text}: <type> on one line (a nested"
                f" mapping is not a schema). Types: {', '.join(TYPES)}",
                column,
            )
        if _line_of(value.start_mark) != _line_of(value.end_mark):
            raise SchemaError(
                source, _line_of(value.end_mark), _indented_differently(lines, line), column
            )
        if _line_of(value.start_mark) != line:
            raise SchemaError(
                source,
                line,
                f"the type of column {column!r} is on the next line; write {key_text}: <type> on"
                " one line",
                column,
            )
        yield line, column, value.value
