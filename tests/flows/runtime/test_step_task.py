"""run_step: the retry condition by error class, the cache key, and real runs through Prefect."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.states import Failed

from adapters import (
    CircuitOpenError,
    EngineConnectionError,
    EngineUnavailableError,
    InfrastructureError,
    InvalidInputError,
    InvalidSpecError,
    ProvisioningTimeoutError,
    StepFailedError,
    StepSpec,
    StepTimeoutError,
)
from adapters.retry_policy import RetryPolicy
from adapters.settings import Settings
from flows.runtime.retries import retry_condition
from flows.runtime.step_task import StepOutcome, execute_step, outputs_present, run_step


def spec_of(code: str, **fields: Any) -> StepSpec:
    return StepSpec(name="s", image="python:3.12-slim", args=["python", "-c", code], **fields)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (InfrastructureError("x"), True),
        (EngineUnavailableError("x"), True),
        (ProvisioningTimeoutError("x"), True),
        (EngineConnectionError("x"), True),
        (StepTimeoutError("x", timeout_s=1), True),
        (StepFailedError("x", step="s", exit_code=75, transient_exit=True), True),
        (StepFailedError("x", step="s", exit_code=1), False),
        (InvalidInputError("x"), False),
        (InvalidSpecError("x"), False),
        (CircuitOpenError("x", breaker="b", opened_at=0, probe_at=1), True),
        (ValueError("a bug"), False),
    ],
)
def test_retry_condition_follows_the_error_class(error: Exception, retried: bool) -> None:
    assert retry_condition(None, None, Failed(data=error)) is retried
    # The condition reads `transient` and nothing else: each error says it itself, pickled too.
    assert getattr(error, "transient", False) is retried
    assert getattr(pickle.loads(pickle.dumps(error)), "transient", False) is retried


async def test_outputs_present_reads_the_host_paths(tmp_path: Path) -> None:
    from adapters.local_runner import LocalRunner

    code = "import os; os.makedirs('/out'); open('/out/a.txt', 'w').write('a')"
    spec = spec_of(code, outputs={"/out": str(tmp_path / "o")})
    assert not outputs_present(spec)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "a.txt").write_text("a")
    assert not outputs_present(spec)  # a folder the platform cannot prove it wrote
    (tmp_path / "o" / "a.txt").unlink()
    await LocalRunner().run(spec)
    assert outputs_present(spec)


@pytest.mark.prefect
class TestThroughPrefect:
    """Real task runs on a Prefect test server, with the local runner (no mocks)."""

    async def test_success_is_completed_then_cached(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        spec = spec_of(f"print({str(tmp_path)!r})")

        @flow
        async def twice() -> tuple[StepOutcome, StepOutcome]:
            return await execute_step(spec, "local"), await execute_step(spec, "local")

        first, second = await twice()
        assert first.state == "Completed" and first.attempts == 1
        assert first.result is not None and first.result.stdout.strip() == str(tmp_path)
        assert second.state == "Cached" and second.attempts == 0

    async def test_non_zero_exit_fails_at_once_naming_step_code_and_stderr(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        spec = spec_of(
            f"import sys; print('cannot parse row 7', file=sys.stderr); sys.exit(3)  # {tmp_path}"
        )

        @flow
        async def once() -> StepOutcome:
            return await execute_step(spec, "local")

        outcome = await once()
        assert outcome.state == "Failed" and outcome.attempts == 1
        assert isinstance(outcome.error, StepFailedError)
        assert outcome.error.exit_code == 3
        assert "step 's'" in str(outcome.error) and "cannot parse row 7" in str(outcome.error)

    async def test_declared_transient_exit_is_retried_until_it_passes(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        counter = tmp_path / "attempts"
        code = (
            f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
            "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
            "sys.exit(75 if n < 3 else 0)"
        )
        spec = spec_of(code, transient_exit_codes=frozenset({75}))

        @flow
        async def once() -> StepOutcome:
            retry = RetryPolicy(attempts=3, backoff_s=0, jitter=0)
            state = await run_step(spec, "local", retry=retry, return_state=True)
            result = await state.aresult()
            return StepOutcome("s", state.name or "", result.attempt, 0.0, result=result)

        outcome = await once()
        assert outcome.state == "Completed" and outcome.attempts == 3
        assert counter.read_text() == "3"

    @pytest.mark.parametrize(("attempts", "runs", "state"), [(4, 3, "Completed"), (2, 2, "Failed")])
    async def test_a_direct_call_is_retried_as_the_retry_settings_say(
        self, prefect_api_url: str, tmp_path: Path, attempts: int, runs: int, state: str
    ) -> None:
        counter = tmp_path / "attempts"
        code = (
            f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
            "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
            "sys.exit(75 if n < 3 else 0)"
        )
        spec = spec_of(code, transient_exit_codes=frozenset({75}))
        settings = Settings(retry={"attempts": attempts, "backoff_s": 0, "jitter": 0})

        @flow
        async def direct() -> str:
            done = await run_step(spec, "local", settings=settings, return_state=True)
            return done.name or ""

        assert await direct() == state
        assert counter.read_text() == str(runs)

    async def test_secrets_never_reach_the_logs(
        self, prefect_api_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        spec = spec_of(
            f"import os; print('token is', os.environ['TOKEN'])  # {tmp_path}",
            secrets={"TOKEN": "hunter2-xyz"},
        )

        @flow
        async def once() -> StepOutcome:
            return await execute_step(spec, "local")

        with caplog.at_level("DEBUG"):
            outcome = await once()
        assert outcome.state == "Completed"
        assert "token is ***" in caplog.text
        assert "hunter2-xyz" not in caplog.text
