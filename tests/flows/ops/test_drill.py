"""The self-healing drill against the real pipeline: every scenario must pass.

Runs on the local runner and through the Dagger runner against the loopback stand-in engine (exec
mode: a fake at the network boundary that runs each withExec on the host; no real engine can run
here). Faults are injected at the runner boundary, so the real retry, breaker and cache code heals.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from flows.ops.drill import SCENARIOS, render_report, self_healing_drill
from tests.fakes import exec_standin_engine

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def assert_all_passed(results: list, report_dir: Path) -> None:  # type: ignore[type-arg]
    failed = [f"{r.scenario}: {r.observed}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    report = (report_dir / "self-healing-report.md").read_text(encoding="utf-8")
    assert f"{len(results)} of {len(results)} scenarios passed" in report


async def test_drill_passes_on_the_local_runner(prefect_api_url: str, tmp_path: Path) -> None:
    results = await self_healing_drill(str(tmp_path), backend="local", rows=600)
    assert {r.scenario for r in results} == {s.name for s in SCENARIOS} | {"resume after SIGKILL"}
    assert_all_passed(results, tmp_path)


async def test_drill_passes_through_dagger_against_the_stand_in_engine(
    prefect_api_url: str, tmp_path: Path
) -> None:
    with exec_standin_engine() as engine:
        results = await self_healing_drill(str(tmp_path), backend="dagger", rows=600)
    assert_all_passed(results, tmp_path)
    assert "Backend: **dagger**" in render_report(results, "dagger")
    # Each step's declared requirements, pinned to the flow's versions, became its image layer.
    installed = {tuple(r.args[r.args.index("--root-user-action=ignore") + 1 :])
                 for r in engine.layer_requests}  # fmt: skip
    duckdb, pyyaml = f"duckdb=={version('duckdb')}", f"pyyaml=={version('pyyaml')}"
    assert installed == {(duckdb,), (duckdb, pyyaml)}
