"""``aiop drill``: prove the self-healing promises against the real pipeline.

One scenario per error class. Each runs the real data pipeline (as a sub-flow, on a fresh work
folder) with a fault plan injected at the runner boundary, so the real retry, breaker and caching
code handles it, and compares what happened with what should happen. The resume scenario kills a
pipeline process with SIGKILL in the middle of a step and checks that the re-run re-executes only
the unfinished steps and writes output identical to an uninterrupted run.

The validation report (scenario, fault, expected, observed, attempts, time to recover, pass/fail)
goes to ``<output>/self-healing-report.md``, to a Prefect markdown artifact, and, with
``--docs-page PATH``, to a page of the docs. Exits 1 if any scenario fails.
"""

from __future__ import annotations

import asyncio
import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.settings import Settings, load_settings
from flows.steps.pipeline import (
    AGGREGATE,
    INGEST,
    PIPELINE_STEPS,
    REPORT,
    TRANSFORM,
    VALIDATE,
    step_names,
)

__all__ = [
    "SCENARIOS",
    "Observed",
    "Scenario",
    "ScenarioResult",
    "flow_run_lines",
    "render_report",
    "run_drill",
    "self_healing_drill",
]

#: The settings every scenario runs with (over the caller's), so that a drill takes seconds.
_DRILL_SETTINGS: dict[str, Any] = {
    "retry": {"attempts": 4, "backoff_s": 0.2, "max_backoff_s": 1},
    "breaker": {"fail_max": 5, "reset_timeout": 30},
}


@dataclass
class Observed:
    """What a scenario's pipeline run did."""

    summary: dict[str, Any] | None
    error: BaseException | None
    seconds: float
    transitions: list[str] = field(default_factory=list)

    def step(self, prefix: str) -> list[dict[str, Any]]:
        """The summary entries of the steps named ``prefix`` or ``prefix-N``."""
        steps = (self.summary or {}).get("steps", [])
        return [s for s in steps if s["name"] == prefix or s["name"].startswith(f"{prefix}-")]

    def attempts(self, prefix: str) -> int:
        """Attempts summed over the steps named ``prefix``."""
        return sum(int(s["attempts"]) for s in self.step(prefix))


Check = Callable[[Observed], tuple[bool, str]]


@dataclass(frozen=True)
class Scenario:
    """One drill scenario."""

    name: str
    error_class: str
    fault: str
    expected: str
    check: Check
    settings: dict[str, Any] = field(default_factory=dict)


def _completed(o: Observed) -> bool:
    return o.error is None and o.summary is not None and "error" not in o.summary


def _retried(step: str, attempts: int) -> Check:
    def check(o: Observed) -> tuple[bool, str]:
        got = o.attempts(step)
        if not _completed(o):
            return False, f"the run failed: {o.error}"
        ok = got == attempts
        return ok, f"completed; {step} took {got} attempt(s)"

    return check


def _fails_fast(step: str) -> Check:
    def check(o: Observed) -> tuple[bool, str]:
        if o.error is None:
            return False, "the run completed although the fault is permanent"
        got = o.attempts(step)
        failed_step = getattr(o.error, "step", None)
        ok = failed_step == step and got == 1
        return (
            ok,
            f"failed at {failed_step} after {got} attempt(s): {type(getattr(o.error, 'cause', o.error)).__name__}",
        )

    return check


def _slow(step: str, seconds: float) -> Check:
    def check(o: Observed) -> tuple[bool, str]:
        if not _completed(o):
            return False, f"the run failed: {o.error}"
        took = max((float(s["duration_s"]) for s in o.step(step)), default=0.0)
        ok = took >= seconds and o.attempts(step) == 1
        return ok, f"completed; {step} took {took:.2f} s in {o.attempts(step)} attempt(s)"

    return check


def _circuit(o: Observed) -> tuple[bool, str]:
    if not _completed(o):
        return False, f"the run failed: {o.error}"
    opened = any(t.endswith("opened") for t in o.transitions)
    closed = o.transitions[-1:] == ["aiop.breaker.closed"] if o.transitions else False
    waited = sum(float(s.get("breaker_wait_s", 0.0)) for s in o.step(INGEST.name))
    ok = opened and closed and waited > 0
    names = ", ".join(t.rsplit(".", 1)[-1] for t in o.transitions) or "none"
    return ok, (
        f"completed; breaker transitions: {names}; {INGEST.name} took"
        f" {o.attempts(INGEST.name)} attempt(s)"
        f" and waited {waited:.1f} s for the probe"
    )


#: The first partition of the partitioned step, where the transient fault lands.
_FIRST_PART = f"{TRANSFORM.name}-0"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "transient exit",
        "StepFailedError (transient exit code)",
        f"step={_FIRST_PART},kind=transient-exit,times=2",
        f"retried with backoff; completes with 3 attempts of {_FIRST_PART}",
        _retried(_FIRST_PART, 3),
    ),
    Scenario(
        "permanent exit",
        "StepFailedError",
        f"step={VALIDATE.name},kind=permanent-exit",
        f"not retried; the run fails at {VALIDATE.name} after 1 attempt",
        _fails_fast(VALIDATE.name),
    ),
    Scenario(
        "step timeout",
        "StepTimeoutError",
        f"step={AGGREGATE.name},kind=timeout",
        f"retried; completes with 2 attempts of {AGGREGATE.name}",
        _retried(AGGREGATE.name, 2),
    ),
    Scenario(
        "engine unreachable",
        "EngineUnavailableError",
        f"step={INGEST.name},kind=engine-down,times=2",
        f"retried; completes with 3 attempts of {INGEST.name}",
        _retried(INGEST.name, 3),
    ),
    Scenario(
        "engine crash mid-step",
        "EngineConnectionError",
        f"step={REPORT.name},kind=engine-crash",
        f"retried; completes with 2 attempts of {REPORT.name}",
        _retried(REPORT.name, 2),
    ),
    Scenario(
        "slow step",
        "(none: slow but healthy)",
        f"step={VALIDATE.name},kind=slow,seconds=1.5",
        f"no retry; completes, {VALIDATE.name} takes at least 1.5 s",
        _slow(VALIDATE.name, 1.5),
    ),
    Scenario(
        "circuit open",
        "CircuitOpenError",
        f"step={INGEST.name},kind=engine-down,times=2",
        "the breaker opens after 2 failures, the retry waits for the probe time (not a burst),"
        " the probe succeeds and closes it; completes",
        _circuit,
        settings={"breaker": {"fail_max": 2, "reset_timeout": 1.5}},
    ),
)


@dataclass(frozen=True)
class ScenarioResult:
    """One row of the report."""

    scenario: str
    error_class: str
    fault: str
    expected: str
    observed: str
    attempts: int
    recover_s: float
    passed: bool


async def _run_pipeline(**kwargs: Any) -> tuple[dict[str, Any] | None, BaseException | None]:
    from flows.data_pipeline.flow import data_pipeline

    state = await data_pipeline(**kwargs, return_state=True)
    if state.is_completed():
        return await state.aresult(), None
    error = await state.aresult(raise_on_failure=False)
    return None, error if isinstance(error, BaseException) else RuntimeError(str(state.message))


async def run_scenario(
    scenario: Scenario, base: Path, backend: str, rows: int, settings: Settings | None = None
) -> ScenarioResult:
    """Run one scenario on a fresh work folder and judge it (``settings``: the caller's, with the
    drill's and the scenario's over them)."""
    from adapters.breakers.breaker import reset_breakers
    from flows.runtime.events import RECENT_TRANSITIONS

    slug = scenario.name.replace(" ", "-")
    drill = (settings or load_settings()).with_changes(**{**_DRILL_SETTINGS, **scenario.settings})
    reset_breakers()
    seen = len(RECENT_TRANSITIONS)
    started = time.monotonic()
    try:
        summary, error = await _run_pipeline(
            rows=rows,
            partitions=2,
            output=str(base / slug / "out"),
            work_dir=str(base / slug / "work"),
            backend=backend,
            chaos=scenario.fault,
            settings=drill,
        )
    finally:
        reset_breakers()
    seconds = time.monotonic() - started
    written = base / slug / "out" / "summary.json"
    if summary is None and written.exists():  # a failed run still writes its step list
        summary = json.loads(written.read_text(encoding="utf-8"))
    transitions: list[str] = [e.name for e in list(RECENT_TRANSITIONS)[seen:]]
    observed = Observed(summary, error, seconds, transitions)
    passed, text = scenario.check(observed)
    steps = (summary or {}).get("steps", [])
    return ScenarioResult(
        scenario.name,
        scenario.error_class,
        scenario.fault,
        scenario.expected,
        text,
        sum(int(s["attempts"]) for s in steps),
        round(seconds, 2),
        passed,
    )


async def run_resume_scenario(
    base: Path, backend: str, rows: int, settings: Settings | None = None
) -> ScenarioResult:
    """SIGKILL a pipeline process mid-step, re-run it, compare with an uninterrupted run."""
    drill = (settings or load_settings()).with_changes(**_DRILL_SETTINGS)
    fault = f"SIGKILL during {AGGREGATE.name}"
    before = [s.name for s in PIPELINE_STEPS[: PIPELINE_STEPS.index(AGGREGATE)]]
    after = [s.name for s in PIPELINE_STEPS[PIPELINE_STEPS.index(AGGREGATE) :]]
    expected = (
        f"the killed run ends Crashed; the re-run finds {', '.join(before[:-1])} and {before[-1]}"
        f" Cached, re-executes {' and '.join(after)}, and writes output identical to an"
        " uninterrupted run"
    )
    slug = base / "resume"
    args: dict[str, Any] = {
        "rows": rows,
        "partitions": 2,
        "output": str(slug / "out"),
        "work_dir": str(slug / "work"),
        "backend": backend,
    }
    # The child gets the drill's settings, and the slow fault, explicitly: nothing else of ours.
    # It talks to the drill's Prefect API: flows.server.local_server.prefect_api, which chose it, put it
    # (and the local server's auth string) in this environment, and the child chooses the same.
    env = drill.environment_for_child(
        os.environ, chaos=f"step={AGGREGATE.name},kind=slow,seconds=120"
    )
    command = [
        sys.executable, "-m", "flows.data_pipeline", "--rows", str(rows), "--partitions", "2",
        "--output", str(args["output"]), "--work-dir", str(args["work_dir"]), "--backend", backend,
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: ASYNC220 - polled below without blocking the loop
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    work = Path(args["work_dir"])
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(work.glob(f"{TRANSFORM.name}-*"))) < 2:
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # aggregate is running (slowed down) now
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed, error = await _run_pipeline(**args, settings=drill)
    reference, ref_error = await _run_pipeline(
        **{**args, "output": str(slug / "reference"), "work_dir": str(slug / "reference-work")},
        settings=drill,
    )
    seconds = time.monotonic() - started
    if not killed or error or ref_error or resumed is None or reference is None:
        why = (
            "the first run ended before it could be killed"
            if not killed
            else f"{error or ref_error}"
        )
        return ScenarioResult(
            "resume after SIGKILL", "(crash)", fault, expected, why, 0, round(seconds, 2), False
        )
    states = {s["name"]: s["state"] for s in resumed["steps"]}
    from flows.data_pipeline.options import partition_runs, step_slots

    # Two partitions are two transform steps unless this machine has a single core.
    names = step_names(partitions=len(partition_runs(2, step_slots(backend))))
    split = names.index(AGGREGATE.name)
    cached = all(states[n] == "Cached" for n in names[:split])
    rerun = all(states[n] != "Cached" for n in names[split:])
    same = _same_output(Path(args["output"]), slug / "reference")
    # The re-run found the killed run (still Running: nothing could report its death) and set
    # it Crashed (flows.server.crashed_runs), so the drill leaves no run Running behind it.
    killed_state = await _state_of_run_of_process(proc.pid)
    observed = (
        f"killed: yes, its run now {killed_state}; re-run states:"
        f" {', '.join(f'{k}={v}' for k, v in states.items())};"
        f" output identical: {'yes' if same else 'no'}"
    )
    return ScenarioResult(
        "resume after SIGKILL",
        "(crash)",
        fault,
        expected,
        observed,
        sum(int(s["attempts"]) for s in resumed["steps"]),
        round(seconds, 2),
        cached and rerun and same and killed_state == "Crashed",
    )


async def _state_of_run_of_process(pid: int) -> str:
    """The state of the data-pipeline run that process ``pid`` of this host ran ("none found")."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.server.crashed_runs import LABEL, ProcessId

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["data-pipeline"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
    for run in runs:
        process = ProcessId.parse((run.labels or {}).get(LABEL))
        if process is not None and process.pid == pid and run.state is not None:
            return str(run.state.name)
    return "none found"


def _same_output(one: Path, two: Path) -> bool:
    names = ["aggregates.csv", "quarantine.csv"]
    data_one = sorted(p.name for p in (one / "data").iterdir())
    data_two = sorted(p.name for p in (two / "data").iterdir())
    if data_one != data_two:
        return False
    names += [f"data/{n}" for n in data_one]
    return all(filecmp.cmp(one / n, two / n, shallow=False) for n in names)


def render_report(results: Sequence[ScenarioResult], backend: str) -> str:
    """The validation report as markdown: a four-column table (narrow enough for the Prefect UI's
    artifact column at 1400 px), then each scenario's fault, expectation and observation."""
    passed = sum(r.passed for r in results)
    lines = [
        "# Self-healing validation report",
        "",
        f"Backend: **{backend}**. {passed} of {len(results)} scenarios passed.",
        "",
        "| scenario | result | attempts | time to recover (s) |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in results:
        verdict = "PASS" if r.passed else "**FAIL**"
        lines.append(f"| {_cell(r.scenario)} | {verdict} | {r.attempts} | {r.recover_s:.2f} |")
    for r in results:
        lines += [
            "",
            f"## {r.scenario}: {'PASS' if r.passed else 'FAIL'}",
            "",
            f"- **Error class**: {r.error_class}",
            f"- **Fault injected**: `{r.fault}`",
            f"- **Expected**: {r.expected}",
            f"- **Observed**: {r.observed}",
        ]
    lines += [
        "",
        "Faults are injected at the runner boundary (`--chaos`), so the real retry, breaker and"
        " caching code handles them. Attempts are summed over the run's steps; time to recover is"
        " the pipeline run's wall time with the fault.",
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


async def self_healing_drill(
    output: str,
    backend: str = "local",
    rows: int = 2000,
    names: Sequence[str] = (),
    settings: Settings | None = None,
) -> list[ScenarioResult]:
    """Run the drill (all scenarios, or those in ``names``) and write the report
    (``settings``: the platform settings; default: read from the environment once, here)."""
    results, _ = await run_drill(output, backend, rows, names, settings)
    return results


async def run_drill(
    output: str,
    backend: str,
    rows: int,
    names: Sequence[str],
    settings: Settings | None,
) -> tuple[list[ScenarioResult], str | None]:
    """:func:`self_healing_drill`, and the id of the drill's flow run."""
    settings = settings if settings is not None else load_settings()
    from prefect import flow, get_run_logger
    from prefect.artifacts import acreate_markdown_artifact
    from prefect.runtime import flow_run

    from flows.server.crashed_runs import check_at_start

    base = Path(output).resolve()
    wanted = set(names)

    @flow(name="self-healing-drill")
    async def drill() -> tuple[list[ScenarioResult], str | None]:
        await check_at_start(get_run_logger())
        results = [
            await run_scenario(s, base, backend, rows, settings)
            for s in SCENARIOS
            if not wanted or s.name in wanted
        ]
        if not wanted or "resume after SIGKILL" in wanted:
            results.append(await run_resume_scenario(base, backend, rows, settings))
        report = render_report(results, backend)
        base.mkdir(parents=True, exist_ok=True)
        (base / "self-healing-report.md").write_text(report, encoding="utf-8")
        await acreate_markdown_artifact(
            report, key="self-healing-drill", description="Self-healing validation report"
        )
        return results, str(flow_run.id) if flow_run.id else None

    return await drill()


def flow_run_lines(flow_run_id: str | None, ui_url: str | None) -> list[str]:
    """The ``Flow run:`` line(s) of the drill's run: its V2 page, where the report renders.

    Args:
        flow_run_id: the drill's flow run, if it ran.
        ui_url: the UI of the server the drill talked to (the API
            :func:`flows.server.local_server.prefect_api` chose); None on a temporary server.
    """
    from flows.ui.console import DEFAULT_UI_URL, flow_run_ui_url

    if flow_run_id is None:
        return []
    if ui_url:
        return [f"Flow run:   {flow_run_ui_url(ui_url, flow_run_id)}"]
    return [
        f"Flow run:   {flow_run_ui_url(DEFAULT_UI_URL, flow_run_id)}",
        "            (kept in Prefect's database: open it after `prefect server start`)",
    ]


if __name__ == "__main__":
    print("python -m flows.ops.drill is now `aiop drill`", file=sys.stderr)
    sys.exit(2)
