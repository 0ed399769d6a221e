"""The real public tables of the benchmarks and the plain DuckDB script, on real data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from flows.benchmarks import plain_script, real_data
from flows.benchmarks.real_data_bench import TARGETS, _rows


def test_diamonds_are_written_once_into_the_given_folder(tmp_path: Path) -> None:
    path = real_data.prepare("diamonds", tmp_path)
    assert path.parent == tmp_path
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        first = next(reader)
        rest = sum(1 for _ in reader)
    assert header == ["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"]
    assert first == ["0.23", "Ideal", "E", "SI2", "61.5", "55", "326", "3.95", "3.98", "2.43"]
    assert 1 + rest == 53_940 * real_data.DATASETS["diamonds"].copies
    mtime = path.stat().st_mtime_ns
    assert real_data.prepare("diamonds", tmp_path) == path and path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left


def test_plain_script_reads_types_writes_and_aggregates(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("g,n,x\na,1,1.5\nb,NA,2.5\na,3,NA\nb,4,x\n", encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "flows.benchmarks.plain_script", "--input", str(src),
         "--output", str(out), "--group-by", "g"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 4 and summary["columns"]["n"] == "BIGINT"
    assert summary["columns"]["x"] == "VARCHAR"  # DuckDB's own detection: 'x' makes it text
    with (out / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["g"], r["row_count"], r["n_min"], r["n_max"]) for r in rows] == [
        ("a", "2", "1", "3"),
        ("b", "2", "4", "4"),
    ]
    typed = plain_script.typed_read(src, tmp_path / "typed")
    assert typed["rows"] == 4 and (tmp_path / "typed" / "valid.parquet").is_file()


def test_verdicts_follow_the_targets() -> None:
    data = {
        "dataset": "t",
        "rows": 1_000_000,
        "columns": 5,
        "seconds": {"pipeline": 5.0, "plain": 2.0, "rules": 4.0, "validate": 3.0, "typed": 1.0},
        "peak_bytes": {"pipeline": 2, "plain": 3},
        "flow_process_bytes": 1,
        "pipeline_vs_plain": 2.5,
        "pipeline_vs_rules": 1.25,
        "validate_vs_typed_read": 3.0,
        "split": {
            "validate_s": 3.0,
            "transform_slowest_s": 0.5,
            "other_steps_s": 0.5,
            "orchestration_s": 1.0,
        },
    }
    met = [row.met for row in _rows(data) if row.met is not None]
    assert met == [True, True, False]
    assert TARGETS == {"pipeline_vs_plain": 2.5, "validate_vs_typed_read": 2.0}


def test_validate_phases_runs_the_steps_passes(tmp_path: Path) -> None:
    from flows.benchmarks import validate_phases

    src = tmp_path / "in.csv"
    src.write_text("a,b\n" + "".join(f"{i},{i}.5\n" for i in range(500)), encoding="utf-8")
    took = validate_phases.phases(src, repeat=1)
    assert list(took) == [
        "record_scan", "sample_classes", "typed_pass", "valid_parquet", "duckdb_typed_read",
    ]  # fmt: skip
    assert all(t["wall_s"] >= 0 and t["cpu_s"] >= 0 for t in took.values())
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]  # nothing left beside the input
