"""report: the final folder layout and what the step returns (summary.json is the flow's)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flows.steps import report
from flows.steps._io import DataError

from .conftest import PARTITIONS, Pipeline, quiet


def test_layout_and_summary(pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "final"
    result = report.run(pipeline.validate, pipeline.aggregate, pipeline.parts, out, log=quiet)
    parts = [f"part-{i:05d}.parquet" for i in range(PARTITIONS)]
    assert sorted(p.name for p in (out / "data").iterdir()) == parts
    assert sorted(p.name for p in out.iterdir()) == [
        "aggregates.csv",
        "data",
        "quarantine.csv",
    ]
    summary = result
    meta = json.loads((pipeline.validate / "validate.json").read_text())
    assert (
        summary["input_rows"]
        == meta["input_rows"]
        == summary["valid_rows"] + summary["quarantined_rows"]
    )
    assert summary["group_by"] == "category" and summary["columns"] == meta["columns"]
    assert summary["files"] == {
        "aggregates": "aggregates.csv",
        "quarantine": "quarantine.csv",
        "data": "data",
        "parts": [f"data/{p}" for p in parts],
    }
    src = pipeline.aggregate / "aggregates.csv"
    assert (out / "aggregates.csv").read_bytes() == src.read_bytes()
    assert (out / "aggregates.csv").stat().st_ino == src.stat().st_ino  # hard link
    report.run(pipeline.validate, pipeline.aggregate, pipeline.parts, out, log=quiet)  # re-run


def test_part_folders_may_be_symlinks(pipeline: Pipeline, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(PARTITIONS):
        (parts / f"p{i}").symlink_to(pipeline.parts / f"p{i}", target_is_directory=True)
    (parts / "loop").symlink_to(parts, target_is_directory=True)  # visited once, no endless walk
    result = report.run(pipeline.validate, pipeline.aggregate, parts, tmp_path / "o", log=quiet)
    assert len(result["files"]["parts"]) == PARTITIONS


def test_copies_when_links_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.txt"
    src.write_text("x")

    def no_link(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    assert report.link_or_copy(src, tmp_path / "b.txt") == "copy"
    assert (tmp_path / "b.txt").read_text() == "x"


def test_missing_inputs(pipeline: Pipeline, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"validate\.json not found"):
        report.run(tmp_path, pipeline.aggregate, pipeline.parts, tmp_path / "o", log=quiet)
    with pytest.raises(DataError, match=r"no \*\.parquet file"):
        report.run(pipeline.validate, pipeline.aggregate, tmp_path, tmp_path / "o", log=quiet)
