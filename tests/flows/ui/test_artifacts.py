"""What the Prefect UI shows for a run: the rendered markdown (pure functions, no server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters import StepFailedError, StepResult, StepTimeoutError
from adapters.settings import DEFAULT_DOCS_URL, Settings
from flows.runtime.step_task import StepOutcome
from flows.ui.artifacts import (
    render_durations_chart,
    render_failure,
    render_summary,
    render_timeline,
)
from flows.ui.console import use_docs_url


def ok(
    name: str, start: float, duration: float, state: str = "Completed", attempts: int = 1
) -> StepOutcome:
    result = StepResult(
        step=name, exit_code=0, stdout="", stderr="", duration_s=duration, backend="local"
    )
    return StepOutcome(name, state, attempts, duration, result=result, started_at=start)


OUTCOMES = [
    ok("ingest", 100.0, 0.5),
    ok("validate", 100.5, 1.5, attempts=3),
    ok("report", 102.0, 0.2, "Cached", 0),
]
SUMMARY = {
    "input_rows": 1000,
    "valid_rows": 990,
    "quarantined_rows": 10,
    "backend": "local",
    "group_by": "category",
    "aggregates": "/o/aggregates.csv",
    "quarantine": "/o/quarantine.csv",
    "data": "/o/data",
}


@pytest.fixture(autouse=True)
def docs_base() -> Iterator[None]:
    use_docs_url(Settings(docs_url="http://docs.test/").docs_url)  # as an entry point does
    yield
    use_docs_url(DEFAULT_DOCS_URL)


class TestSummary:
    def test_has_rows_steps_outputs_and_docs_links(self) -> None:
        text = render_summary(SUMMARY, OUTCOMES, "brave-otter")
        assert "**1000** rows in, **990** valid, **10** quarantined" in text
        assert "| validate | Completed | 3 | 0.50 | 1.50 | 0.00 | 0 | 667 |" in text
        assert "| report | Cached | 0 |" in text
        assert "Retries: 2. Time waiting on open circuit breakers: 0.00 s." in text
        assert "`/o/aggregates.csv`" in text
        assert "(http://docs.test/guides/data-pipeline/)" in text
        assert "(http://docs.test/troubleshooting/)" in text

    def test_embeds_timeline_duration_and_throughput_charts(self) -> None:
        text = render_summary(SUMMARY, OUTCOMES, "x")
        assert (
            text.count("```mermaid") == 3 and "gantt" in text and 'title "Rows per second"' in text
        )

    def test_breaker_wait_is_shown_per_step_and_in_total(self) -> None:
        waited = StepOutcome(
            "ingest",
            "Completed",
            3,
            4.0,
            result=OUTCOMES[0].result,
            started_at=1.0,
            breaker_wait_s=2.5,
        )
        text = render_summary(SUMMARY, [waited], "x")
        assert "| ingest | Completed | 3 | 0.00 | 4.00 | 2.50 |" in text
        assert "Time waiting on open circuit breakers: 2.50 s." in text

    def test_throughput_chart_skips_cached_steps(self) -> None:
        from flows.ui.artifacts import render_throughput_chart

        assert '"report"' not in render_throughput_chart(OUTCOMES, SUMMARY)
        cached = [ok("ingest", 0.0, 0.1, "Cached", 0)]
        assert "all cached" in render_throughput_chart(cached, SUMMARY)


class TestCharts:
    def test_timeline_is_relative_to_the_first_step_and_marks_states(self) -> None:
        failed = StepOutcome("aggregate", "Failed", 1, 0.25, error=None, started_at=102.0)
        text = render_timeline([*OUTCOMES[:2], failed])
        assert "    ingest (Completed) :s0, 0, 500" in text
        assert "    validate (Completed) :s1, 500, 2000" in text
        assert "    aggregate (Failed) :crit, s2, 2000, 2250" in text

    def test_durations_chart_lists_every_step(self) -> None:
        text = render_durations_chart(OUTCOMES)
        assert 'x-axis ["ingest", "validate", "report"]' in text
        assert "bar [0.500, 1.500, 0.200]" in text

    def test_charts_carry_a_legible_config_and_bars_start_at_zero(self) -> None:
        import json

        text = render_summary(SUMMARY, OUTCOMES, "x")
        configs = [
            json.loads(line.removeprefix("config: "))
            for line in text.splitlines()
            if line.startswith("config: ")
        ]
        assert len(configs) == 3, text
        timeline, durations, throughput = configs
        assert timeline["gantt"]["useWidth"] <= 660 and timeline["gantt"]["barHeight"] >= 24
        assert timeline["themeVariables"]["titleColor"] == "#f1f5f9"  # on the dark code block
        for chart in (durations, throughput):
            assert chart["themeVariables"]["xyChart"]["plotColorPalette"] != "#FFF4DD"
            assert chart["xyChart"]["width"] <= 660
        assert 'y-axis "seconds" 0 --> 2' in text and 'y-axis "rows/s" 0 --> 2000' in text

    def test_history_chart_starts_at_zero_with_run_names_down_the_side(self) -> None:
        from flows.ui.history import RunRecord, render_history

        records = [
            RunRecord(f"run-{i}", "Completed", "", d, 10, 9, 1, 0, "local")
            for i, d in enumerate((12.5, 13.0))
        ]
        text = render_history(records)
        assert text.index("| run-0 |") < text.index("```mermaid")  # the table comes first
        assert "xychart-beta horizontal" in text and 'y-axis "seconds" 0 --> 20' in text

    def test_no_steps_no_chart(self) -> None:
        assert render_timeline([]) == "" and render_durations_chart([]) == ""


class TestFailure:
    def test_names_class_stderr_and_links_to_the_troubleshooting_anchor_and_search(self) -> None:
        error = StepFailedError(
            "exited with code 3", step="validate", exit_code=3, stderr_tail="line one\nbad row 7"
        )
        text = render_failure("validate", error, "brave-otter")
        assert "failed at step `validate`" in text and "`StepFailedError`" in text
        assert "bad row 7" in text
        assert "(http://docs.test/troubleshooting/#step-failed)" in text
        assert "(http://docs.test/?q=StepFailedError)" in text

    def test_what_happened_is_a_full_sentence_before_the_stderr_block(self) -> None:
        error = StepFailedError(
            "exited with code 1; last stderr lines:\nboom",
            step="transform-0",
            exit_code=1,
            stderr_tail="boom",
        )
        text = render_failure("transform-0", error, "r")
        assert (
            "**What happened**: Step `transform-0` exited with code 1. Its last stderr lines are"
            " below.\n" in text
        )

    def test_infrastructure_error_links_its_own_anchor(self) -> None:
        text = render_failure("ingest", StepTimeoutError("too slow", timeout_s=1), "r")
        assert "#step-timeout)" in text and "Last stderr" not in text


class TestTrace:
    """The run's page names its OpenTelemetry trace, so it can be found in the tracing backend."""

    TRACE = "13b349f000c27bfe98d1c5d618c1cb71"

    def test_the_summary_names_the_trace_and_links_it_when_a_link_is_set(self) -> None:
        url = f"http://127.0.0.1:6006/redirects/traces/{self.TRACE}"
        linked = render_summary(
            {**SUMMARY, "trace_id": self.TRACE, "trace_url": url}, OUTCOMES, "x"
        )
        assert f"**Trace**: [`{self.TRACE}`]({url})" in linked
        assert "(http://docs.test/guides/tracing/)" in linked
        bare = render_summary({**SUMMARY, "trace_id": self.TRACE, "trace_url": None}, OUTCOMES, "x")
        assert f"**Trace**: `{self.TRACE}` (OpenTelemetry" in bare

    def test_no_trace_no_line(self) -> None:
        assert "**Trace**" not in render_summary({**SUMMARY, "trace_id": None}, OUTCOMES, "x")
        assert "**Trace**" not in render_failure("s", None, "x")

    def test_the_failure_names_the_trace_too(self) -> None:
        text = render_failure("validate", None, "x", self.TRACE, None)
        assert f"**Trace**: `{self.TRACE}`" in text


class TestProgressTracker:
    """The progress artifact's calls run in the background, in the order asked, and ``flush``
    waits for them: a step never waits for the server, an update never overtakes another."""

    async def test_updates_wait_for_nothing_and_land_in_order(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import asyncio
        import uuid

        import prefect.artifacts

        from flows.ui.artifacts import ProgressTracker

        server_up = asyncio.Event()
        landed: list[tuple[str, float]] = []

        async def create(value: float, key: str, description: str) -> uuid.UUID:
            await server_up.wait()
            landed.append(("create", value))
            return uuid.uuid4()

        async def update(artifact_id: uuid.UUID, value: float) -> None:
            await asyncio.sleep(0.01 if value < 50 else 0)  # a slow call before a fast one
            landed.append(("update", value))

        monkeypatch.setattr(prefect.artifacts, "acreate_progress_artifact", create)
        monkeypatch.setattr(prefect.artifacts, "aupdate_progress_artifact", update)
        progress = ProgressTracker("flow", total_steps=4)
        # The steps go on while the server has not answered (a call that waited would time out).
        await asyncio.wait_for(progress.start(), 1)
        for _ in range(4):
            await asyncio.wait_for(progress.step_done(), 1)
        assert landed == []
        server_up.set()
        await progress.flush()
        assert landed == [("create", 0.0)] + [("update", v) for v in (25.0, 50.0, 75.0, 100.0)]

    async def test_flush_raises_what_a_call_met(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import prefect.artifacts

        from flows.ui.artifacts import ProgressTracker

        async def create(value: float, key: str, description: str) -> None:
            raise ConnectionError("server gone")

        monkeypatch.setattr(prefect.artifacts, "acreate_progress_artifact", create)
        progress = ProgressTracker("flow", total_steps=2)
        await progress.start()
        await progress.step_done()
        with pytest.raises(ConnectionError, match="server gone"):
            await progress.flush()
