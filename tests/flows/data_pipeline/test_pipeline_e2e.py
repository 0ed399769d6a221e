"""The whole pipeline end to end through Prefect on the local runner (no mocks, real DuckDB steps).

Checks the accounting invariant, quarantine reasons and line numbers, aggregates against an
independent pure-Python computation, the output folder layout, and a re-run coming back Cached.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flows.data_pipeline.flow import data_pipeline

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
NULLS = {"", "NA", "N/A", "null", "NULL", "None"}


def independent_aggregates(
    csv_path: Path, quarantined: set[int], group_by: str, numeric: list[str]
) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        for line_no, row in enumerate(reader, start=2):
            if line_no in quarantined:
                continue
            record = dict(zip(header, row, strict=True))
            key = record[group_by].strip()
            key = "" if key in NULLS else key
            counts[key] += 1
            for col in numeric:
                value = record[col].strip()
                if value not in NULLS:
                    groups[key][col].append(float(value))
    out: dict[str, dict[str, float]] = {}
    for key, n in counts.items():
        row: dict[str, float] = {"row_count": n}
        for col in numeric:
            values = groups[key][col]
            if values:
                row[f"{col}_min"], row[f"{col}_max"] = min(values), max(values)
                row[f"{col}_mean"] = sum(values) / len(values)
        out[key] = row
    return out


def read_aggregates(path: Path, group_by: str) -> dict[str, dict[str, float]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            row[group_by]: {k: float(v) for k, v in row.items() if k != group_by and v != ""}
            for row in csv.DictReader(handle)
        }


@pytest.fixture(scope="module")
def sample_run(prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("e2e")
    kwargs: dict[str, Any] = {
        "rows": 5000,
        "seed": 7,
        "partitions": 2,
        "output": str(base / "out"),
        "work_dir": str(base / "work"),
        "backend": "local",
    }
    import asyncio

    first = asyncio.run(data_pipeline(**kwargs))
    second = asyncio.run(data_pipeline(**kwargs))
    return {"base": base, "first": first, "second": second, "kwargs": kwargs}


class TestSampleRun:
    def test_accounting_invariant_holds(self, sample_run: dict[str, Any]) -> None:
        s = sample_run["first"]
        assert s["input_rows"] == 5000
        assert s["input_rows"] == s["valid_rows"] + s["quarantined_rows"]
        assert 0 < s["quarantined_rows"] < 100

    def test_output_folder_holds_every_file(self, sample_run: dict[str, Any]) -> None:
        out = Path(sample_run["kwargs"]["output"])
        summary = json.loads((out / "summary.json").read_text())
        assert summary == sample_run["second"]
        for key in (
            "input_rows",
            "valid_rows",
            "quarantined_rows",
            "backend",
            "flow_run_id",
            "group_by",
            "steps",
        ):
            assert key in summary
        assert summary["backend"] == "local" and summary["group_by"] == "category"
        assert (out / "aggregates.csv").is_file() and (out / "quarantine.csv").is_file()
        assert sorted(p.suffix for p in (out / "data").iterdir()) == [".parquet", ".parquet"]

    def test_steps_listed_with_prefect_states(self, sample_run: dict[str, Any]) -> None:
        names = [s["name"] for s in sample_run["first"]["steps"]]
        assert names == ["ingest", "validate", "transform-0", "transform-1", "aggregate", "report"]
        assert {s["state"] for s in sample_run["first"]["steps"]} == {"Completed"}

    def test_rerun_comes_back_cached(self, sample_run: dict[str, Any]) -> None:
        states = {s["name"]: s["state"] for s in sample_run["second"]["steps"]}
        assert set(states.values()) == {"Cached"}, states
        assert sample_run["second"]["flow_run_id"] != sample_run["first"]["flow_run_id"]

    def test_quarantine_rows_carry_reason_line_and_raw_text(
        self, sample_run: dict[str, Any]
    ) -> None:
        out = Path(sample_run["kwargs"]["output"])
        source = next(Path(sample_run["kwargs"]["work_dir"]).glob("ingest-*/input.csv"))
        lines = source.read_text(encoding="utf-8").splitlines()
        with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == sample_run["first"]["quarantined_rows"]
        reasons = " ".join(r["reason"] for r in rows)
        assert "fields" in reasons and "is not a" in reasons
        for row in rows:
            assert lines[int(row["line"]) - 1] == row["raw"]

    def test_aggregates_match_an_independent_computation(self, sample_run: dict[str, Any]) -> None:
        out = Path(sample_run["kwargs"]["output"])
        source = next(Path(sample_run["kwargs"]["work_dir"]).glob("ingest-*/input.csv"))
        with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
            quarantined = {int(r["line"]) for r in csv.DictReader(handle)}
        numeric = [
            c for c, t in sample_run["first"]["columns"].items() if t in ("integer", "float")
        ]
        expected = independent_aggregates(source, quarantined, "category", numeric)
        actual = read_aggregates(out / "aggregates.csv", "category")
        assert actual.keys() == expected.keys()
        for key, row in expected.items():
            assert actual[key].keys() == row.keys()
            for col, value in row.items():
                assert math.isclose(actual[key][col], value, rel_tol=1e-9), (key, col)


def test_cli_default_run_is_clean_and_exits_0(prefect_api_url: str, tmp_path: Path) -> None:
    """The documented command against a Prefect server: a summary, no traceback, no ERROR line."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "AIOP_BACKEND": "local"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.data_pipeline",
            "--rows",
            "2000",
            "--output",
            str(tmp_path / "o"),
            "--work-dir",
            str(tmp_path / "w"),
            "--summarize",  # no engine here: skipped with one plain line, the run still succeeds
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert "Traceback" not in console and "| ERROR" not in console
    assert "Pipeline finished: 2000 rows in" in done.stdout
    # One link to the run, on the V2 UI where its charts render (V1 links show them as code).
    base = prefect_api_url.removesuffix("/api")
    (link,) = [x for x in done.stdout.splitlines() if x.startswith("Flow run:")]
    assert link.split()[-1].startswith(f"{base}/v2/runs/flow-run/"), link
    view_at = [x for x in console.splitlines() if "View at " in x]
    assert len(view_at) == 1 and view_at[0].endswith(link.split()[-1]), view_at
    assert "/flow-runs/flow-run/" not in console and f"{base}/runs/" not in console, console
    assert (tmp_path / "o" / "summary.json").is_file()
    # --summarize could not run: one log line says why, and the final summary says so too.
    lines = console.splitlines()
    logged = [x for x in lines if "--summarize skipped" in x and not x.startswith("Summary.md")]
    assert len(logged) == 1, console
    (final,) = [x for x in done.stdout.splitlines() if x.startswith("Summary.md:")]
    assert final.startswith("Summary.md: not written: --summarize skipped (the results are"), final
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))
    assert summary["summarize"]["written"] is False and summary["summarize"]["path"] is None
    assert summary["summarize"]["reason"] == final.removeprefix("Summary.md: not written: ")
    assert not (tmp_path / "o" / "summary.md").exists()


def test_user_csv_with_bad_rows_is_quarantined_with_line_numbers(
    prefect_api_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "orders.csv"
    data.write_text(
        "region,amount,qty,day\n"
        "north,10.5,1,2024-01-01\n"
        "south,abc,2,2024-01-02\n"
        "north,3.25,3\n"
        "south,7,NA,2024-01-04\n"
        "north,1,1,2024-02-30\n"
        "south,2.5,4,2024-01-06\n",
        encoding="utf-8",
    )
    # Six rows are too few for the 99% inference rule to call 'amount' a float: declare the types.
    schema = tmp_path / "schema.yaml"
    schema.write_text("amount: float\nqty: integer  # units\nday: date\n", encoding="utf-8")
    import asyncio

    summary = asyncio.run(
        data_pipeline(
            input=str(data),
            schema_file=str(schema),
            output=str(tmp_path / "out"),
            work_dir=str(tmp_path / "work"),
            backend="local",
            partitions=1,
            group_by="region",
        )
    )
    assert (summary["input_rows"], summary["valid_rows"], summary["quarantined_rows"]) == (6, 3, 3)
    with (tmp_path / "out" / "quarantine.csv").open(newline="") as handle:
        rows = {int(r["line"]): r for r in csv.DictReader(handle)}
    assert sorted(rows) == [3, 4, 6]
    assert "amount" in rows[3]["reason"] and rows[3]["raw"] == "south,abc,2,2024-01-02"
    assert "fields" in rows[4]["reason"]
    assert "day" in rows[6]["reason"]


class TestHistory:
    async def test_history_lists_both_runs_with_their_rows(
        self, sample_run: dict[str, Any]
    ) -> None:
        from flows.ui.history import read_history, render_history

        records = await read_history("data-pipeline", last=20)
        mine = {r.name: r for r in records if r.input_rows == 5000}
        assert len(mine) >= 2
        assert all(r.state == "Completed" and r.duration_s is not None for r in mine.values())
        assert "| name | state |" in render_history(records)
        assert render_history([], markdown=False) == "No runs recorded yet."

    def test_current_run_is_shown_finished_not_running(self) -> None:
        from datetime import UTC, datetime, timedelta

        from flows.ui.history import current_record

        started = datetime.now(UTC) - timedelta(seconds=3)
        summary = {"input_rows": 10, "valid_rows": 9, "quarantined_rows": 1, "backend": "local",
                   "steps": [{"attempts": 2}, {"attempts": 1}]}  # fmt: skip
        record = current_record(summary, "brave-otter", started, "Completed")
        assert record.state == "Completed" and record.retries == 1
        assert record.duration_s is not None and record.duration_s >= 3


def test_more_partitions_than_cores_run_as_one_step_per_core(
    prefect_api_url: str, tmp_path: Path
) -> None:
    import asyncio

    from flows.data_pipeline.options import partition_runs, step_slots

    slots = step_slots("local")
    assert slots is not None
    k = 2 * slots + 1  # more partitions than cores: each step writes a run of them
    kwargs: dict[str, Any] = {
        "rows": 300,
        "seed": 3,
        "partitions": k,
        "output": str(tmp_path / "out"),
        "work_dir": str(tmp_path / "work"),
        "backend": "local",
    }
    summary = asyncio.run(data_pipeline(**kwargs))
    transforms = [s["name"] for s in summary["steps"] if s["name"].startswith("transform")]
    assert transforms == [f"transform-{j}" for j in range(slots)]
    assert len(partition_runs(k, slots)) == slots
    data = Path(kwargs["output"]) / "data"
    assert sorted(p.name for p in data.iterdir()) == [f"part-{i:05d}.parquet" for i in range(k)]
    import duckdb

    rows = duckdb.execute(f"SELECT count(*) FROM '{data}/*.parquet'").fetchall()
    assert rows == [(summary["valid_rows"],)]
