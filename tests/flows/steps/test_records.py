"""Every record counted, every value kept: the validate step run as a command.

Each test reproduces a way records were lost, changed or misplaced, through
``python -m flows.steps <step>`` (the step is the unit): the record scanner's count is
``input_rows``, quarantine lines are physical lines, raw text is the record's bytes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from flows.steps import _records

from .conftest import query, run_cli


def _validate(
    tmp_path: Path, data: bytes, name: str = "in.csv", partitions: int = 1
) -> tuple[dict[str, Any], Path]:
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / f"v-{name}"
    done = run_cli(
        "validate", "--input", str(src), "--output", str(out), "--partitions", str(partitions)
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    meta = json.loads((out / "validate.json").read_text(encoding="utf-8"))
    assert meta["input_rows"] == meta["valid_rows"] + meta["quarantined_rows"]
    return meta, out


def _quarantine(out: Path) -> list[tuple[int, str, str]]:
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line", "reason", "raw"]
    return [(int(a), b, c) for a, b, c in rows[1:]]


def _valid(out: Path) -> list[tuple[Any, ...]]:
    return query(f"SELECT * FROM '{out / 'part-00000.parquet'}'")


def test_a_record_with_a_33_mb_field_is_counted_and_kept(tmp_path: Path) -> None:
    big = "x" * 33_000_000
    rows = [f"{i},{big if i == 5 else 'abc'}" for i in range(30)]
    meta, out = _validate(tmp_path, ("id,v\n" + "\n".join(rows) + "\n").encode())
    assert (meta["input_rows"], meta["valid_rows"]) == (30, 30)
    assert query(f"SELECT max(strlen(v)) FROM '{out / 'part-00000.parquet'}'") == [(33_000_000,)]


def test_quoted_empty_values_of_a_one_column_file_are_records(tmp_path: Path) -> None:
    meta, out = _validate(tmp_path, b'v\n1\n""\n2\n""\n\n3\n')
    assert (meta["input_rows"], meta["valid_rows"]) == (5, 5)  # the blank line is no record
    assert [r[0] for r in _valid(out)] == [1, None, 2, None, 3]


def test_a_trailing_quoted_empty_field_is_an_extra_field(tmp_path: Path) -> None:
    meta, out = _validate(tmp_path, b'a,b,c\n1,a,2\n1,a,2,""\n3,b,4\n4,c,5,,\n')
    assert (meta["input_rows"], meta["valid_rows"]) == (4, 2)
    assert _quarantine(out) == [
        (3, "expected 3 fields, found 4", '1,a,2,""'),
        (5, "expected 3 fields, found 5", "4,c,5,,"),
    ]


def test_quarantine_lines_are_physical_lines_after_multiline_fields(tmp_path: Path) -> None:
    text = 'id,note,n\n1,"two\nlines",1\n2,"three\r\n\nlines",2\n3,x,abc\n4,y\n5,z,5\n'
    text += "".join(f"{i},w,{i}\n" for i in range(6, 300))  # n is an integer column
    meta, out = _validate(tmp_path, text.encode())
    assert meta["input_rows"] == 299
    assert _quarantine(out) == [
        (7, "column 'n': 'abc' is not an integer", "3,x,abc"),
        (8, "expected 3 fields, found 2", "4,y"),
    ]
    assert [r[1] for r in _valid(out)][:3] == ["two\nlines", "three\r\n\nlines", "z"]


def test_zip_codes_with_leading_zeros_stay_strings(tmp_path: Path) -> None:
    meta, out = _validate(tmp_path, b"zip,n\n02134,1\n10001,2\n00501,3\n")
    assert meta["columns"] == {"zip": "string", "n": "integer"}
    assert [r[0] for r in _valid(out)] == ["02134", "10001", "00501"]


def test_integers_beyond_64_bits_keep_every_digit(tmp_path: Path) -> None:
    ids = [str(10**22 + 7 * i) for i in range(30)]  # 23 digits
    meta, out = _validate(
        tmp_path, ("id,g\n" + "".join(f"{x},{i % 2}\n" for i, x in enumerate(ids))).encode()
    )
    assert meta["columns"]["id"] == "string"
    assert [r[0] for r in _valid(out)] == ids


def test_64_bit_integers_beside_decimals_are_never_rounded(tmp_path: Path) -> None:
    """1234567890123456789 became 1.2345678901234568e+18 in a column where a few values are
    decimals, and distinct ids collapsed into one value: a float must hold every value."""
    ids = [str(1234567890123456789 - i) for i in range(40)] + ["9007199254740993"]
    values = ids + [f"{i}.5" for i in range(20)]
    data = "id,g\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(values))
    meta, out = _validate(tmp_path, data.encode())
    assert meta["columns"]["id"] == "string" and meta["valid_rows"] == len(values)
    assert [r[0] for r in _valid(out)] == values
    # Where the column is a float, a value a double would change is refused, and says why.
    values = [f"{i}.5" for i in range(150)] + ["9007199254740993"]
    data = "id,g\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(values))
    meta, out = _validate(tmp_path, data.encode(), "floats.csv")
    assert meta["columns"]["id"] == "float"
    assert _quarantine(out) == [
        (
            152,
            "column 'id': '9007199254740993' is not a float (a float would make it"
            " 9007199254740992.0)",
            "9007199254740993,0",
        )
    ]


def test_raw_text_of_a_latin1_record_keeps_its_bytes_as_escapes(tmp_path: Path) -> None:
    rows = b"".join(b"%d,x%d\n" % (i, i) for i in range(20_000))  # past the 64 KiB sniff
    meta, out = _validate(tmp_path, b"a,b\n" + rows + b"20000,caf\xe9 cr\xe8me\n20001,y\n")
    assert _quarantine(out) == [(20_002, "not valid UTF-8", "20000,caf\\xe9 cr\\xe8me")]
    assert meta["valid_rows"] == 20_001


def test_cr_only_line_ends(tmp_path: Path) -> None:
    src = tmp_path / "cr.csv"
    src.write_bytes(b"a,b\r1,x\r2\r3,z\r")
    done = run_cli("ingest", "--input", str(src), "--output", str(tmp_path / "i"))
    assert done.returncode == 0, done.stderr
    meta, out = _validate(tmp_path, src.read_bytes(), "cr2.csv")
    assert (meta["input_rows"], meta["valid_rows"]) == (3, 2)
    assert _quarantine(out) == [(3, "expected 2 fields, found 1", "2")]


def test_mixed_lf_and_crlf_line_ends(tmp_path: Path) -> None:
    meta, out = _validate(tmp_path, b'a,b\n1,x\r\n2,"p\r\nq"\n3\r\n4,w\n')
    assert (meta["input_rows"], meta["valid_rows"]) == (4, 3)
    assert _quarantine(out) == [(5, "expected 2 fields, found 1", "3")]
    assert [r[1] for r in _valid(out)] == ["x", "p\r\nq", "w"]


def test_a_bom_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    meta, _ = _validate(tmp_path, b"\xef\xbb\xbfgrp,v\nx,1\ny,2\n")
    assert list(meta["columns"]) == ["grp", "v"]


def test_names_like_internal_columns_work_through_transform(tmp_path: Path) -> None:
    header = b'file_row_number,_fails,_badval,"a,b","x""y",--output=/tmp/evil\n'
    rows = b"".join(b"%d,%d,s%d,%d,%d.5,g%d\n" % (i, i, i, i, i, i % 2) for i in range(150))
    meta, out = _validate(tmp_path, header + rows + b"150,oops,s,1,1.5,g0\n", partitions=2)
    assert list(meta["columns"]) == ["file_row_number", "_fails", "_badval", "a,b", 'x"y',
                                     "--output=/tmp/evil"]  # fmt: skip
    assert _quarantine(out) == [
        (152, "column '_fails': 'oops' is not an integer", "150,oops,s,1,1.5,g0")
    ]
    parts = query(f"SELECT file_row_number FROM '{out}/part-*.parquet' ORDER BY 1")
    assert [r[0] for r in parts] == list(range(150))
    for i in range(2):
        done = run_cli("transform", "--input-dir", str(out),
                       "--output", str(tmp_path / "t" / f"p{i}"), "--partition", str(i),
                       "--partitions", "2", "--group-by=--output=/tmp/evil")  # fmt: skip
        assert done.returncode == 0, done.stderr
    done = run_cli("aggregate", "--input-dir", str(tmp_path / "t"),
                   "--group-by=--output=/tmp/evil", "--output", str(tmp_path / "a"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_wide_file_is_typed_in_column_batches(tmp_path: Path, partitions: int) -> None:
    n = 260  # more than one batch of columns (its partitions are written one at a time)
    header = ",".join(f"c{i}" for i in range(n))
    rows = [",".join(str(r * 1000 + i) for i in range(n)) for r in range(150)]
    rows[7] = rows[7].replace(",7180,", ",oops,")  # column 180 of record 8 (line 9)
    data = (header + "\n" + "\n".join(rows) + "\n").encode()
    meta, out = _validate(tmp_path, data, partitions=partitions)
    assert set(meta["columns"].values()) == {"integer"} and meta["valid_rows"] == 149
    ((line, reason, _),) = _quarantine(out)
    assert (line, reason) == (9, "column 'c180': 'oops' is not an integer")
    valid = [
        row
        for i in range(partitions)
        for row in query(f"SELECT * FROM '{out / f'part-{i:05d}.parquet'}'")
    ]
    assert [row[0] for row in valid] == [r * 1000 for r in range(150) if r != 7]
    assert valid[7] == tuple(8000 + i for i in range(n))


def test_a_stray_quote_inside_an_unquoted_field_is_a_literal_quote(tmp_path: Path) -> None:
    """RFC 4180: a quote opens quoting only at the start of a field. One stray quote used to
    swallow the rest of the file into one quarantined record ("2 rows in")."""
    good = b"".join(b"%d,k%d,%d.5\n" % (i, i % 5, i) for i in range(500_000))
    meta, out = _validate(tmp_path, b'a,b,c\n2,b"x,2.0\n' + good)
    assert (meta["input_rows"], meta["valid_rows"]) == (500_001, 500_001)
    assert meta["columns"] == {"a": "integer", "b": "string", "c": "float"}
    first = query(f"SELECT * FROM '{out / 'part-00000.parquet'}' LIMIT 2")
    assert first == [(2, 'b"x', 2.0), (0, "k0", 0.5)]


@pytest.mark.parametrize(
    ("data", "valid", "quarantined"),
    [
        # stray quotes that DuckDB also reads literally: the fast path keeps them as written
        (b'a,b\n1,12" pizza\n2,x"\n3,"q"\n', [(1, '12" pizza'), (2, 'x"'), (3, "q")], []),
        # a quote after a blank at a field's start is literal (RFC 4180; DuckDB would strip it)
        (b'a,b\n1, "x"\n2,y\n', [(1, ' "x"'), (2, "y")], []),
        (b'a,b\n1, "x,y"\n2,y\n', [(2, "y")], [(2, "expected 2 fields, found 3", '1, "x,y"')]),
        # ... so it does not open a quoted field across lines either
        (b'a,b\n1, "x\n2,y"\n3,z\n', [(1, ' "x'), (2, 'y"'), (3, "z")], []),
        # text after a closing quote is broken quoting, whatever DuckDB makes of it
        (b'a,b\n1,"x"  \n2,y\n', [(2, "y")], [(2, "malformed quoting", '1,"x"  ')]),
        (b'a,b\n1,"x" "z"\n2,y\n', [(2, "y")], [(2, "malformed quoting", '1,"x" "z"')]),
    ],
)
def test_quotes_open_quoting_only_at_the_start_of_a_field(
    tmp_path: Path,
    data: bytes,
    valid: list[tuple[Any, ...]],
    quarantined: list[tuple[int, str, str]],
) -> None:
    rows = b"".join(b"%d,w\n" % i for i in range(10, 400))  # column b: string by any rule
    meta, out = _validate(tmp_path, data + rows)
    assert meta["columns"] == {"a": "integer", "b": "string"}
    assert _valid(out)[: len(valid)] == valid
    assert [(line, reason[: len(want)], raw) for (line, reason, raw), (_, want, _) in
            zip(_quarantine(out), quarantined, strict=True)] == quarantined  # fmt: skip


def test_rejected_records_after_blank_lines_keep_their_own_line(tmp_path: Path) -> None:
    # DuckDB reports such a reject at the blank lines' position; the scan finds the record.
    meta, out = _validate(tmp_path, b'a,b\n1,2\n\n\n3\n4,"x\ny"\n\n5\n6,7,8\n9,10\n')
    assert (meta["input_rows"], meta["valid_rows"]) == (6, 3)
    assert _quarantine(out) == [
        (5, "expected 2 fields, found 1", "3"),
        (9, "expected 2 fields, found 1", "5"),
        (10, "expected 2 fields, found 3", "6,7,8"),
    ]
    assert [r[0] for r in _valid(out)] == [1, 4, 9]


# The scanner's fast paths (a cut at the last line end when the quotes before it pair up on
# their lines; one pass for blank lines and trailing empty fields) against fixed answers,
# with every block size, so that each cut position is tried: a block ending exactly at a
# line end, between CR and LF, inside quotes, or with no line end at all.
# (bytes, records, lines, trailing_empty with fields=1, unclosed, quoted_line_ends, lines)
_SCAN_CASES = [
    (b"a,b\n1,2\n3,\n\n4,5\n", 3, 5, [2], False, False, [1, 2, 3, 5]),  # quote-free
    (b'a,b\r\n1,\r\n\r\n2,""\r\n', 2, 4, [1, 2], False, False, [1, 2, 4]),  # CRLF
    (b"a,b\r1,2\r\r3,\r", 2, 4, [2], False, False, [1, 2, 4]),  # lone CR
    (b"a,b\n1,2\r\n3,4\r5,\n", 3, 4, [3], False, False, [1, 2, 3, 4]),  # mixed
    (b'a,b\n"1","2"\n"3",""\n', 2, 3, [2], False, False, [1, 2, 3]),  # quotes on one line
    (b'a,b\n1,"x\ny"\n2,3\n', 2, 4, [], False, True, [1, 2, 4]),  # a quoted line end
    (b'a,b\n1,"x\n2,3', 1, 3, [], True, True, [1, 2]),  # ends inside quotes
    (b'a,b\n1,""', 1, 2, [1], False, False, [1, 2]),  # no final line end
    (b'a,b\n1,x"\n2,3\n', 2, 3, [], False, False, [1, 2, 3]),  # a stray quote: literal
    (b'a,b\n1,x"y\n2,"p\nq"\n3,4\n', 3, 5, [], False, True, [1, 2, 3, 5]),  # and a real one
    (b'a,b\n1, "x\n2,3\n', 2, 3, [], False, False, [1, 2, 3]),  # after a blank: literal
    (b'a,b\n1,"x"y"\n2,3\n', 2, 3, [], False, False, [1, 2, 3]),  # after a closing quote
    (b'a,b\n1,"x""\n2,3', 1, 3, [], True, True, [1, 2]),  # an escaped quote, then unclosed
    (b'\xef\xbb\xbf"a\nb",c\n1,2\n', 1, 3, [], False, True, [1, 3]),  # a BOM, a quoted name
]


@pytest.mark.parametrize(
    ("data", "records", "lines", "trailing", "unclosed", "quoted", "starts"), _SCAN_CASES
)
def test_the_scan_is_the_same_for_every_block_size(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    records: int,
    lines: int,
    trailing: list[int],
    unclosed: bool,
    quoted: bool,
    starts: list[int],
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    for size in range(1, len(data) + 2):
        monkeypatch.setattr(_records, "BLOCK_BYTES", size)
        scan = _records.scan(src, 1)
        found = (scan.records, scan.lines, scan.trailing_empty, scan.unclosed)
        assert found == (records, lines, trailing, unclosed), size
        assert scan.quoted_line_ends == quoted, size
        assert [r.line for r in scan.iter_records()] == starts, size
        assert [scan.line_of(i) for i in range(len(starts))] == starts, size


@pytest.mark.parametrize(
    ("data", "odd"),
    [
        (b'a,b\n1,x"y\n2,"z"\n', []),  # stray and regular quotes
        (b'a,b\n1, "x"\n2,"z" \n3,"a""b"\n4,\t"q\n', [1, 2, 4]),  # DuckDB reads these otherwise
        (b'a,b\n1,"p\nq"x\n2,3\n', [1]),  # text after a closing quote, on a multi-line record
        (b' "a",b\n1,2\n', []),  # the header is not a record
    ],
)
def test_records_that_duckdb_may_read_otherwise_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, odd: list[int]
) -> None:
    """A quote after blanks at a field's start, or text after a closing quote: DuckDB reads
    some of these differently from RFC 4180, so validate must not take its reading of them."""
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    for size in range(1, len(data) + 2):
        monkeypatch.setattr(_records, "BLOCK_BYTES", size)
        assert _records.scan(src, 2).odd_quotes == odd, size


@pytest.mark.parametrize(
    "data",
    [
        b'a,b\n1,2\n3,\n4,""\n5,6\n7,',  # LF, the last record without a line end
        b'a,b\r\n1,2\r\n3,\r\n4,""\r\n5,6\r\n7,',  # CRLF: found from the list of records
        b"a,b\n1,2\n3,\n\n4,5,\n",  # a blank line: found from the list of records
    ],
)
def test_trailing_empty_records_are_fetched_alone_without_extra_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    for size in (4, 9, 1 << 22):
        monkeypatch.setattr(_records, "BLOCK_BYTES", size)
        scan = _records.scan(src)
        every = {r.index: r for r in scan.iter_records()}
        assert scan.trailing_empty == [k for k, r in every.items() if r.raw.endswith((b",", b'""'))]
        where, found = scan.lookup([0], scan.trailing_empty)
        assert where == {0: 0}, size
        assert found == {k: every[k] for k in [0, *scan.trailing_empty]}, size


MIB = 1 << 20


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (b"id,v\n", b"\n"),  # one line per record: the C loops' bound
        (b"id,v\r\n", b"\r\n"),  # CRLF, measured after normalizing the line ends
    ],
)
def test_the_scan_bounds_the_longest_record(tmp_path: Path, head: bytes, tail: bytes) -> None:
    src = tmp_path / "in.csv"
    short = head + b"".join(b"%d,abc" % i + tail for i in range(1000))
    src.write_bytes(short)
    assert _records.scan(src, 2).longest == _records.SHORT_BYTES  # every record shorter
    for size in (_records.SHORT_BYTES, 3 * MIB + 7):  # anywhere against the aligned halves
        for at in (1, 400, 999):
            rows = [b"%d,%s" % (i, b"x" * size if i == at else b"abc") for i in range(1000)]
            src.write_bytes(head + tail.join(rows) + tail)
            assert _records.scan(src, 2).longest == len(rows[at])


def test_the_scan_measures_a_record_over_several_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    field = b"\n".join([b"y" * (MIB // 2)] * 5)  # 2.5 MiB in lines of half a MiB
    rows = [b'%d,"%s"' % (i, field) if i == 3 else b"%d,abc" % i for i in range(200)]
    src.write_bytes(b"id,v\n" + b"\n".join(rows) + b"\n")
    scan = _records.scan(src, 2)
    assert scan.quoted_line_ends and scan.longest == len(rows[3])


@pytest.mark.parametrize("quoted", [False, True])
def test_records_longer_than_duckdbs_default_line_limit_are_kept(
    tmp_path: Path, quoted: bool
) -> None:
    # Records of short files are read with a small line limit (DuckDB reads them on every
    # core); the limit grows with the longest record, so records up to 64 MiB are kept.
    big = "\n".join(["z" * MIB] * 3) if quoted else "z" * (3 * MIB)
    rows = [f'{i},"{big}",{i}' if i == 7 else f"{i},abc,{i}" for i in range(300)]
    meta, out = _validate(tmp_path, ("id,v,n\n" + "\n".join(rows) + "\n").encode())
    assert (meta["input_rows"], meta["valid_rows"]) == (300, 300)
    assert meta["columns"] == {"id": "integer", "v": "string", "n": "integer"}
    assert query(f"SELECT id, v FROM '{out / 'part-00000.parquet'}' WHERE strlen(v) > 3") == [
        (7, big)
    ]
