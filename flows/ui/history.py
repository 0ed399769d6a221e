"""Execution history: how this run compares with the previous ones.

Each pipeline run publishes a one-row table artifact ``<flow>-metrics`` (rows, retries, duration,
backend). :func:`read_history` reads the last runs of a flow from the Prefect API together with
those metrics; the pipeline publishes them as the ``<flow>-history`` markdown artifact (a table and
an xychart), and ``aiop history [--flow NAME] [--last N]`` prints the same table, after
setting ``Crashed`` the runs of this host whose process died (:mod:`flows.server.crashed_runs`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flows.steps.pipeline import VALIDATE, declared
from flows.ui.charts import bar_chart

if TYPE_CHECKING:
    from flows.runtime.outcome import StepOutcome

__all__ = [
    "RunRecord",
    "publish_history",
    "publish_metrics",
    "read_history",
    "read_listing",
    "render_history",
    "rows_so_far",
    "step_rows",
]

DEFAULT_FLOW = "data-pipeline"


@dataclass(frozen=True)
class RunRecord:
    """One past run as the history shows it."""

    name: str
    state: str
    started: str
    duration_s: float | None
    input_rows: int | None
    valid_rows: int | None
    quarantined_rows: int | None
    retries: int | None
    backend: str | None


def current_record(summary: dict[str, Any], name: str, started: Any, state: str) -> RunRecord:
    """This run as the history shows it, from its summary (its API state is still Running)."""
    from datetime import UTC, datetime

    duration = (datetime.now(UTC) - started).total_seconds() if started is not None else None
    steps = summary.get("steps", [])
    return RunRecord(
        name=name,
        state=state,
        started=started.strftime("%Y-%m-%d %H:%M:%S") if started is not None else "",
        duration_s=round(duration, 2) if duration is not None else None,
        input_rows=summary.get("input_rows"),
        valid_rows=summary.get("valid_rows"),
        quarantined_rows=summary.get("quarantined_rows"),
        retries=sum(max(0, int(s.get("attempts", 0)) - 1) for s in steps),
        backend=summary.get("backend"),
    )


def step_rows(outcome: StepOutcome) -> dict[str, int]:
    """The rows a pipeline step reports in its output folder (``in``, ``out``, ``quarantined``;
    ``aggregate``'s ``out`` counts groups: :attr:`flows.steps.pipeline.PipelineStep.reports`), for
    its span; {} for a step that reports none.

    Examples:
        >>> from flows.runtime.outcome import StepOutcome
        >>> step_rows(StepOutcome("report", "Completed", 1, 0.1))
        {}
    """
    step = declared(outcome.name)
    if step is None or not step.reports or outcome.result is None:
        return {}
    for folder in outcome.result.outputs.values():
        facts_file = Path(folder) / step.facts_file
        try:
            facts = json.loads(facts_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(facts, dict):
            wanted = step.reports
            return {name: facts[k] for name, k in wanted.items() if isinstance(facts.get(k), int)}
    return {}


def rows_so_far(outcomes: Sequence[StepOutcome]) -> dict[str, int]:
    """The row counts the ``validate`` step recorded, for a run that failed after it.

    A run that stops before ``report`` has no final summary, but ``validate`` already counted its
    rows (``validate.json`` in its output folder); the history shows those instead of blanks.
    """
    for outcome in outcomes:
        if outcome.name != VALIDATE.name or outcome.result is None:
            continue
        for folder in outcome.result.outputs.values():
            facts_file = Path(folder) / VALIDATE.facts_file
            if facts_file.is_file():
                facts = json.loads(facts_file.read_text(encoding="utf-8"))
                keys = VALIDATE.reports.values()
                return {k: int(facts[k]) for k in keys if isinstance(facts.get(k), int)}
    return {}


def metrics_key(flow: str) -> str:
    """The key of a flow's per-run metrics artifact."""
    return f"{flow}-metrics"


async def publish_metrics(flow: str, summary: dict[str, Any]) -> UUID:
    """Record this run's totals as a one-row table artifact (read back by :func:`read_history`)."""
    from prefect.artifacts import acreate_table_artifact

    steps = summary.get("steps", [])
    row = {
        "input_rows": summary.get("input_rows"),
        "valid_rows": summary.get("valid_rows"),
        "quarantined_rows": summary.get("quarantined_rows"),
        "retries": sum(max(0, int(s.get("attempts", 0)) - 1) for s in steps),
        "steps_duration_s": round(sum(float(s.get("duration_s", 0)) for s in steps), 3),
        "backend": summary.get("backend"),
    }
    return await acreate_table_artifact(
        [row], key=metrics_key(flow), description="Totals of this run, read by the history view"
    )


async def read_history(flow: str = DEFAULT_FLOW, last: int = 10) -> list[RunRecord]:
    """The last ``last`` runs of ``flow``, newest first, with their recorded metrics."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=last,
        )
        metrics: dict[UUID, dict[str, Any]] = {}
        if runs:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[metrics_key(flow)]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs]),
                )
            )
            for artifact in artifacts:
                data = artifact.data
                if artifact.flow_run_id and isinstance(data, list) and data:
                    metrics[artifact.flow_run_id] = dict(data[0])
                elif artifact.flow_run_id and isinstance(data, str):
                    rows = json.loads(data)
                    if rows:
                        metrics[artifact.flow_run_id] = dict(rows[0])
    records = []
    for run in runs:
        m = metrics.get(run.id, {})
        duration = run.total_run_time.total_seconds() if run.total_run_time else None
        records.append(
            RunRecord(
                name=run.name,
                state=(run.state.name if run.state else None) or "Unknown",
                started=run.start_time.strftime("%Y-%m-%d %H:%M:%S") if run.start_time else "",
                duration_s=round(duration, 2) if duration is not None else None,
                input_rows=m.get("input_rows"),
                valid_rows=m.get("valid_rows"),
                quarantined_rows=m.get("quarantined_rows"),
                retries=m.get("retries"),
                backend=m.get("backend"),
            )
        )
    return records


def _fmt(value: object) -> str:
    return "" if value is None else str(value)


_COLUMNS = (
    "name",
    "state",
    "started",
    "duration_s",
    "input_rows",
    "quarantined_rows",
    "retries",
    "backend",
)


def _bar_label(record: RunRecord) -> str:
    """A run's name, with its state when it did not complete (``brave-otter (Crashed)``)."""
    return record.name if record.state == "Completed" else f"{record.name} ({record.state})"


def render_history(records: Sequence[RunRecord], *, markdown: bool = True) -> str:
    """The history as a markdown table with an xychart of durations, or as plain text."""
    rows = [[_fmt(getattr(r, c)) for c in _COLUMNS] for r in records]
    if not markdown:
        widths = [
            max(len(c), *(len(row[i]) for row in rows)) if rows else len(c)
            for i, c in enumerate(_COLUMNS)
        ]
        lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
        return "\n".join(x.rstrip() for x in lines) if rows else "No runs recorded yet."
    lines = [
        "| " + " | ".join(_COLUMNS) + " |",
        "| " + " | ".join("---" for _ in _COLUMNS) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    # In the table's order: a horizontal xychart draws its first bar at the top (checked in the
    # browser by tests/browser/test_prefect_ui.py), so the newest run is on top, as in the table.
    timed = [r for r in records if r.duration_s is not None]
    if timed:
        lines += [
            "",
            "The chart draws the durations of the table, newest run at the top, each run that did"
            " not complete named with its state. The Prefect UI draws it on its V2 pages"
            " (`/v2/...`); elsewhere its mermaid source shows instead.",
            "",
            bar_chart(
                "Run duration (s), newest at the top",
                [_bar_label(r) for r in timed],
                [r.duration_s or 0.0 for r in timed],
                "seconds",
                decimals=2,
                horizontal=True,
            ),
        ]
    return "\n".join(lines) + "\n"


async def publish_history(
    flow: str = DEFAULT_FLOW, last: int = 10, current: RunRecord | None = None
) -> UUID:
    """Publish the last runs of ``flow`` as the ``<flow>-history`` markdown artifact.

    Args:
        flow: the flow's name.
        last: how many runs.
        current: the run publishing this, as it finishes; the API still has it ``Running``.
    """
    from prefect.artifacts import acreate_markdown_artifact

    records = await read_history(flow, last)
    if current is not None:
        records = [current, *(r for r in records if r.name != current.name)][:last]
    text = f"# Last {len(records)} runs of `{flow}`\n\n" + render_history(records)
    return await acreate_markdown_artifact(
        text, key=f"{flow}-history", description=f"The last {last} runs of {flow}"
    )


async def read_listing(flow: str, last: int) -> list[RunRecord]:
    """The last runs, after marking those of this host whose process died (flows.server.crashed_runs)."""
    from prefect.client.orchestration import get_client

    from flows.server.crashed_runs import mark_dead_runs_crashed

    async with get_client() as client:
        crashed = await mark_dead_runs_crashed(client)
    for run in crashed:
        print(f"note: {run.line()}.", file=sys.stderr)
    return await read_history(flow, last)


if __name__ == "__main__":
    print("python -m flows.ui.history is now `aiop history`", file=sys.stderr)
    sys.exit(2)
