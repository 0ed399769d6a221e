"""The input file's first checks and its header: one parser, one set of rules.

Used by the ``ingest`` and ``validate`` steps and by the main job's command line
(``python -m flows.data_pipeline`` checks its ``--input`` with :func:`check_input` before
anything starts), so a file is accepted or refused for the same reasons everywhere.
Standard library only: the steps run in stock Python containers.

The header is the file's first record (CSV quoting applies, see
:mod:`flows.steps._records`); a UTF-8 byte order mark before it is dropped. Column names
must be:

* non-empty, without leading or trailing spaces (``" grp "`` is refused: write ``grp``);
* free of control characters (a line break or tab inside a quoted name is refused);
* unique when compared case-insensitively (``id,ID`` is refused: DuckDB, which types
  and aggregates the data, does not tell such names apart).

Anything else works: quotes, commas (in a quoted name), a leading ``-``, names the steps
use internally (``file_row_number``, ``_fails``).

Limits, checked here before any step (the command line exits 2): at most
:data:`MAX_COLUMNS` columns and a header of at most :data:`MAX_HEADER_BYTES`. Within them
every step works; see the guide's "Input limits" for what each costs.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.steps._io import DataError, read_regular
from flows.steps._records import _BOM, _RECORD

__all__ = [
    "MAX_COLUMNS",
    "MAX_HEADER_BYTES",
    "SNIFF_BYTES",
    "InputFile",
    "check_input",
    "check_names",
    "parse_header",
]

SNIFF_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1024 * 1024
#: The most columns a file may have: the widest sheet spreadsheets write (Excel, LibreOffice).
#: Each column costs the typed pass about 2 ms of DuckDB planning, whatever the rows: 16,384
#: columns take about 40 s of validate on a busy 2-core machine; 100,000 took over four minutes.
MAX_COLUMNS = 16_384


@dataclass(frozen=True)
class InputFile:
    """A CSV file that passed :func:`check_input`."""

    path: Path
    columns: tuple[str, ...]
    size: int


def check_names(names: Sequence[str], source: str = "input") -> tuple[str, ...]:
    """Check column names against the rules of the module docstring.

    Args:
        names: The header's names, in order.
        source: The file, named in messages.

    Returns:
        The names, as a tuple.

    Raises:
        DataError: Naming the first column that breaks a rule and how to fix it.
    """
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if not name.strip():
            raise DataError(
                f"{source}: header column {i} has an empty name; name every column in line 1"
            )
        if name != name.strip():
            raise DataError(
                f"{source}: header column {i} {name!r} has leading or trailing spaces; "
                f"rename it to {name.strip()!r}"
            )
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise DataError(
                f"{source}: header column {i} {name!r} contains a control character (a line "
                "break or tab); rename it"
            )
        key = name.lower()
        if key in seen:
            j = seen[key]
            raise DataError(
                f"{source}: header column {i} {name!r} repeats column {j} {names[j - 1]!r} "
                "(names are compared case-insensitively); make the names unique"
            )
        seen[key] = i
    return tuple(names)


def parse_header(record: bytes, source: str = "input") -> tuple[str, ...]:
    """Column names from the header record's bytes (without its line end).

    Args:
        record: The first record of the file, a UTF-8 BOM allowed in front.
        source: The file, named in messages.

    Returns:
        The checked names.

    Raises:
        DataError: If the header is empty, not UTF-8, badly quoted or breaks a name rule.

    Examples:
        >>> parse_header(b'\\xef\\xbb\\xbfid,"a,b","x""y",-n')
        ('id', 'a,b', 'x"y', '-n')
    """
    try:
        text = record.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{source}: the header line is not UTF-8 (byte {exc.start + 1}); convert the file "
            "to UTF-8"
        ) from None
    if not text:
        raise DataError(f"{source}: the first line (header) is empty; add a header line")
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise DataError(
            f"{source}: the header line is not valid CSV ({exc}); quote names with '\"' and "
            "double the quotes inside them"
        ) from None
    if len(rows) != 1:
        raise DataError(f"{source}: the header line is not valid CSV; check its quotes")
    return check_names(rows[0], source)


def check_input(path: str | os.PathLike[str]) -> InputFile:
    """Check that ``path`` is a usable CSV file and read its header.

    Args:
        path: The input file.

    Returns:
        The file's path, header column names and size.

    Raises:
        DataError: If the file is missing, not a regular file, empty, binary (NUL bytes
            or invalid UTF-8 in the first 64 KiB), has no valid header, or more than
            :data:`MAX_COLUMNS` columns.

    Examples:
        >>> import tempfile, os
        >>> with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as fh:
        ...     _ = fh.write(b"id,grp\\r1,a\\r")
        >>> check_input(fh.name).columns
        ('id', 'grp')
        >>> os.unlink(fh.name)
    """
    p = Path(path)
    head, size = read_regular(p, "input file", "pass a CSV file", MAX_HEADER_BYTES + 2)
    if size == 0:
        raise DataError(f"input file {p} is empty; it needs at least a header line")
    sniff = head[:SNIFF_BYTES]
    if b"\x00" in sniff:
        raise DataError(f"input file {p} looks binary (NUL bytes in the first 64 KiB); pass CSV")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sniff, final=len(head) <= SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"input file {p} is not UTF-8 text (bad byte at offset {exc.start}); "
            "convert it to UTF-8 CSV (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    match = _RECORD.match(head, len(_BOM) if head.startswith(_BOM) else 0)
    assert match is not None  # the pattern matches any input
    if (not match.group(3) and len(head) < size) or match.end() > MAX_HEADER_BYTES:
        raise DataError(f"input file {p}: the header line is longer than 1 MiB; is this CSV?")
    if match.group(2):
        raise DataError(f"input file {p}: the header line has an unclosed quote; close it")
    columns = parse_header(match.group(1), f"input file {p}")
    if len(columns) > MAX_COLUMNS:
        raise DataError(
            f"input file {p} has {len(columns)} columns; the pipeline reads at most {MAX_COLUMNS}"
            " (the widest spreadsheet sheet): keep the columns you need, or split the file into"
            f" files of at most {MAX_COLUMNS} columns that each keep the key columns"
        )
    return InputFile(p, columns, size)
