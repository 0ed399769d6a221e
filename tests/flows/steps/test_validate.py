"""validate: quarantine rules, line numbers and raw text, accounting, outputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows.steps import validate
from flows.steps._csv import connect
from flows.steps._io import DataError
from flows.steps.formats import PLAIN

from .conftest import Pipeline, query, quiet

WriteCsv = Callable[[str], Path]


def _run(path: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return validate.run(path, out, log=quiet, **kw)


def _quarantine(out: Path) -> list[tuple[int, str, str]]:
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["line", "reason", "raw"]
        return [(int(a), b, c) for a, b, c in reader]


def _valid(out: Path) -> list[tuple[Any, ...]]:
    return query(f"SELECT * FROM '{out / 'part-00000.parquet'}'")


def _floats(n: int, start: int = 1) -> list[str]:
    return [f"{i},n{i % 3},{i}.5" for i in range(start, start + n)]


def test_field_count_and_type_mismatch_with_line_numbers(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    lines = ["id,name,score", *_floats(300)]
    lines[5] = "5,short"  # line 6: missing field
    lines[10] = ""  # line 11: blank, not a record
    lines[20] = '20,"quoted, name",abc'  # line 21: type mismatch
    lines[30] = "30,extra,1.5,more"  # line 31: extra field
    lines[35] = "35,trailing,2.5,"  # line 36: trailing empty extra field
    out = tmp_path / "v"
    result = _run(write_csv("\n".join(lines) + "\n"), out)
    assert _quarantine(out) == [
        (6, "expected 3 fields, found 2", "5,short"),
        (21, "column 'score': 'abc' is not a float", '20,"quoted, name",abc'),
        (31, "expected 3 fields, found 4", "30,extra,1.5,more"),
        (36, "expected 3 fields, found 4", "35,trailing,2.5,"),
    ]
    assert result["input_rows"] == 299  # 300 data lines, one blank
    assert result["valid_rows"] == 295 and result["quarantined_rows"] == 4
    assert result["columns"] == {"id": "integer", "name": "string", "score": "float"}
    assert [r[0] for r in _valid(out)] == [i for i in range(1, 301) if i not in (5, 10, 20, 30, 35)]
    assert json.loads((out / "validate.json").read_text()) == result
    assert sorted(p.name for p in out.iterdir()) == [
        "part-00000.parquet",
        "quarantine.csv",
        "validate.json",
    ]


@pytest.mark.parametrize("partitions", [1, 2, 7, 400])
def test_partitions_are_contiguous_runs_of_the_valid_rows(
    write_csv: WriteCsv, tmp_path: Path, partitions: int
) -> None:
    """The K part files in order are the valid rows in input order, each a run of the records
    read cut at even positions, quarantined records left out, whatever K (more than rows too)."""
    lines = ["id,name,score", *_floats(300)]
    lines[5] = "5,short"  # a record of too few fields: rejected by DuckDB
    lines[20] = "20,n2,x"  # a value that is not a float: staged, then failed
    lines[30] = "30,extra,1.5,"  # a trailing empty field: DuckDB's extras (sorted back)
    out = tmp_path / "v"
    result = _run(write_csv("\n".join(lines) + "\n"), out, partitions=partitions)
    names = sorted(p.name for p in out.glob("part-*.parquet"))
    assert names == [f"part-{i:05d}.parquet" for i in range(partitions)]
    rows = query(f"SELECT filename, id FROM read_parquet('{out}/part-*.parquet', filename = true)")
    per_part = [[i for f, i in rows if Path(f).name == n] for n in names]  # file order kept
    assert result["parts"] == [len(ids) for ids in per_part]
    assert sum(result["parts"]) == result["valid_rows"] == 297
    flat = [i for ids in per_part for i in ids]
    assert flat == [i for i in range(1, 301) if i not in (5, 20, 30)]
    # even cuts of the records typed: sizes differ by the quarantined records at most
    assert max(result["parts"]) - min(result["parts"]) <= 1 + result["quarantined_rows"]
    assert _quarantine(out) == _quarantine_of(lines, tmp_path / f"one-{partitions}")


def _quarantine_of(lines: list[str], out: Path) -> list[tuple[int, str, str]]:
    path = out.with_suffix(".csv")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _run(path, out)
    return _quarantine(out)


def test_files_in_the_output_folder_that_validate_does_not_write_are_left_alone(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # validate writes its partitions (side by side), quarantine.csv and validate.json by name;
    # anything else in the folder, a partition name it does not write this run included, stays.
    out = tmp_path / "v"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "part-00009.parquet").write_bytes(b"not written by validate")
    _run(write_csv("\n".join(["id,name,score", *_floats(300)]) + "\n"), out, partitions=2)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "part-00009.parquet").read_bytes() == b"not written by validate"
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt", "part-00000.parquet", "part-00001.parquet", "part-00009.parquet",
        "quarantine.csv", "validate.json",
    ]  # fmt: skip


def test_partitions_below_one_are_refused(write_csv: WriteCsv, tmp_path: Path) -> None:
    from flows.steps._io import UsageError

    with pytest.raises(UsageError, match="--partitions"):
        _run(write_csv("a\n1\n"), tmp_path / "v", partitions=0)


def test_first_failing_column_is_named(write_csv: WriteCsv, tmp_path: Path) -> None:
    rows = [f"{i},{i}.0,2023-01-{1 + i % 28:02d}" for i in range(200)]
    rows[100] = "100,x,2023-02-30"
    rows[150] = "150,1.0,2023-02-30"
    out = tmp_path / "v"
    _run(write_csv("a,b,c\r\n" + "\r\n".join(rows) + "\r\n"), out)  # CRLF line ends
    assert _quarantine(out) == [
        (102, "column 'b': 'x' is not a float", "100,x,2023-02-30"),
        (152, "column 'c': '2023-02-30' is not a date", "150,1.0,2023-02-30"),
    ]


def test_valid_parquet_is_typed_in_input_order(write_csv: WriteCsv, tmp_path: Path) -> None:
    text = (
        "b,i,f,d,ts,s\n"
        "true,1,1.5,2024-02-29,2024-01-01 10:00:00,x\n"
        " NO , 2 ,NA,null,2024-01-01T11:00:00.25,  \n"
        "t,-3,1e3,2023-12-31,2023-12-31, padded \n"
    )
    out = tmp_path / "v"
    result = _run(write_csv(text), out)
    assert result["columns"] == {
        "b": "boolean", "i": "integer", "f": "float", "d": "date", "ts": "timestamp", "s": "string"
    }  # fmt: skip
    types = query(f"DESCRIBE SELECT * FROM '{out / 'part-00000.parquet'}'")
    assert [t[1] for t in types] == ["BOOLEAN", "BIGINT", "DOUBLE", "DATE", "TIMESTAMP", "VARCHAR"]
    rows = _valid(out)
    assert [r[:3] for r in rows] == [(True, 1, 1.5), (False, 2, None), (True, -3, 1000.0)]
    assert [r[5] for r in rows] == ["x", None, " padded "]
    assert str(rows[1][4]) == "2024-01-01 11:00:00.250000"


def test_header_only_gives_zero_rows(write_csv: WriteCsv, tmp_path: Path) -> None:
    out = tmp_path / "v"
    result = _run(write_csv("a,b\n"), out)
    assert (result["input_rows"], result["valid_rows"], result["quarantined_rows"]) == (0, 0, 0)
    assert result["columns"] == {"a": "string", "b": "string"}
    assert _quarantine(out) == [] and _valid(out) == []


def test_single_column_blank_lines_are_not_records(write_csv: WriteCsv, tmp_path: Path) -> None:
    out = tmp_path / "v"
    result = _run(write_csv("v\n1\n\n2\n3"), out)  # no final line end
    assert result["input_rows"] == 3 and result["columns"] == {"v": "integer"}


def test_schema_fixes_types_and_others_are_inferred(write_csv: WriteCsv, tmp_path: Path) -> None:
    schema = tmp_path / "s.yaml"
    schema.write_text("# types\nb: string\na: float\n", encoding="utf-8")
    out = tmp_path / "v"
    result = _run(write_csv("a,b,c\n1,2,2023-01-01\nx,3,2023-01-02\n"), out, schema_path=schema)
    assert result["columns"] == {"a": "float", "b": "string", "c": "date"}
    assert _quarantine(out) == [(3, "column 'a': 'x' is not a float", "x,3,2023-01-02")]


def test_schema_errors_are_data_errors(write_csv: WriteCsv, tmp_path: Path) -> None:
    schema = tmp_path / "s.yaml"
    schema.write_text("zz: float\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown column 'zz'"):
        _run(write_csv("a\n1\n"), tmp_path / "v", schema_path=schema)


def test_inconclusive_sample_falls_back_to_the_whole_file(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # The sample (first 10 rows) is all null for b; the rest of the file is integers.
    rows = [f"{i}," for i in range(10)] + [f"{i},{i}" for i in range(10, 300)]
    logs: list[str] = []
    result = validate.run(write_csv("a,b\n" + "\n".join(rows) + "\n"), tmp_path / "v",
                          sample_rows=10, log=logs.append)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "integer"}
    assert any("not conclusive for b;" in line for line in logs)
    assert any("typing it again" in line for line in logs)


def test_inconclusive_sample_classifies_only_the_open_columns_and_keeps_the_typed_pass(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # b: one decimal in 40 (2.5%): a float, but 100 sampled records hold 3 decimals where
    # more than 30 (1% of 3,000) are needed to rule out integer, and an extension would
    # need more than a quarter of the file. a is settled by the sample.
    rows = [f"{i},{i}.5" if i % 40 == 7 else f"{i},{i}" for i in range(3_000)]
    logs: list[str] = []
    result = validate.run(write_csv("a,b\n" + "\n".join(rows) + "\n"), tmp_path / "v",
                          sample_rows=100, log=logs.append)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "float"}
    assert any("not conclusive for b;" in line for line in logs)
    assert not any("typing it again" in line for line in logs)
    assert result["valid_rows"] == 3_000
    table = pq.read_table(tmp_path / "v" / "part-00000.parquet")
    assert table.column("b").to_pylist()[7] == 7.5


def test_sample_that_settles_the_types_needs_no_second_pass(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    rows = [f"{i},{i}.5,name{i}" for i in range(2_000)]
    rows[1_500] = "1500,oops,x"  # outside the sample; 1 in 2000 fits the 99% rule
    logs: list[str] = []
    result = validate.run(write_csv("a,b,c\n" + "\n".join(rows) + "\n"), tmp_path / "v",
                          sample_rows=100, log=logs.append)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "float", "c": "string"}
    assert not any("not conclusive" in line for line in logs)
    assert result["quarantined_rows"] == 1


def test_a_sample_too_small_for_the_file_is_extended_not_redone(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # 10 sampled strings cannot show that more than 1% of 3,000 values fail the narrower
    # types (30 would be needed): about 30 more records are classified, not the whole file.
    rows = [f"{i},name{i}" for i in range(3_000)]
    logs: list[str] = []
    result = validate.run(write_csv("a,b\n" + "\n".join(rows) + "\n"), tmp_path / "v",
                          sample_rows=10, log=logs.append)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "string"}
    assert not any("not conclusive" in line for line in logs)
    assert validate._extension(
        ["integer", "string"], [{"integer": 10}, {"string": 10}], 10, 3_000,
        ([3_000, 3_000], [0, 0]), [1],
    ) == 28  # fmt: skip


def test_the_typed_values_rule_out_the_narrower_types_over_every_record(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # Each count is a lower bound of the values that fail a narrower type, from the typed
    # values alone: every integer and date fails the narrower types, a float only when it has
    # a fraction (2.0 may have been written 2), a timestamp only with a time of day.
    rows = [f"{i},{i}.{i % 2 * 5},2024-01-0{i % 9 + 1},2024-01-01 0{i % 3}:00:00,x{i}"
            for i in range(300)]  # fmt: skip
    src = write_csv("a,b,c,d,e\n" + "\n".join(rows) + "\n")
    types = ["integer", "float", "date", "timestamp", "string"]
    con = connect()
    try:
        validate._write_staging(con, src, types, [PLAIN] * 5, tmp_path, "r")
        rows_, nonnull, fails, ruled = validate._staging_stats(con, types)
    finally:
        con.close()
    assert (rows_, nonnull, fails) == (300, [300] * 5, [0] * 5)
    assert ruled == [
        {"boolean": 300},
        {"boolean": 300, "integer": 150},
        {"boolean": 300, "integer": 300, "float": 300},
        {"boolean": 300, "integer": 300, "float": 300, "date": 200},
        {},
    ]
    # 10 sampled integers cannot show that more than 1% of 3,000 values are no booleans; the
    # typed values of every record can.
    assert not validate._settled("integer", {"integer": 10}, 3_000, 0)
    assert validate._settled("integer", {"integer": 10}, 3_000, 0, {"boolean": 3_000})
    assert not validate._settled(
        "float", {"float": 10}, 3_000, 0, {"boolean": 3_000, "integer": 30}
    )
    assert validate._settled("float", {"float": 10}, 3_000, 0, {"boolean": 3_000, "integer": 31})


def test_only_the_columns_the_typed_values_cannot_settle_extend_the_sample(
    write_csv: WriteCsv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 sampled records settle no column of 3,000. The typed values settle a, b and c over
    # every record; only the text column d needs more records classified.
    rows = [f"{i},{i}.5,2024-01-01 10:00:0{i % 10},name{i}" for i in range(3_000)]
    asked: list[Any] = []
    counts = validate._class_counts

    def seen(*args: Any, **kw: Any) -> Any:
        asked.append(kw.get("only", args[5] if len(args) > 5 else None))
        return counts(*args, **kw)

    monkeypatch.setattr(validate, "_class_counts", seen)
    result = validate.run(write_csv("a,b,c,d\n" + "\n".join(rows) + "\n"), tmp_path / "v",
                          sample_rows=10, log=quiet)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "float", "c": "timestamp", "d": "string"}
    assert asked == [None, [3]]  # the sample, then its extension for d alone


def test_line_numbers_stay_exact_after_a_multiline_record(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    rows = _floats(300)
    rows[4] = '5,"two\nlines",5.5'
    rows[19] = "20,x,abc"
    out = tmp_path / "v"
    result = _run(write_csv("id,name,score\n" + "\n".join(rows) + "\n"), out)
    assert result["valid_rows"] == 299 and result["input_rows"] == 300
    assert _quarantine(out) == [(22, "column 'score': 'abc' is not a float", "20,x,abc")]


def test_broken_quoting_is_quarantined(write_csv: WriteCsv, tmp_path: Path) -> None:
    out = tmp_path / "v"
    result = _run(write_csv('a,b\n1,2\n3,"x"y\n4,5\n'), out)
    ((line, reason, raw),) = _quarantine(out)
    assert (line, raw) == (3, '3,"x"y') and reason.startswith("malformed quoting")
    assert result["valid_rows"] == 2


def test_broken_quoting_does_not_hide_the_later_records_from_inference(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    """DuckDB's ``ignore_errors`` read drops every record after one like ``"q"z``: the types
    were inferred from nothing (every column a string)."""
    out = tmp_path / "v"
    rows = "".join(f"{i},{i}.5\n" for i in range(300))
    result = _run(write_csv('a,b\n1,"q"z\n' + rows), out)
    assert result["columns"] == {"a": "integer", "b": "float"}
    assert (result["valid_rows"], result["quarantined_rows"]) == (300, 1)


def test_invalid_utf8_after_the_first_64_kib(tmp_path: Path) -> None:
    rows = [f"{i},x{i}" for i in range(20_000)]  # > 64 KiB: ingest's sniff does not see it
    path = tmp_path / "in.csv"
    path.write_bytes(("a,b\n" + "\n".join(rows) + "\n").encode() + b"20000,\xff\xfe\n20001,y\n")
    out = tmp_path / "v"
    result = _run(path, out)
    ((line, reason, _),) = _quarantine(out)
    assert (line, reason) == (20_002, "not valid UTF-8")
    assert result["valid_rows"] == 20_001


def test_mixed_line_ends_are_read_record_by_record(write_csv: WriteCsv, tmp_path: Path) -> None:
    out = tmp_path / "v"
    result = _run(write_csv("a,b\n1,2\r\n3,4\n5\r\n"), out)
    assert (result["input_rows"], result["valid_rows"]) == (3, 2)
    assert _quarantine(out) == [(4, "expected 2 fields, found 1", "5")]


def test_accounting_invariant_on_the_sample(pipeline: Pipeline) -> None:
    meta = json.loads((pipeline.validate / "validate.json").read_text())
    quarantined = _quarantine(pipeline.validate)
    valid = query(f"SELECT count(*) FROM '{pipeline.validate / 'part-*.parquet'}'")[0]
    assert meta["input_rows"] == meta["valid_rows"] + meta["quarantined_rows"]
    assert valid is not None and valid[0] == meta["valid_rows"]
    assert len(quarantined) == meta["quarantined_rows"]
    data_lines = pipeline.csv.read_text(encoding="utf-8").splitlines()[1:]
    assert meta["input_rows"] == len([x for x in data_lines if x])
    for line, _, raw in quarantined:  # line numbers and raw text point at the input
        assert data_lines[line - 2] == raw


def test_broken_accounting_is_an_invariant_error(
    write_csv: WriteCsv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = validate._write_quarantine

    def lossy(*args: Any) -> int:
        return int(real(*args)) - 1

    monkeypatch.setattr(validate, "_write_quarantine", lossy)
    with pytest.raises(validate.InvariantError, match="row accounting broken"):
        _run(write_csv("a,b\n1,2\n3\n"), tmp_path / "v")


@pytest.mark.parametrize("gap", [False, True])
def test_staging_rows_are_numbered_in_input_order_with_or_without_rowid_gaps(gap: bool) -> None:
    """Quarantine reasons and the rows kept are found by ``rid``, each staging row's position:
    the table's rowids when they have no gap, counted by a window when they do."""
    from flows.steps._csv import connect

    con = connect()
    try:
        con.execute(f"CREATE TEMP TABLE {validate.STAGE} AS SELECT range AS p0 FROM range(5)")
        if gap:
            con.execute(f"DELETE FROM {validate.STAGE} WHERE p0 = 1")
        stage, count = validate._numbered(con)
        rows = con.execute(f"SELECT rid, p0 FROM {stage} ORDER BY rid").fetchall()
    finally:
        con.close()
    assert rows == ([(0, 0), (1, 2), (2, 3), (3, 4)] if gap else [(i, i) for i in range(5)])
    assert ("row_number()" in stage) is gap
    assert count == len(rows)


ORDERS = Path(__file__).parents[1] / "fixtures" / "orders.csv"


def test_text_columns_a_schema_line_would_type_are_reported_with_the_line(tmp_path: Path) -> None:
    result = _run(ORDERS, tmp_path / "v")
    assert [(f["column"], f["schema"], f["values"], f["would_type"]) for f in result["fallbacks"]] == [
        ("order_date", "order_date: date format=%m/%d/%Y", 240, 240),
        ("unit_price", "unit_price: float thousands=, currency=$", 231, 231),
        ("amount", "amount: float thousands=,", 233, 233),
    ]  # fmt: skip
    declared = tmp_path / "s.yaml"
    declared.write_text("unit_price: string\n", encoding="utf-8")  # the user chose: not reported
    result = _run(ORDERS, tmp_path / "v2", schema_path=declared)
    assert [f["column"] for f in result["fallbacks"]] == ["order_date", "amount"]


def test_a_column_of_numbers_with_a_few_words_says_how_many_would_be_quarantined(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    values = [str(i) for i in range(190)] + ["abc"] * 6 + ["n/a"] * 4
    rows = "".join(f"{v},{i},{i}\n" for i, v in enumerate(values))
    result = _run(write_csv("qty,ratio,n\n" + rows), tmp_path / "v")
    (entry,) = result["fallbacks"]
    assert (entry["column"], entry["schema"]) == ("qty", "qty: integer")
    assert entry["why"].startswith("95% of its values are integers, and inference needs 99%")
    assert "(e.g. 'abc' is not one of them)" in entry["why"]
    assert entry["why"].endswith("with the line, 10 of its 200 values would be quarantined")


def test_a_second_reading_with_other_values_is_named(write_csv: WriteCsv, tmp_path: Path) -> None:
    rows = "".join(f'"{i},{i * 7 % 1000:03d}",{i}\n' for i in range(1, 200))
    result = _run(write_csv("total,n\n" + rows), tmp_path / "v")
    (entry,) = result["fallbacks"]
    assert entry["schema"] == "total: integer thousands=,"
    assert entry["other"].startswith("total: float") and "decimal=," in entry["other"]
    assert f"also reads as another value with '{entry['other']}'" in entry["why"]


def test_codes_and_names_are_text_and_not_reported(write_csv: WriteCsv, tmp_path: Path) -> None:
    rows = "".join(f"0{i:04d},Person {i},{i}\n" for i in range(300))
    result = _run(write_csv("zip,name,n\n" + rows), tmp_path / "v")
    assert result["columns"]["zip"] == "string" and result["fallbacks"] == []


def test_a_record_over_the_chosen_line_limit_is_read_with_the_full_limit(tmp_path: Path) -> None:
    # Should the scan's bound of the longest record ever be too low, DuckDB refuses the record
    # as longer than the small limit; the typed pass is then repeated with the 64 MiB limit,
    # so the record is kept (not quarantined as longer than 64 MiB).
    from flows.steps._csv import connect

    big = "x" * (3 << 20)
    src = tmp_path / "in.csv"
    src.write_text("id,v\n" + "".join(f"{i},{big if i == 500 else 'abc'}\n" for i in range(1000)))
    (tmp_path / "w").mkdir()
    con = connect(tmp_path / "spill")
    try:
        got = validate._typed(
            con, src, ["id", "v"], {}, 1000, tmp_path / "w", quiet, lambda wait: (1000, 0)
        )
        assert got == (["integer", "string"], "rej1b", 1000)
        assert query_con(con, "SELECT count(*), max(strlen(p1)) FROM staging") == [(1000, 3 << 20)]
    finally:
        con.close()


def test_a_sample_with_a_record_over_the_default_line_limit_is_read_with_the_full_limit(
    tmp_path: Path,
) -> None:
    # The sample is read with DuckDB's default line limit (2 MiB). Two of its 100 records hold a
    # 3 MiB text in v: were they left out of the sample, v would look like an integer column, and
    # the two would be quarantined although 2% of v's values are not integers (the 99% rule).
    big = "x" * (3 << 20)
    src = tmp_path / "in.csv"
    src.write_text("id,v\n" + "".join(f"{i},{big if i in (7, 60) else i}\n" for i in range(100)))
    result = _run(src, tmp_path / "v", sample_rows=100)
    assert result["columns"] == {"id": "integer", "v": "string"}
    assert (result["valid_rows"], result["quarantined_rows"]) == (100, 0)


def test_a_year_of_five_digits_or_infinity_is_not_a_date(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # DuckDB reads 10000-01-01 and -infinity as dates and prints them back as written; the rules
    # (and Python's dates) have years 1 to 9999: the values are quarantined, not stored as dates.
    rows = [f"{i},2024-01-{i % 28 + 1:02d},2024-01-01 10:00:{i % 60:02d}" for i in range(300)]
    rows[100] = "100,10000-01-01,2024-01-01 10:00:00"
    rows[150] = "150,-infinity,2024-01-01 10:00:00"
    rows[200] = "200,2024-01-01,10000-01-01 10:00:00"
    out = tmp_path / "v"
    result = _run(write_csv("id,d,ts\n" + "\n".join(rows) + "\n"), out)
    assert result["columns"] == {"id": "integer", "d": "date", "ts": "timestamp"}
    assert _quarantine(out) == [
        (102, "column 'd': '10000-01-01' is not a date", rows[100]),
        (152, "column 'd': '-infinity' is not a date", rows[150]),
        (202, "column 'ts': '10000-01-01 10:00:00' is not a timestamp", rows[200]),
    ]


@pytest.mark.parametrize("classify", [False, True])
def test_the_typed_pass_plans_no_join(classify: bool) -> None:
    # The staging rows' positions are their records' (``_numbered``): a join in the typed pass
    # may deliver rows out of input order, and a quarantine reason then lands on another record.
    # DuckDB plans an IN list of seven constants in this query as a MARK join: at 10M rows one
    # block of rows came back out of place and reasons went to the wrong lines.
    import duckdb

    from flows.steps.formats import PLAIN, parse_options
    from flows.steps.types import TYPES

    types = [*TYPES, "integer", "float", "date", "timestamp"]
    formats = [PLAIN] * len(TYPES) + [
        parse_options("integer", ["thousands=,"]),
        parse_options("float", ["thousands=,", "currency=$"]),
        parse_options("date", ["format=%m/%d/%Y"]),
        parse_options("timestamp", ["format=%m/%d/%Y %H:%M"]),
    ]
    n = len(types)
    con = duckdb.connect()
    values = ", ".join(f"'x' AS c{i}" for i in range(n))
    con.execute(f"CREATE TABLE src AS SELECT {values}")
    select = validate._staging_select(
        types, formats, range(n), "src", classify=range(n) if classify else ()
    )
    plan = "\n".join(str(row[1]) for row in con.execute(f"EXPLAIN {select}").fetchall())
    assert "JOIN" not in plan and "MARK" not in plan, plan


def test_a_reason_naming_a_value_its_record_does_not_hold_is_an_invariant_error(
    tmp_path: Path,
) -> None:
    # The quarantine checks each mismatch against its record's bytes: a typed row matched to
    # the wrong record stops the step instead of writing a reason on the wrong line.
    from flows.steps import _records

    src = tmp_path / "in.csv"
    src.write_text('id,v\n1,abc\n2,"say ""hi"""\n3,7\n')
    scan = _records.scan(src, 2)
    target = tmp_path / "quarantine.csv"
    reasons = {1: "column 'v': 'abc' is not an integer", 2: "column 'v': ... is not an integer"}
    assert validate._write_quarantine(scan, reasons, target, {1: "abc", 2: 'say "hi"'}) == 2
    with pytest.raises(validate.InvariantError, match="line 2: its reason names 'say \"hi\"'"):
        validate._write_quarantine(scan, reasons, target, {1: 'say "hi"', 2: "abc"})


def query_con(con: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in con.execute(sql).fetchall()]


def test_a_column_the_sample_cannot_settle_is_classified_in_the_typed_pass(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # The count of records shows before the typed pass that b's 3 decimals in 100 sampled
    # records cannot rule out integer for 3,000 values (more than 30 failures needed) and that
    # an extension would take more than a quarter of the file: the typed pass classifies b's
    # values too, and its classes are the whole file's, with no second read.
    rows = [f"{i},{i}.5" if i % 40 == 7 else f"{i},{i}" for i in range(3_000)]
    logs: list[str] = []
    result = validate.run(write_csv("a,b\n" + "\n".join(rows) + "\n"), tmp_path / "v",
                          sample_rows=100, log=logs.append)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "float"}
    assert any("not conclusive for b; classifying them all" in line for line in logs)
    assert not any("classifying the rest" in line or "typing it again" in line for line in logs)
    assert result["valid_rows"] == 3_000


def test_whole_file_classes_from_the_typed_pass_change_a_type_exactly(
    write_csv: WriteCsv, tmp_path: Path
) -> None:
    # 3 decimals in the 100 sampled records make b a float there; over the file they are 3 of
    # 3,000 values (0.1%), so b is an integer by the 99% rule and the 3 are quarantined.
    rows = [f"{i},{i}.5" if i in (7, 47, 87) else f"{i},{i}" for i in range(3_000)]
    logs: list[str] = []
    out = tmp_path / "v"
    result = validate.run(write_csv("a,b\n" + "\n".join(rows) + "\n"), out,
                          sample_rows=100, log=logs.append)  # fmt: skip
    assert result["columns"] == {"a": "integer", "b": "integer"}
    assert any("classifying them all" in line for line in logs)
    assert any("typing it again" in line for line in logs)
    assert [line for line, _, _ in _quarantine(out)] == [9, 49, 89]
    assert result["valid_rows"] == 2_997
