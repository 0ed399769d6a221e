"""Byte-level CSV record scanner: counts and locates records independently of DuckDB.

``validate`` types records with DuckDB's CSV reader; this module decides, on its own,
how many records the file holds, where each one starts and what its bytes are, so that
``input_rows == valid_rows + quarantined_rows`` is checked against an independent count.

Rules (RFC 4180, as Python's ``csv`` reads it; read byte by byte, no decoding, so any
encoding can be counted):

* A **record** ends at a line end outside quotes: LF, CRLF or a lone CR.
* A ``"`` opens a **quoted field** only at the start of a field (right after a comma, at
  the start of a record, or after the file's UTF-8 BOM). Inside, ``""`` is a quote and a
  single ``"`` closes the field, so a line end inside a quoted field belongs to the field.
  A file that ends inside a quoted field ends with an *unclosed* record.
* Any other ``"`` is a literal character: ``2,b"x,2.0`` is three fields, ``12" pizza`` one.
* An empty record (a line end right after another, outside quotes) is a **blank line**,
  not a record. The first record is the header.
* A **physical line** ends at LF, CRLF or a lone CR, quoted or not; lines are 1-based.

Two shapes are legal to count but read otherwise by DuckDB's CSV reader: text after a
closing quote (``"x"y``, ``"x" ``: broken quoting for strict CSV, which DuckDB sometimes
accepts) and a quote after blanks at a field's start (`` "x"``: literal here, a quoted
field for DuckDB). The scan lists such records (:attr:`RecordScan.odd_quotes`) so that
``validate`` never takes DuckDB's reading of them.

Speed: the file is read in 4 MiB blocks cut at record ends. A regex checks that every quote
before the cut is a quoted field closed on its line or a literal quote after other text (the
usual case), on the lines that hold quotes only while they are few; such a block is counted in
C loops (``bytes.count`` and one regex pass that stops only at line ends, for blank lines and
trailing empty fields). Other blocks are walked record by record. Where a record starts is
stored sparsely: only records whose start line is not the previous record's start line plus
one (after a blank line or a multi-line record). Finding records again
(:meth:`RecordScan.lookup`) splits only the blocks that hold them; in a block without blank
lines or quoted line ends a byte offset is mapped to its record, and a record is found by its
index, by counting line ends from the nearest mark (an LF-only block keeps its count of line
ends before every :data:`MARK_BYTES`), and so is a record whose last field is empty (the scan
keeps the offset of its last comma).
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

__all__ = ["BLOCK_BYTES", "SHORT_BYTES", "Record", "RecordScan", "scan"]

BLOCK_BYTES = 1 << 22
#: Records are shown shorter than this with one ``find`` per half of it (see :func:`_longest`).
SHORT_BYTES = 1 << 20
_TERM = re.compile(rb"\r\n|\n|\r")
_BOM = b"\xef\xbb\xbf"
# A field: quoted (``""`` inside is a quote; it may span lines), then text after the closing
# quote if any (broken, but it ends at the next comma or line end like any field); or
# unquoted, not starting with a quote (quotes inside are literal); or empty.
_FIELD = rb'(?:(?:"[^"]*+")++(?:[^",\r\n][^,\r\n]*+)?|[^",\r\n][^,\r\n]*+)?'
# One record (from a record start), an unclosed quoted field at its end, then its line end
# (or the end of the block).
_RECORD = re.compile(rb"((?>" + _FIELD + rb"(?:," + _FIELD + rb')*+))("[^"]*+\Z)?(\r\n|\n|\r|\Z)')
# A record's bytes read the same by DuckDB as by these rules: every quoted field is followed
# by a comma or the end, and no field starts with blanks and then a quote.
_STRICT = re.compile(
    rb'(?:(?:"[^"]*+")++(?=,|\Z)|(?![ \t]*+")[^,\r\n]*+)'
    rb'(?:,(?:(?:"[^"]*+")++(?=,|\Z)|(?![ \t]*+")[^,\r\n]*+))*+'
)
# Whole lines whose records are those lines and read alike by DuckDB: from quote to quote,
# each quote opens a field at a field's start that closes on its line before a comma or a
# line end, or is a literal quote right after other text (not a blank). One C pass; false
# means "walk the block record by record", never a wrong count.
_REGULAR = re.compile(
    rb'(?:[^"]*+(?:(?:\A|(?<=[,\r\n]))(?:"[^"\r\n]*+")++(?=[,\r\n]|\Z)|(?<=[^,\r\n \t])"))*+'
    rb'[^"]*+'
)
# A record whose last field is empty (``,`` or ``,""`` before its line end): DuckDB drops
# trailing empty fields silently, so these records get their fields counted here.
_TRAILING_EMPTY = re.compile(rb',(?:"")?(?=\r\n|\n|\r|\Z)')
# In a block of LF line ends: a blank line's LF, or the LF of a line ending in ``,`` or
# ``,""`` (one C pass that stops only at LFs; three ``bytes.find`` passes cost twice as much).
_LOOK = re.compile(rb'\n(?:(?<=\n\n)|(?<=,\n)|(?<=,""\n))')
#: An LF-only block keeps its count of LFs before every multiple of this many bytes, so that a
#: record is found by counting from the mark before it, not from the block's start.
MARK_BYTES = 4096
#: While a block's lines with quotes come at most one per this many bytes, they are checked
#: one by one (:func:`_regular`), not the whole block by one regex pass.
SPARSE_QUOTE_BYTES = 2048


@dataclass(frozen=True)
class Record:
    """One record: its index (0 = header), first physical line and bytes (no line end)."""

    index: int
    line: int
    raw: bytes


@dataclass(frozen=True)
class _Block:
    offset: int
    size: int
    first_record: int
    first_line: int
    walked: bool  # records found one by one (quoted line ends or odd quotes), not by line
    blank: bool = True  # may hold blank lines (False only when the scan saw none)
    records: int = 0  # records that start in the block
    line_end: bytes = b""  # its only kind of line end, if known (b"" if mixed or unknown)
    marks: Sequence[int] = ()  # LF-only blocks: the LFs before each multiple of MARK_BYTES


@dataclass
class RecordScan:
    """What :func:`scan` found.

    Attributes:
        path: The file.
        records: Data records (header and blank lines not counted).
        lines: Physical lines.
        line_ends: Kinds of record ends seen (``b"\\n"``, ``b"\\r\\n"``, ``b"\\r"``).
        quoted_line_ends: True if some record spans several lines (a quoted line end).
        unclosed: True if the file ends inside a quoted field.
        odd_quotes: Indexes of records with text after a closing quote or a quote after
            blanks at a field's start (see the module docstring), in file order.
        trailing_empty: Indexes of records whose last field is empty (see module doc)
            and that may have more fields than the header (all of them when
            :func:`scan` got no ``fields``).
        longest: At least the bytes of the longest record, header included (line ends not
            counted): :data:`SHORT_BYTES` when every record is shorter, else exact.
    """

    path: Path
    records: int = 0
    lines: int = 0
    line_ends: set[bytes] = field(default_factory=set)
    quoted_line_ends: bool = False
    unclosed: bool = False
    odd_quotes: list[int] = field(default_factory=list)
    trailing_empty: list[int] = field(default_factory=list)
    longest: int = 0
    _blocks: list[_Block] = field(default_factory=list)
    _anchor_record: list[int] = field(default_factory=lambda: [0])
    _anchor_line: list[int] = field(default_factory=lambda: [1])
    _trailing_at: dict[int, int] = field(default_factory=dict)  # last comma, in LF blocks

    @property
    def uniform_line_ends(self) -> bool:
        """True if every record ends the same way, with LF or CRLF."""
        return self.line_ends in ({b"\n"}, {b"\r\n"}, set())

    def line_of(self, index: int) -> int:
        """The 1-based physical line where record ``index`` (0 = header) starts."""
        j = bisect.bisect_right(self._anchor_record, index) - 1
        return self._anchor_line[j] + index - self._anchor_record[j]

    def _anchor(self, index: int, line: int) -> None:
        if self.line_of(index) != line:
            self._anchor_record.append(index)
            self._anchor_line.append(line)

    def fetch(self, indexes: Iterable[int]) -> dict[int, Record]:
        """The records with the given indexes (re-reading only the blocks that hold them)."""
        return self.lookup((), indexes)[1]

    def locate(self, offsets: Iterable[int]) -> dict[int, int]:
        """Map byte offsets in the file to the index of the record holding them (an offset
        in blank lines maps to the record after them)."""
        return self.lookup(offsets, ())[0]

    def lookup(
        self, offsets: Iterable[int], indexes: Iterable[int]
    ) -> tuple[dict[int, int], dict[int, Record]]:
        """:meth:`locate` and :meth:`fetch` in one pass over the blocks they need (the
        located records are fetched too)."""
        starts = [b.offset for b in self._blocks]
        firsts = [b.first_record for b in self._blocks]
        by_block: dict[int, tuple[list[int], list[int]]] = {}
        for offset in set(offsets):
            number = bisect.bisect_right(starts, offset) - 1
            if number >= 0:
                by_block.setdefault(number, ([], []))[0].append(offset)
        for index in set(indexes):
            number = bisect.bisect_right(firsts, index) - 1
            if number >= 0:
                by_block.setdefault(number, ([], []))[1].append(index)
        where: dict[int, int] = {}
        found: dict[int, Record] = {}
        for number in sorted(by_block):
            block, (at, wanted) = self._blocks[number], by_block[number]
            if block.walked or block.blank:
                self._split_lookup(block, _read(self.path, block), at, wanted, where, found)
                continue
            via = [self._trailing_at.get(i, -1) for i in wanted]
            if wanted and -1 not in via:  # found by an offset in each (no list of records)
                self._plain_lookup(block, at + via, (), where, found)
                for offset in set(via).difference(at):
                    where.pop(offset, None)
            else:
                self._plain_lookup(block, at, wanted, where, found)
        return where, found

    def _plain_lookup(
        self,
        block: _Block,
        offsets: Sequence[int],
        indexes: Sequence[int],
        where: dict[int, int],
        found: dict[int, Record],
    ) -> None:
        """:meth:`lookup` in a block of one record per line, without blank lines: an offset
        is mapped by counting the line ends before it (no list of every record)."""
        data = _read(self.path, block)
        if not block.line_end:  # mixed line ends
            self._split_lookup(block, data, offsets, indexes, where, found)
            return
        crlf, records = block.line_end == b"\r\n", block.records

        def record_at(start: int) -> bytes:
            end = data.find(b"\n", start)
            if end == -1:
                return data[start:]
            return data[start : end - 1] if crlf else data[start:end]

        marks = block.marks
        lines, pos = 0, 0  # line ends before ``pos``
        for offset in sorted(offsets):
            rel = offset - block.offset
            if (j := rel // MARK_BYTES) < len(marks) and j * MARK_BYTES > pos:
                lines, pos = marks[j], j * MARK_BYTES  # counted by the scan
            lines += data.count(b"\n", pos, rel)
            pos = rel
            i, start = lines, data.rfind(b"\n", 0, rel) + 1
            raw = record_at(start)
            if rel > start + len(raw):  # in the line end: the next record
                i, start = i + 1, start + len(raw) + 1 + crlf
                raw = record_at(start) if i < records else b""
            if 0 <= i < records:
                where[offset] = block.first_record + i
                found[block.first_record + i] = Record(
                    block.first_record + i, block.first_line + i, raw
                )
        # Records asked for by index: each found by counting line ends from the mark or the
        # record before it (splitting the block into its records cost 0.8 s to fetch 50k of
        # 10M records, counting from the record before it 0.4 s).
        line, start, width = 0, 0, len(data) / max(records, 1)
        for index in sorted(indexes):
            i = index - block.first_record
            if 0 <= i < records:
                j = bisect.bisect_left(marks, i) - 1  # the last mark before line i's LF
                if j >= 0 and j * MARK_BYTES > start:
                    start, line = j * MARK_BYTES, marks[j]
                start, line = _line_start(data, start, i - line, width), i
                found[index] = Record(index, block.first_line + i, record_at(start))

    @staticmethod
    def _split_lookup(
        block: _Block,
        data: bytes,
        offsets: Iterable[int],
        indexes: Iterable[int],
        where: dict[int, int],
        found: dict[int, Record],
    ) -> None:
        """:meth:`lookup` in one block, from the list of its records."""
        records = _split_records(data, block)
        for offset in offsets:
            i = bisect.bisect_right(records.starts, offset) - 1
            if i >= 0 and offset > records.starts[i] + len(records.raws[i]):
                i += 1  # past the record's line end: in blank lines before the next one
            if 0 <= i < len(records.raws):
                where[offset] = block.first_record + i
                found[block.first_record + i] = Record(
                    block.first_record + i, records.lines[i], records.raws[i]
                )
        for index in indexes:
            i = index - block.first_record
            if 0 <= i < len(records.raws):
                found[index] = Record(index, records.lines[i], records.raws[i])

    def iter_records(self) -> Iterator[Record]:
        """Every record of the file in order, header first."""
        for block in self._blocks:
            records = _split_records(_read(self.path, block), block)
            for i, (line, raw) in enumerate(zip(records.lines, records.raws, strict=True)):
                yield Record(block.first_record + i, line, raw)


def _cut(block: bytes, final: bool, start: int = 0) -> tuple[int, bool]:
    """Length of the longest prefix of ``block`` made of whole records (0 if none), and
    whether that prefix must be walked record by record (a quote :data:`_REGULAR` does not
    accept). ``start``: where the first record starts (after the file's BOM)."""
    cut = len(block)
    if not final:  # a CR at the very end may be the first half of a CRLF: cut before it
        end = cut - block.endswith(b"\r")
        cut = max(block.rfind(b"\n", 0, end), block.rfind(b"\r", 0, end)) + 1
    if cut and _regular(block, start, cut):
        return cut, False  # the usual case: every record before the cut is one line
    if final:
        return cut, True
    cut = 0  # the end of the last record that ends with a line end inside the block
    for m in _RECORD.finditer(block, start):
        ends = m.group(3)
        if not ends or (ends == b"\r" and m.end() == len(block)):
            break
        cut = m.end()
    return cut, bool(cut) and not _regular(block, start, cut)


def _regular(block: bytes, start: int, end: int) -> bool:
    """True if ``block[start:end]`` (whole lines) holds no quote :data:`_REGULAR` refuses."""
    if block.find(b'"', start, end) == -1:
        return True
    if start:  # after the BOM: the header line's quotes are checked on their own
        line = _TERM.search(block, start, end)
        stop = line.start() if line else end
        if not _STRICT.fullmatch(block, start, stop):
            return False
        start = line.end() if line else end
    # Few quotes: only the lines that hold one are matched (a regex pass over every byte cost
    # 0.6 s of a 734 MB file with a quote every 3 KiB). A regular quote never spans a line end
    # and the lookarounds see the bytes around the range, so a range of whole lines matches
    # alone exactly when it matches within the block. Once the quoted lines come more often
    # than one per SPARSE_QUOTE_BYTES, the rest of the block is matched in one pass.
    pos, quoted = start, 0
    while (quote := block.find(b'"', pos, end)) != -1:
        if quoted * SPARSE_QUOTE_BYTES > quote - start:
            return _REGULAR.fullmatch(block, pos, end) is not None
        quoted += 1
        first = max(block.rfind(b"\n", pos, quote), pos - 1) + 1
        last = block.find(b"\n", quote, end)
        pos = end if last == -1 else last + 1
        if _REGULAR.fullmatch(block, first, pos) is None:
            return False
    return True


class _Records(NamedTuple):
    """The records of one block: ``starts`` (file offsets), ``lines`` and ``raws``."""

    starts: Sequence[int]
    lines: Sequence[int]
    raws: Sequence[bytes]


def _read(path: Path, block: _Block) -> bytes:
    """The bytes of ``block``, read again from ``path``."""
    with path.open("rb") as fh:
        fh.seek(block.offset)
        return fh.read(block.size)


def _line_start(data: bytes, pos: int, ahead: int, width: float) -> int:
    """Where the line ``ahead`` lines after the line holding ``pos`` starts (LF line ends),
    counted in C: a jump of ``ahead`` lines of ``width`` bytes, halved while it goes past."""
    if ahead < 0:
        raise ValueError(f"line {ahead} lines after offset {pos}: lines are found forward only")
    while ahead:
        step = max(1, int(ahead * width))
        while (seen := data.count(b"\n", pos, pos + step)) > ahead:
            step //= 2
        if seen == ahead:
            return data.rfind(b"\n", pos, pos + step) + 1
        if pos + step >= len(data):
            raise ValueError(f"no line {ahead} lines after offset {pos}")
        pos, ahead = pos + step, ahead - seen
    return pos


def _split_records(data: bytes, block: _Block) -> _Records:
    """The records of ``block``, whose bytes are ``data``."""
    if not block.walked:
        end = block.line_end  # b"" if mixed
        parts = data.split(end) if end else _TERM.split(data)
        ends = [len(end)] if end else [len(t) for t in _TERM.findall(data)]
        if parts and parts[-1] == b"":
            parts.pop()  # the block ends with a line end
        if len(ends) == 1:  # start of part i: offset + lengths before it + i line ends
            lengths = itertools.accumulate(map(len, parts), initial=block.offset)
            starts = list(map(operator.add, lengths, range(0, ends[0] * (len(parts) + 1), ends[0])))
        else:
            steps = [len(p) + e for p, e in zip(parts, [*ends, 0], strict=False)]
            starts = list(itertools.accumulate(steps, initial=block.offset))
        lines = range(block.first_line, block.first_line + len(parts))
        if b"" not in parts:
            return _Records(starts, lines, parts)
        keep = [i for i, part in enumerate(parts) if part]
        return _Records(
            [starts[i] for i in keep], [lines[i] for i in keep], [parts[i] for i in keep]
        )
    out_starts: list[int] = []
    out_lines: list[int] = []
    out_raws: list[bytes] = []
    line = block.first_line
    for m in _RECORD.finditer(data, _skip(data, block.offset)):
        if m.start() == len(data):
            break
        raw = data[m.start() : m.end(3) - len(m.group(3))]
        if raw:
            out_starts.append(block.offset + m.start())
            out_lines.append(line)
            out_raws.append(raw)
        line += 1 + (len(_TERM.findall(raw)) if b'"' in raw else 0)
    return _Records(out_starts, out_lines, out_raws)


def _skip(data: bytes, offset: int) -> int:
    """Where the first record of ``data`` (read at ``offset`` of the file) starts: after the
    file's UTF-8 BOM, which is not part of the first field."""
    return len(_BOM) if offset == 0 and data.startswith(_BOM) else 0


class _Scanner:
    def __init__(self, path: Path, fields: int | None) -> None:
        self.result = RecordScan(path)
        self.fields = fields
        self.index = 0  # next record index (0 = header)
        self.line = 1  # line where the next record or blank line starts
        self.offset = 0

    def add(self, block: bytes, walk: bool) -> None:
        first, line = self.index, self.line
        self.result._anchor(first, line)
        blank, end, marks = self._walk(block) if walk else self._count(block)
        size, records = len(block), self.index - first
        self.result._blocks.append(
            _Block(self.offset, size, first, line, walk, blank, records, end, marks)
        )
        self.offset += size

    def _count(self, block: bytes) -> tuple[bool, bytes, Sequence[int]]:
        """Count the records of a block without quoted line ends; returns whether it has
        blank lines, its only kind of line end (b"" if mixed) and its marks (LF only)."""
        res = self.result
        if b"\r" in block:
            crlf = block.count(b"\r\n")
            lf, cr = block.count(b"\n") - crlf, block.count(b"\r") - crlf
            norm = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            crlf, cr, lf, norm = 0, 0, -1, block  # lf: counted by _look
        blanks, ends, total, marks = self._look(norm)
        res.longest = max(res.longest, _longest(norm))
        lf = total if lf < 0 else lf
        for kind, n in ((b"\n", lf), (b"\r\n", crlf), (b"\r", cr)):
            if n:
                res.line_ends.add(kind)
        nlines = total + (0 if norm.endswith(b"\n") else 1)
        tail = 1 if norm.endswith(b",") else 3 if norm.endswith(b',""') else 0
        if tail and self._more_fields(norm, len(norm) - tail):
            ends.append((nlines - 1, len(norm) - tail))
        first_index, first_line = self.index, self.line
        for n, blank in enumerate(blanks):  # the record after a blank line starts late
            res._anchor(first_index + blank - n, first_line + blank + 1)
        for line, pos in ends:
            res.trailing_empty.append(first_index + line - bisect.bisect_left(blanks, line))
            if norm is block:
                res._trailing_at[res.trailing_empty[-1]] = self.offset + pos
        self.index += nlines - len(blanks)
        self.line += nlines
        res.lines = self.line - 1
        kind = b"\n" if cr + crlf == 0 else b"\r\n" if cr + lf == 0 else b""
        return bool(blanks), kind, marks if norm is block else ()

    def _look(self, norm: bytes) -> tuple[list[int], list[tuple[int, int]], int, array[int]]:
        """In ``norm`` (LF line ends only): the 0-based lines that are blank, those ending in
        ``,`` or ``,""`` that may have more fields than the header (with their last comma's
        offset), the number of LFs, and the marks: the LFs before each multiple of
        :data:`MARK_BYTES` (each byte counted once, as the marks and the stops come)."""
        blanks, ends, count, last = [0] if norm.startswith(b"\n") else [], [], 0, 0
        marks, mark = array("q", [0]), MARK_BYTES

        def count_to(pos: int) -> None:
            nonlocal count, last, mark
            while mark <= pos:
                count += norm.count(b"\n", last, mark)
                marks.append(count)
                last, mark = mark, mark + MARK_BYTES
            count += norm.count(b"\n", last, pos)
            last = pos

        for m in _LOOK.finditer(norm):
            pos = m.start()
            count_to(pos)
            if norm[pos - 1] == 10:  # LF
                blanks.append(count)
            elif self._more_fields(norm, comma := pos - (1 if norm[pos - 1] == 44 else 3)):
                ends.append((count, comma))  # 44: ','
        count_to(len(norm))
        return blanks, ends, count, marks

    def _more_fields(self, norm: bytes, pos: int) -> bool:
        """True if the line whose last comma is at ``pos`` may have more fields than the header."""
        start = norm.rfind(b"\n", 0, pos) + 1
        return self.fields is None or norm.count(b",", start, pos + 1) >= self.fields

    def _walk(self, block: bytes) -> tuple[bool, bytes, Sequence[int]]:
        res = self.result
        for m in _RECORD.finditer(block, _skip(block, self.offset)):
            if m.start() == len(block):
                break
            body, unclosed, end = m.group(1), m.group(2), m.group(3)
            if end:
                res.line_ends.add(end)
            raw = body + (unclosed or b"")
            if unclosed:
                res.unclosed = True
            span = 1 + (len(_TERM.findall(raw)) if b'"' in raw else 0)
            if raw:
                res.longest = max(res.longest, len(raw))
                res._anchor(self.index, self.line)
                if span > 1:
                    res.quoted_line_ends = True
                if self.index and not unclosed and b'"' in raw and not _STRICT.fullmatch(raw):
                    res.odd_quotes.append(self.index)
                if _TRAILING_EMPTY.search(raw + b"\n") and (
                    self.fields is None or raw.count(b",") >= self.fields
                ):
                    res.trailing_empty.append(self.index)
                self.index += 1
            self.line += span
        res.lines = self.line - 1
        return True, b"", ()


def _longest(norm: bytes) -> int:
    """The longest line of ``norm`` (LF line ends only), or :data:`SHORT_BYTES` when every
    line is shorter than that.

    One ``find`` per half of :data:`SHORT_BYTES`: a line of at least ``SHORT_BYTES`` bytes
    would hold a whole aligned half without an LF. Only when some half has none are the
    lines measured.
    """
    half = SHORT_BYTES // 2
    for start in range(0, len(norm), half):
        if norm.find(b"\n", start, start + half) == -1:
            return max(SHORT_BYTES, *map(len, norm.split(b"\n")))
    return SHORT_BYTES


def scan(path: str | Path, fields: int | None = None) -> RecordScan:
    """Scan ``path`` and count its records (see the module docstring for the rules).

    Args:
        path: The CSV file.
        fields: The header's number of fields, when known: records whose last field is
            empty are then listed in ``trailing_empty`` only if they have enough commas
            for more fields than that.

    Returns:
        The counts and what is needed to find any record again.

    Examples:
        >>> import tempfile, os
        >>> with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as fh:
        ...     _ = fh.write(b'a,b\\n1,"x\\ny"\\n\\n2,z\\n')
        >>> s = scan(fh.name)
        >>> s.records, s.line_of(2), s.fetch([2])[2].raw
        (2, 5, b'2,z')
        >>> os.unlink(fh.name)
    """
    p = Path(path)
    scanner = _Scanner(p, fields)
    start, seen, size = 0, 0, BLOCK_BYTES  # the block starts at ``start``; ``seen``: bytes read
    with p.open("rb") as fh:
        bom = fh.read(len(_BOM)) == _BOM
        fh.seek(0)
        # The rest of the last block (read again, not copied) and ``size`` new bytes.
        while block := fh.read(seen - start + size):
            final = len(block) <= seen - start  # no new bytes: the end of the file
            seen = start + len(block)
            cut, walk = _cut(block, final, len(_BOM) if bom and start == 0 else 0)
            if cut:
                scanner.add(block if cut == len(block) else block[:cut], walk)
            # A record longer than a block: read more at once, so the work stays linear.
            size = BLOCK_BYTES if cut else size * 2
            start += cut
            fh.seek(start)
    res = scanner.result
    res.records = max(0, scanner.index - 1)
    return res
