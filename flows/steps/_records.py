"""Byte-level CSV record scanner: counts and locates records independently of DuckDB.

``validate`` types records with DuckDB's CSV reader; this module decides, on its own,
how many records the file holds, where each one starts and what its bytes are, so that
``input_rows == valid_rows + quarantined_rows`` is checked against an independent count.

Rules (RFC 4180, read byte by byte; no decoding, so any encoding can be counted):

* A **record** ends at a line end outside quotes: LF, CRLF or a lone CR.
* Every ``"`` byte toggles quoting: a quoted field opens and closes with one and an
  escaped quote (``""``) toggles twice, so a line end inside a quoted field belongs to
  the field. A file that ends inside quotes ends with an *unclosed* record.
* An empty record (a line end right after another, outside quotes) is a **blank line**,
  not a record. The first record is the header.
* A **physical line** ends at LF, CRLF or a lone CR, quoted or not; lines are 1-based.

Speed: the file is read in 4 MiB blocks cut at record ends; one regex pass checks that the
quotes before the cut pair up within lines. Such a block (the usual case) is counted in C
loops (``bytes.count`` and one regex pass that stops only at line ends, for blank lines and
trailing empty fields); only blocks with multi-line records are walked record by record.
Where a record starts is stored sparsely: only records whose start line is not the previous
record's start line plus one (after a blank line or a multi-line record). Finding records
again (:meth:`RecordScan.lookup`) splits only the blocks that hold them; in a block without
blank lines or quoted line ends a byte offset is mapped to its record by counting line ends,
and so is a record whose last field is empty (the scan keeps the offset of its last comma).
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

__all__ = ["BLOCK_BYTES", "Record", "RecordScan", "scan"]

BLOCK_BYTES = 1 << 22
_TERM = re.compile(rb"\r\n|\n|\r")
# One record under the parity rule, then its line end (or the end of the block).
_RECORD = re.compile(rb'((?:[^"\r\n]++|"[^"]*+")*+)("[^"]*+\Z)?(\r\n|\n|\r|\Z)')
# A record whose last field is empty (``,`` or ``,""`` before its line end): DuckDB drops
# trailing empty fields silently, so these records get their fields counted here.
_TRAILING_EMPTY = re.compile(rb',(?:"")?(?=\r\n|\n|\r|\Z)')
# In a block of LF line ends: a blank line's LF, or the LF of a line ending in ``,`` or
# ``,""`` (one C pass that stops only at LFs).
_LOOK = re.compile(rb'\n(?:(?<=\n\n)|(?<=,\n)|(?<=,""\n))')
# Bytes whose quotes pair up with no line end between the two quotes of a pair.
_QUOTES_CLOSED = re.compile(rb'(?:[^"]*+"[^"\r\n]*+")*+[^"]*+')


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
    multiline: bool
    blank: bool = True  # may hold blank lines (False only when the scan saw none)
    records: int = 0  # records that start in the block
    line_end: bytes = b""  # its only kind of line end, if known (b"" if mixed or unknown)


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
        trailing_empty: Indexes of records whose last field is empty (see module doc)
            and that may have more fields than the header (all of them when
            :func:`scan` got no ``fields``).
    """

    path: Path
    records: int = 0
    lines: int = 0
    line_ends: set[bytes] = field(default_factory=set)
    quoted_line_ends: bool = False
    unclosed: bool = False
    trailing_empty: list[int] = field(default_factory=list)
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
            if block.multiline or block.blank:
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

        lines, pos = 0, 0  # line ends before ``pos``
        for offset in sorted(offsets):
            rel = offset - block.offset
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
        if indexes:
            parts = data.split(block.line_end)  # no blank lines: part i is record i
            for index in indexes:
                i = index - block.first_record
                if 0 <= i < records:
                    found[index] = Record(index, block.first_line + i, parts[i])

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


def _cut(block: bytes, final: bool) -> tuple[int, bool]:
    """Length of the longest prefix of ``block`` made of whole records (0 if none), and
    whether that prefix may hold a line end inside quotes (or ends inside quotes)."""
    cut = len(block)
    if not final:  # a CR at the very end may be the first half of a CRLF: cut before it
        end = cut - block.endswith(b"\r")
        cut = max(block.rfind(b"\n", 0, end), block.rfind(b"\r", 0, end)) + 1
    if cut and (block.find(b'"', 0, cut) == -1 or _QUOTES_CLOSED.fullmatch(block, 0, cut)):
        return cut, False  # the usual case: no line end inside quotes before the cut
    if not final:
        cut = _cut_quoted(block)
    return cut, b'"' in block[:cut] and not _QUOTES_CLOSED.fullmatch(block, 0, cut)


def _cut_quoted(block: bytes) -> int:
    """:func:`_cut` by walking the quoted and unquoted segments from the end."""
    segs = block.split(b'"')
    end = len(block)
    # Outside segments have even indexes; walk them from the end, tracking offsets.
    for i in range(len(segs) - 1, -1, -1):
        start = end - len(segs[i])
        if i % 2 == 0:
            seg = segs[i]
            j = max(seg.rfind(b"\n"), seg.rfind(b"\r"))
            if j == len(seg) - 1 and i == len(segs) - 1 and seg[j:] == b"\r":
                # A CR at the very end may be the first half of a CRLF: cut before it.
                j = max(seg.rfind(b"\n", 0, j), seg.rfind(b"\r", 0, j))
            if j != -1:
                return start + j + 1
        end = start - 1  # the quote before this segment
    return 0


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


def _split_records(data: bytes, block: _Block) -> _Records:
    """The records of ``block``, whose bytes are ``data``."""
    if not block.multiline:
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
    for m in _RECORD.finditer(data):
        if m.start() == len(data):
            break
        raw = data[m.start() : m.end(3) - len(m.group(3))]
        if raw:
            out_starts.append(block.offset + m.start())
            out_lines.append(line)
            out_raws.append(raw)
        line += 1 + (len(_TERM.findall(raw)) if b'"' in raw else 0)
    return _Records(out_starts, out_lines, out_raws)


class _Scanner:
    def __init__(self, path: Path, fields: int | None) -> None:
        self.result = RecordScan(path)
        self.fields = fields
        self.index = 0  # next record index (0 = header)
        self.line = 1  # line where the next record or blank line starts
        self.offset = 0

    def add(self, block: bytes, multiline: bool) -> None:
        first, line = self.index, self.line
        self.result._anchor(first, line)
        blank, end = self._walk(block) if multiline else self._count(block)
        size, records = len(block), self.index - first
        self.result._blocks.append(
            _Block(self.offset, size, first, line, multiline, blank, records, end)
        )
        self.offset += size

    def _count(self, block: bytes) -> tuple[bool, bytes]:
        """Count the records of a block without quoted line ends; returns whether it has
        blank lines and its only kind of line end (b"" if mixed)."""
        res = self.result
        if b"\r" in block:
            crlf = block.count(b"\r\n")
            lf, cr = block.count(b"\n") - crlf, block.count(b"\r") - crlf
            norm = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            crlf, cr, lf, norm = 0, 0, -1, block  # lf: counted by _look
        blanks, ends, total = self._look(norm)
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
        return bool(blanks), b"\n" if cr + crlf == 0 else b"\r\n" if cr + lf == 0 else b""

    def _look(self, norm: bytes) -> tuple[list[int], list[tuple[int, int]], int]:
        """In ``norm`` (LF line ends only): the 0-based lines that are blank, those ending in
        ``,`` or ``,""`` that may have more fields than the header (with their last comma's
        offset), and the number of LFs."""
        blanks, ends, count, last = [0] if norm.startswith(b"\n") else [], [], 0, 0
        for m in _LOOK.finditer(norm):
            pos = m.start()
            count += norm.count(b"\n", last, pos)
            last = pos
            if norm[pos - 1] == 10:  # LF
                blanks.append(count)
            elif self._more_fields(norm, comma := pos - (1 if norm[pos - 1] == 44 else 3)):
                ends.append((count, comma))  # 44: ','
        return blanks, ends, count + norm.count(b"\n", last)

    def _more_fields(self, norm: bytes, pos: int) -> bool:
        """True if the line whose last comma is at ``pos`` may have more fields than the header."""
        start = norm.rfind(b"\n", 0, pos) + 1
        return self.fields is None or norm.count(b",", start, pos + 1) >= self.fields

    def _walk(self, block: bytes) -> tuple[bool, bytes]:
        res = self.result
        for m in _RECORD.finditer(block):
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
                res._anchor(self.index, self.line)
                if span > 1:
                    res.quoted_line_ends = True
                if _TRAILING_EMPTY.search(raw + b"\n") and (
                    self.fields is None or raw.count(b",") >= self.fields
                ):
                    res.trailing_empty.append(self.index)
                self.index += 1
            self.line += span
        res.lines = self.line - 1
        return True, b""


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
        # The rest of the last block (read again, not copied) and ``size`` new bytes.
        while block := fh.read(seen - start + size):
            final = len(block) <= seen - start  # no new bytes: the end of the file
            seen = start + len(block)
            cut, multiline = _cut(block, final)
            if cut:
                scanner.add(block if cut == len(block) else block[:cut], multiline)
            # A record longer than a block: read more at once, so the work stays linear.
            size = BLOCK_BYTES if cut else size * 2
            start += cut
            fh.seek(start)
    res = scanner.result
    res.records = max(0, scanner.index - 1)
    return res
