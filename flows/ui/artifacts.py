"""What a pipeline run shows in the Prefect UI: progress, a summary, charts, and why it failed.

The ``render_*`` functions are pure (markdown in, markdown out) so they are tested without a server;
the ``publish_*`` coroutines hand their markdown to Prefect. Every docs link uses the ``docs_url`` setting.
Artifact keys are stable per flow (``data-pipeline-summary``...), so the Artifacts page keeps one
entry per kind with every run's version in its history.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote
from uuid import UUID

from adapters import tracing
from flows.runtime.outcome import StepOutcome
from flows.steps.pipeline import RESULTS, declared
from flows.ui.charts import bar_chart, gantt
from flows.ui.console import docs_url

__all__ = [
    "ProgressTracker",
    "publish_failure",
    "publish_summary",
    "render_durations_chart",
    "render_failure",
    "render_summary",
    "render_throughput_chart",
    "render_timeline",
]

_STDERR_LINES = 20


def _key(flow: str, kind: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"{flow}-{kind}".lower()).strip("-")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _offsets_ms(outcomes: Sequence[StepOutcome]) -> list[tuple[int, int]]:
    """(start, end) of each step in milliseconds since the first step started."""
    origin = min(o.started_at for o in outcomes)
    spans = []
    for o in outcomes:
        start = int((o.started_at - origin) * 1000)
        spans.append((start, max(start + 1, start + int(o.duration_s * 1000))))
    return spans


def render_timeline(outcomes: Sequence[StepOutcome]) -> str:
    """A mermaid gantt chart of when each step ran (milliseconds since the first step started)."""
    if not outcomes:
        return ""
    tasks = []
    for o, (start, end) in zip(outcomes, _offsets_ms(outcomes), strict=True):
        tag = "" if o.state == "Completed" else ("done" if o.state == "Cached" else "crit")
        tasks.append((f"{o.name} ({o.state})", tag, start, end))
    return gantt("Step timeline", tasks)


def render_durations_chart(outcomes: Sequence[StepOutcome]) -> str:
    """A mermaid bar chart of step durations in seconds (axis from 0)."""
    if not outcomes:
        return ""
    return bar_chart(
        "Step durations (s)",
        [o.name for o in outcomes],
        [o.duration_s for o in outcomes],
        "seconds",
    )


def _rows_for(step: str, summary: dict[str, Any]) -> int | None:
    """The rows ``step`` works through, by its declared :attr:`~flows.steps.pipeline.PipelineStep.rows_basis`."""
    declared_step = declared(step)
    return None if declared_step is None else summary.get(declared_step.rows_basis)


def _rate(outcome: StepOutcome, summary: dict[str, Any]) -> float | None:
    """Rows per second of a step that ran in this run (not for cached or failed steps); 0 for a
    step that ran on no rows (every row quarantined before it)."""
    rows = _rows_for(outcome.name, summary)
    if rows is None or outcome.duration_s <= 0 or outcome.state != "Completed":
        return None
    return float(rows) / outcome.duration_s


def render_throughput_chart(outcomes: Sequence[StepOutcome], summary: dict[str, Any]) -> str:
    """A mermaid bar chart of rows per second for each step that ran in this run (axis from 0)."""
    rated = [(o.name, _rate(o, summary)) for o in outcomes]
    shown = [(name, rate) for name, rate in rated if rate is not None]
    if not shown:
        return "No step ran in this run (all cached), so there is no throughput to chart."
    return bar_chart(
        "Rows per second",
        [name for name, _ in shown],
        [rate for _, rate in shown],
        "rows/s",
        decimals=0,
    )


def render_summary(
    summary: dict[str, Any], outcomes: Sequence[StepOutcome], flow_run_name: str
) -> str:
    """The run summary: rows, backend, duration, a per-step table, outputs, docs links, charts."""
    total = sum(o.duration_s for o in outcomes)
    wall = (
        max(o.started_at + o.duration_s for o in outcomes) - min(o.started_at for o in outcomes)
        if outcomes
        else 0.0
    )
    lines = [
        f"# Data pipeline run `{flow_run_name}`",
        "",
        f"**{summary.get('input_rows')}** rows in, **{summary.get('valid_rows')}** valid,"
        f" **{summary.get('quarantined_rows')}** quarantined; backend **{summary.get('backend')}**;"
        f" grouped by `{summary.get('group_by')}`; steps took {wall:.2f} s wall time"
        f" ({total:.2f} s summed).",
        "",
        "| step | state | attempts | started at (s) | duration (s) | breaker wait (s) | exit code"
        " | rows/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    starts = [start for start, _ in _offsets_ms(outcomes)] if outcomes else []
    for o, start in zip(outcomes, starts, strict=True):
        exit_code = (
            o.result.exit_code if o.result is not None else getattr(o.error, "exit_code", "")
        )
        rate = _rate(o, summary)
        lines.append(
            f"| {_cell(o.name)} | {o.state} | {o.attempts} | {start / 1000:.2f} | {o.duration_s:.2f} |"
            f" {o.breaker_wait_s:.2f} | {exit_code} | {'' if rate is None else f'{rate:,.0f}'} |"
        )
    retries = sum(max(0, o.attempts - 1) for o in outcomes)
    waited = sum(o.breaker_wait_s for o in outcomes)
    lines += [
        "",
        f"Retries: {retries}. Time waiting on open circuit breakers: {waited:.2f} s.",
        "",
        *_trace_lines(summary.get("trace_id"), summary.get("trace_url")),
        "**Outputs**",
        "",
        f"- summary: `{summary.get('aggregates', '').rsplit('/', 1)[0]}/summary.json`",
        *(f"- {key}: `{summary.get(key)}`" for key in RESULTS),
        "",
        f"**Docs**: [the data pipeline guide]({docs_url('guides/data-pipeline/')}) ·"
        f" [troubleshooting]({docs_url('troubleshooting/')}) ·"
        f" [self-healing]({docs_url('explanation/self-healing/')})",
        "",
        "## Charts",
        "",
        "The charts draw the table above. The Prefect UI draws them on a run's V2 pages"
        " (`/v2/runs/flow-run/<id>`, Artifacts tab); elsewhere their mermaid source shows instead.",
        "",
        "### Timeline",
        "",
        render_timeline(outcomes),
        "",
        "### Step durations",
        "",
        render_durations_chart(outcomes),
        "",
        "### Throughput",
        "",
        render_throughput_chart(outcomes, summary),
    ]
    return "\n".join(lines) + "\n"


def _what_happened(step: str, message: str, has_tail: bool) -> str:
    """The error as one complete sentence (its stderr lines, shown below it, taken out)."""
    text = " ".join(message.split("; last stderr lines:", 1)[0].split()).rstrip(" :;,.")
    if not text:
        text = "failed without a message"
    if text[:1].islower() and not text.startswith(("step ", f"{step}:")):
        text = f"step `{step}` {text}"
    sentence = _cell(text[:1].upper() + text[1:]) + "."
    return sentence + (" Its last stderr lines are below." if has_tail else "")


def _trace_lines(trace_id: str | None, url: str | None) -> list[str]:
    """The run's trace: its id (to search in the tracing backend), linked when a link is set."""
    if not trace_id:
        return []
    shown = f"[`{trace_id}`]({url})" if url else f"`{trace_id}`"
    return [
        f"**Trace**: {shown} (OpenTelemetry; [the tracing guide]({docs_url('guides/tracing/')}))",
        "",
    ]


def render_failure(
    step: str,
    error: BaseException | None,
    flow_run_name: str,
    trace_id: str | None = None,
    trace_url: str | None = None,
) -> str:
    """Why the run failed: the error class, the last stderr lines, the run's trace, and where to
    read more."""
    name = type(error).__name__ if error is not None else "UnknownError"
    anchor = str(getattr(error, "docs_anchor", "troubleshooting"))
    stderr = str(getattr(error, "stderr_tail", "") or "")
    tail = "\n".join(stderr.splitlines()[-_STDERR_LINES:])
    message = str(getattr(error, "message", error))
    lines = [
        f"# Run `{flow_run_name}` failed at step `{step}`",
        "",
        f"**Error class**: `{name}`",
        "",
        f"**What happened**: {_what_happened(step, message, bool(tail))}",
        "",
    ]
    if tail:
        lines += ["**Last stderr lines** (secret values masked):", "", "```text", tail, "```", ""]
    lines += _trace_lines(trace_id, trace_url)
    lines += [
        f"**Read more**: [troubleshooting: {name}]({docs_url('troubleshooting/')}#{anchor}) ·"
        f" [search the docs for {name}]({docs_url('')}?q={quote(name)})",
    ]
    return "\n".join(lines) + "\n"


async def publish_summary(
    flow: str, summary: dict[str, Any], outcomes: Sequence[StepOutcome], flow_run_name: str
) -> UUID:
    """Create the keyed run-summary artifact."""
    from prefect.artifacts import acreate_markdown_artifact

    return await acreate_markdown_artifact(
        render_summary(summary, outcomes, flow_run_name),
        key=_key(flow, "summary"),
        description="Rows, steps, outputs and charts of this run",
    )


async def publish_failure(
    flow: str, step: str, error: BaseException | None, flow_run_name: str
) -> UUID:
    """Create the keyed failure artifact."""
    from prefect.artifacts import acreate_markdown_artifact

    trace_id = tracing.current_trace_id()
    return await acreate_markdown_artifact(
        render_failure(step, error, flow_run_name, trace_id, tracing.trace_link(trace_id)),
        key=_key(flow, "failure"),
        description=f"Why the run failed at step {step}",
    )


class ProgressTracker:
    """A progress artifact updated in place as steps finish.

    The calls to the server run in the background, one after the other in the order asked (an
    update never overtakes the creation or an earlier update), so that the next step does not
    wait for them: 5-15 ms each, on the run's critical path at every step. :meth:`flush` waits
    for the last one and raises what any of them raised.
    """

    def __init__(self, flow: str, total_steps: int) -> None:
        self.key = _key(flow, "progress")
        self.total = max(1, total_steps)
        self.done = 0
        self._id: UUID | None = None
        self._pending: asyncio.Future[None] | None = None

    def _then(self, call: Callable[[], Awaitable[None]]) -> None:
        previous = self._pending

        async def in_order() -> None:
            if previous is not None:
                await previous
            await call()

        self._pending = asyncio.ensure_future(in_order())

    async def start(self) -> None:
        """Create the artifact at 0% (in the background)."""
        from prefect.artifacts import acreate_progress_artifact

        async def create() -> None:
            self._id = await acreate_progress_artifact(
                0.0, key=self.key, description="Steps finished in this run"
            )

        self._then(create)

    async def step_done(self, count: int = 1) -> None:
        """Count ``count`` more finished steps and update the artifact (in the background)."""
        from prefect.artifacts import aupdate_progress_artifact

        self.done = min(self.total, self.done + count)
        value = 100.0 * self.done / self.total

        async def update() -> None:
            if self._id is not None:
                await aupdate_progress_artifact(self._id, value)

        self._then(update)

    async def flush(self) -> None:
        """Wait for the calls asked so far; raises the first error one of them met."""
        if self._pending is not None:
            await self._pending
