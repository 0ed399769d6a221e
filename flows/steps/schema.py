"""The ``--schema`` file of ``validate``: a tiny YAML subset, parsed without PyYAML.

Format: one ``column: type`` per line. ``#`` starts a comment (at the start of a line
or after whitespace); blank lines and a leading ``---`` are ignored. A column name may
be quoted with ``"..."`` or ``'...'`` (needed when it contains ``:`` or ``#``). Types
are the names in :data:`flows.steps.types.TYPES`, case-insensitive. Example::

    # orders export
    id: integer
    amount: float
    "signup date": date

Columns not named in the schema are inferred.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.steps._io import DataError
from flows.steps.types import TYPES

__all__ = ["SchemaEntry", "load_schema", "parse_schema", "resolve_schema"]

_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class SchemaEntry:
    """One ``column: type`` line of a schema file."""

    line: int
    column: str
    type: str


def _split(raw: str) -> tuple[str, str] | None:
    """Split ``key: value`` (key optionally quoted); None when the line has no key."""
    if raw[:1] in ('"', "'"):
        q = raw[0]
        end = raw.find(q, 1)
        while q == "'" and end != -1 and raw[end + 1 : end + 2] == "'":  # '' escapes '
            end = raw.find(q, end + 2)
        if end == -1:
            return None
        key = raw[1:end].replace("''", "'") if q == "'" else raw[1:end]
        rest = raw[end + 1 :].lstrip()
        return (key, rest[1:].strip()) if rest.startswith(":") else None
    key, sep, value = raw.partition(":")
    return (key.strip(), value.strip()) if sep and key.strip() else None


def parse_schema(text: str, source: str = "schema") -> list[SchemaEntry]:
    """Parse schema file text.

    Args:
        text: The file content.
        source: Name used in error messages (the file path).

    Returns:
        The entries in file order.

    Raises:
        DataError: On a malformed line, an unknown type or a column named twice.
    """
    entries: list[SchemaEntry] = []
    seen: dict[str, int] = {}
    allowed = ", ".join(TYPES)
    for number, line in enumerate(text.splitlines(), start=1):
        raw = line.strip()
        if raw.startswith("#") or raw in ("", "---"):
            continue
        if not raw.startswith(("'", '"')):
            raw = _COMMENT.sub("", raw).strip()
        parts = _split(raw)
        if parts is None:
            raise DataError(
                f"{source}:{number}: expected 'column: type', found {line.strip()!r}; "
                f"write one 'column: type' per line (types: {allowed})"
            )
        column, type_ = parts
        type_ = _COMMENT.sub("", type_).strip().strip("\"'").lower()
        if type_ not in TYPES:
            raise DataError(
                f"{source}:{number}: unknown type {type_!r} for column {column!r}; "
                f"allowed types: {allowed}"
            )
        if column in seen:
            raise DataError(
                f"{source}:{number}: column {column!r} is already typed on line "
                f"{seen[column]}; keep one line per column"
            )
        seen[column] = number
        entries.append(SchemaEntry(number, column, type_))
    return entries


def resolve_schema(
    entries: Sequence[SchemaEntry], columns: Sequence[str], source: str = "schema"
) -> dict[str, str]:
    """Check schema entries against the input's columns.

    Args:
        entries: Parsed schema lines.
        columns: Column names of the input file, in order.
        source: Name used in error messages.

    Returns:
        Column name to type, for the columns the schema names.

    Raises:
        DataError: If the schema names a column the input does not have.
    """
    known = set(columns)
    for entry in entries:
        if entry.column not in known:
            listed = ", ".join(columns)
            raise DataError(
                f"{source}:{entry.line}: unknown column {entry.column!r}; "
                f"the input's columns are: {listed}"
            )
    return {entry.column: entry.type for entry in entries}


def load_schema(path: str | Path, columns: Sequence[str]) -> dict[str, str]:
    """Read, parse and resolve a schema file.

    Args:
        path: Schema file.
        columns: Column names of the input file.

    Returns:
        Column name to type for the columns the schema names.

    Raises:
        DataError: If the file cannot be read or is invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"schema file {p} not found; check the --schema path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"schema file {p} is not readable UTF-8 text ({exc})") from None
    return resolve_schema(parse_schema(text, str(p)), columns, str(p))
