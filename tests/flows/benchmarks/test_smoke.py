"""``aiop bench`` runs end to end: a smoke test, never a timing assertion.

One run of the command as a user types it, against the test session's Prefect server
(``--api-url``, so no server of its own is started) with a 2,000-row input: the throughput
benchmark runs the main job through the agent manager and the DuckDB script, compares their
outputs, and the cached re-run benchmark re-runs the job. What must hold on any machine: the
table is printed, the JSON holds both benchmarks with their rows, and the outputs agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.prefect
def test_benchmark_command_runs_the_pipeline_and_the_script_and_writes_json(
    tmp_path: Path, prefect_api_url: str
) -> None:
    report = tmp_path / "bench.json"
    command = [
        *(sys.executable, "-m", "flows.cli", "bench", "--quick", "--api-url", prefect_api_url),
        *("--rows", "2000", "--only", "throughput,cached_rerun", "--json", str(report)),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "benchmark" in done.stdout and "met?" in done.stdout
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["meta"]["mode"] == "quick"
    assert data["failures"] == []
    assert set(data["benchmarks"]) == {"throughput", "cached_rerun"}
    size = data["benchmarks"]["throughput"]["sizes"]["2000"]
    assert size["baseline_agrees"], size["mismatches"]
    assert size["counts"]["input_rows"] == 2000
    assert data["benchmarks"]["cached_rerun"]["rows"], "cached_rerun has no table row"


@pytest.mark.prefect
def test_the_tracing_benchmark_runs_both_sides_and_counts_the_spans_it_received(
    tmp_path: Path, prefect_api_url: str
) -> None:
    report = tmp_path / "bench.json"
    command = [
        *(sys.executable, "-m", "flows.cli", "bench", "--quick", "--api-url", prefect_api_url),
        *("--only", "tracing", "--json", str(report)),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "tracing: a step traced (OTLP/HTTP) vs not" in done.stdout
    data = json.loads(report.read_text(encoding="utf-8"))["benchmarks"]["tracing"]
    steps = data["rounds"] * data["steps_per_round"]
    assert len(data["raw_s"]["off"]) == len(data["raw_s"]["on"]) == steps
    # every traced step sent its step, task-run and attempt spans, plus one flow span per run
    assert data["spans_received"] == 3 * steps + data["rounds"]


def test_rows_option_refuses_what_is_not_a_row_count() -> None:
    from flows.benchmarks.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--rows", "10k"])
    assert exit_info.value.code == 2
