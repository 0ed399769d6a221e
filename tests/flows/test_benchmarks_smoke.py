"""``python -m flows.benchmarks --quick`` runs end to end: a smoke test, never a timing assertion.

The numbers depend on the machine; what must hold anywhere is that every benchmark runs, the table
is printed and the JSON holds every benchmark's key with its table rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.benchmarks import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmarks_run_and_write_every_key(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "flows.benchmarks", "--quick", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "benchmark" in done.stdout and "met?" in done.stdout
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["meta"]["mode"] == "quick"
    assert data["failures"] == []
    assert set(data["benchmarks"]) == set(BENCHMARKS)
    for key in BENCHMARKS:
        assert data["benchmarks"][key]["rows"], f"{key} has no table row"
    assert data["benchmarks"]["cold_start"]["skipped"] is True
