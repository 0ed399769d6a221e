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

Speed: the file is read in 16 MiB blocks cut at record ends. A block without a line end
inside quotes (the usual case) is counted with ``bytes.count``/``bytes.find`` (C loops);
only blocks with multi-line records are walked record by record (a C regex). Where a
record starts is stored sparsely: only records whose start line is not the previous
record's start line plus one (after a blank line or a multi-line record).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BLOCK_BYTES", "Record", "RecordScan", "scan"]

BLOCK_BYTES = 1 << 24
_TERM = re.compile(rb"\r\n|\n|\r")
# One record under the parity rule, then its line end (or the end of the block).
_RECORD = re.compile(rb'((?:[^"\r\n]++|"[^"]*+")*+)("[^"]*+\Z)?(\r\n|\n|\r|\Z)')
# A record whose last field is empty (``,`` or ``,""`` before its line end): DuckDB drops
# trailing empty fields silently, so these records get their fields counted here.
_TRAILING_EMPTY = re.compile(rb',(?:"")?(?=\r\n|\n|\r|\Z)')


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
        trailing_empty: Indexes of records whose last field is empty (see module doc).
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

    def _block_of_record(self, index: int) -> int:
        return bisect.bisect_right([b.first_record for b in self._blocks], index) - 1

    def fetch(self, indexes: Iterable[int]) -> dict[int, Record]:
        """The records with the given indexes (re-reading only the blocks that hold them)."""
        wanted = sorted(set(indexes))
        firsts = [b.first_record for b in self._blocks]
        found: dict[int, Record] = {}
        for number, group in itertools.groupby(
            wanted, key=lambda k: bisect.bisect_right(firsts, k) - 1
        ):
            if number < 0:
                continue
            records = _block_records(self.path, self._blocks[number])
            first = self._blocks[number].first_record
            for k in group:
                if 0 <= k - first < len(records):
                    _, line, raw = records[k - first]
                    found[k] = Record(k, line, raw)
        return found

    def locate(self, offsets: Iterable[int]) -> dict[int, int]:
        """Map byte offsets in the file to the index of the record holding them."""
        wanted = sorted(set(offsets))
        starts = [b.offset for b in self._blocks]
        found: dict[int, int] = {}
        for number, group in itertools.groupby(
            wanted, key=lambda o: bisect.bisect_right(starts, o) - 1
        ):
            if number < 0:
                continue
            block = self._blocks[number]
            begins = [r[0] for r in _block_records(self.path, block)]
            for offset in group:
                i = bisect.bisect_right(begins, offset) - 1
                if i >= 0:
                    found[offset] = block.first_record + i
        return found

    def iter_records(self) -> Iterator[Record]:
        """Every record of the file in order, header first."""
        for block in self._blocks:
            for i, (_, line, raw) in enumerate(_block_records(self.path, block)):
                yield Record(block.first_record + i, line, raw)


def _cut(block: bytes, final: bool) -> int:
    """Length of the longest prefix of ``block`` made of whole records (0 if none)."""
    if final:
        return len(block)
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


def _simple_records(block: bytes) -> tuple[list[bytes], list[int]]:
    """Lines of a block without quoted line ends, and each line end's length."""
    if b"\r" not in block:
        parts, ends = block.split(b"\n"), [1]
    elif block.count(b"\r") == block.count(b"\n") == block.count(b"\r\n"):
        parts, ends = block.split(b"\r\n"), [2]
    else:
        parts = _TERM.split(block)
        ends = [len(t) for t in _TERM.findall(block)]
    if parts and parts[-1] == b"":
        parts.pop()  # the block ends with a line end
    return parts, ends


def _block_records(path: Path, block: _Block) -> list[tuple[int, int, bytes]]:
    """``(start offset, first line, raw bytes)`` of each record of ``block``."""
    with path.open("rb") as fh:
        fh.seek(block.offset)
        data = fh.read(block.size)
    out: list[tuple[int, int, bytes]] = []
    if not block.multiline:
        parts, ends = _simple_records(data)
        if len(ends) == 1:
            sizes = [len(p) + ends[0] for p in parts]
        else:
            sizes = [len(p) + e for p, e in zip(parts, [*ends, 0], strict=False)]
        starts = list(itertools.accumulate(sizes, initial=block.offset))
        line = block.first_line
        for i, part in enumerate(parts):
            if part:
                out.append((starts[i], line + i, part))
        return out
    line = block.first_line
    for m in _RECORD.finditer(data):
        if m.start() == len(data):
            break
        raw = data[m.start() : m.end(3) - len(m.group(3))]
        if raw:
            out.append((block.offset + m.start(), line, raw))
        line += 1 + (len(_TERM.findall(raw)) if b'"' in raw else 0)
    return out


class _Scanner:
    def __init__(self, path: Path) -> None:
        self.result = RecordScan(path)
        self.index = 0  # next record index (0 = header)
        self.line = 1  # line where the next record or blank line starts
        self.offset = 0

    def add(self, block: bytes, final: bool) -> None:
        res = self.result
        segs = block.split(b'"')
        inside = b"".join(segs[1::2]) if len(segs) > 1 else b""
        multiline = b"\n" in inside or b"\r" in inside or len(segs) % 2 == 0
        res._blocks.append(_Block(self.offset, len(block), self.index, self.line, multiline))
        res._anchor(self.index, self.line)
        if multiline:
            self._walk(block)
        else:
            self._count(block)
        self.offset += len(block)

    def _count(self, block: bytes) -> None:
        res = self.result
        crlf = block.count(b"\r\n")
        lf, cr = block.count(b"\n") - crlf, block.count(b"\r") - crlf
        for kind, n in ((b"\n", lf), (b"\r\n", crlf), (b"\r", cr)):
            if n:
                res.line_ends.add(kind)
        norm = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if cr or crlf else block
        nlines = norm.count(b"\n") + (0 if norm.endswith(b"\n") else 1)
        blanks = []
        if norm.startswith(b"\n"):
            blanks.append(0)
        pos = norm.find(b"\n\n")
        last, count = 0, 0
        while pos != -1:
            count += norm.count(b"\n", last, pos + 1)
            last = pos + 1
            blanks.append(count)  # line index of the blank line within the block
            pos = norm.find(b"\n\n", pos + 1)
        first_index, first_line = self.index, self.line
        for n, blank in enumerate(blanks):  # the record after a blank line starts late
            res._anchor(first_index + blank - n, first_line + blank + 1)
        if _TRAILING_EMPTY.search(block):
            self._trailing(block, blanks)
        self.index += nlines - len(blanks)
        self.line += nlines
        res.lines = self.line - 1

    def _trailing(self, block: bytes, blanks: list[int]) -> None:
        last, lines = 0, 0
        for m in _TRAILING_EMPTY.finditer(block):
            lines += len(_TERM.findall(block, last, m.start()))
            last = m.start()
            index = self.index + lines - bisect.bisect_left(blanks, lines)
            self.result.trailing_empty.append(index)

    def _walk(self, block: bytes) -> None:
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
                if _TRAILING_EMPTY.search(body + b"\n"):
                    res.trailing_empty.append(self.index)
                self.index += 1
            self.line += span
        res.lines = self.line - 1


def scan(path: str | Path) -> RecordScan:
    """Scan ``path`` and count its records (see the module docstring for the rules).

    Args:
        path: The CSV file.

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
    scanner = _Scanner(p)
    carry, size = b"", BLOCK_BYTES
    with p.open("rb") as fh:
        while True:
            chunk = fh.read(size)
            final = not chunk
            block = carry + chunk
            if not block:
                break
            cut = _cut(block, final)
            if cut:
                scanner.add(block[:cut], final)
            # A record longer than a block: read more at once, so the work stays linear.
            size = BLOCK_BYTES if cut else size * 2
            carry = block[cut:]
            if final:
                break
    res = scanner.result
    res.records = max(0, scanner.index - 1)
    return res
