"""Hostile input files through the whole main job (``python -m flows.data_pipeline``).

One run over a file with CR line ends, a BOM, and column names that look like options,
internal columns, quotes and commas: every record is counted, values keep their text,
and a name never becomes an argument of a step.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


def test_hostile_names_and_cr_line_ends_end_to_end(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    option = f"--output={evil}"
    header = f'\ufeffgrp,"a,b","x""y",{option},file_row_number,_fails,zip,id'
    rows = [f"g{i % 3},{i},{i}.5,k{i % 4},{i},s{i},0213{i % 10},{10**22 + i}" for i in range(120)]
    rows[10] = "g1,10,oops"  # a short record: quarantined at its physical line, 12
    src = tmp_path / "in.csv"
    src.write_bytes(("\r".join([header, *rows]) + "\r").encode())
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", "--input", str(src), "--backend", "local",
         "--partitions", "1", "--output", str(out), "--work-dir", str(tmp_path / "w"),
         f"--group-by={option}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not evil.exists()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["input_rows"], summary["valid_rows"], summary["quarantined_rows"]) == (
        120, 119, 1,
    )  # fmt: skip
    assert summary["columns"] == {
        "grp": "string", "a,b": "integer", 'x"y': "float", option: "string",
        "file_row_number": "integer", "_fails": "string", "zip": "string", "id": "string",
    }  # fmt: skip
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1:] == [["12", "expected 8 fields, found 3", "g1,10,oops"]]
    with (out / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0][:5] == [option, "row_count", "a,b_min", "a,b_max", "a,b_mean"]
    assert [r[0] for r in table[1:]] == ["k0", "k1", "k2", "k3"]
    assert sum(int(r[1]) for r in table[1:]) == 119
