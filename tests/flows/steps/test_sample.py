"""The sample generator: deterministic, realistic types, a known malformed fraction."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import re
from pathlib import Path

from flows.steps import sample
from flows.steps.group_by import choose_group_by

from .conftest import SAMPLE_ROWS, Pipeline


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    size = sample.generate(a, 3_000, 5)
    sample.generate(b, 3_000, 5, threads=1)
    sample.generate(c, 3_000, 6)
    assert size == a.stat().st_size
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert not list(tmp_path.glob("*.tmp"))


def test_zero_rows_is_just_the_header(tmp_path: Path) -> None:
    sample.generate(tmp_path / "h.csv", 0, 1)
    assert (tmp_path / "h.csv").read_text() == ",".join(sample.COLUMNS) + "\n"


NULLS = {"", "NA", "N/A", "null", "NULL", "None"}


def _malformed(row: list[str]) -> bool:
    """Independent check of the four kinds of malformed rows."""
    if len(row) != len(sample.COLUMNS):
        return True
    rec = dict(zip(sample.COLUMNS, row, strict=True))
    if rec["amount"] not in NULLS and not re.fullmatch(r"\d+\.\d\d", rec["amount"]):
        return True
    if rec["signup_date"] not in NULLS:
        try:
            dt.date.fromisoformat(rec["signup_date"])
        except ValueError:
            return True
    return False


def test_known_malformed_fraction_and_realistic_values(pipeline: Pipeline) -> None:
    with pipeline.csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == list(sample.COLUMNS)
        rows = list(reader)
    assert len(rows) == SAMPLE_ROWS
    bad = [r for r in rows if _malformed(r)]
    meta = sample.count_malformed(SAMPLE_ROWS, 11)
    assert len(bad) == meta
    assert 0.003 < meta / SAMPLE_ROWS < 0.008  # about 0.5%
    good = [dict(zip(sample.COLUMNS, r, strict=True)) for r in rows if not _malformed(r)]
    ids = [int(r["id"]) for r in good]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert {r["category"] for r in good} - NULLS == set(sample.CATEGORIES)
    assert {r["active"] for r in good} - NULLS == {"true", "false"}
    assert any("," in r["customer"] for r in good)  # some quoted names
    for r in good[:500]:
        if r["event_ts"] not in NULLS:
            dt.datetime.strptime(r["event_ts"], "%Y-%m-%d %H:%M:%S")
        if r["quantity"] not in NULLS:
            assert 1 <= int(r["quantity"]) <= 20
    null_share = sum(r["amount"] in NULLS for r in good) / len(good)
    assert 0.002 < null_share < 0.03


def test_validate_infers_the_intended_types(pipeline: Pipeline) -> None:
    import json

    meta = json.loads((pipeline.validate / "validate.json").read_text())
    assert meta["columns"] == {
        "id": "integer",
        "customer": "string",
        "category": "string",
        "amount": "float",
        "quantity": "integer",
        "active": "boolean",
        "signup_date": "date",
        "event_ts": "timestamp",
    }
    assert meta["fallbacks"] == [] and meta["formats"] == {}
    assert choose_group_by(pipeline.csv).column == "category"
    ingest = json.loads((pipeline.ingest / "ingest.json").read_text())
    assert meta["quarantined_rows"] == ingest["malformed_rows"]  # exactly the malformed rows
