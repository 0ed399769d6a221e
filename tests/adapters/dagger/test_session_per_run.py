"""One engine session per flow run, shared by its steps (DaggerRunner.session, stand-in engine).

The stand-in counts the client sessions it serves (each one introspects the schema once, as with the
real engine), so these tests see how many sessions a group of steps costs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.contract import StepSpec
from adapters.dagger.runner import DaggerRunner
from adapters.errors import (
    EngineConnectionError,
    EngineUnavailableError,
    ProvisioningTimeoutError,
)
from adapters.selection import engine_for_run
from flows.data_pipeline.flow import data_pipeline
from tests.adapters.dagger.test_runner import _HANGING_CLI, _SERVING_CLI, eventually_dead, fake_cli
from tests.fakes import DIE, DROP, ExecOutcome, FakeDaggerEngine, exec_standin_engine
from tests.fakes.session import ENGINE_ENV, standin_session

Lines = list[tuple[str, str]]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    """The stand-in as the session, each exec echoing its last argument."""
    with standin_session(monkeypatch) as fake:
        fake.behaviour = lambda req: ExecOutcome(stdout=req.args[-1] + "\n")
        yield fake


def runner() -> DaggerRunner:
    return DaggerRunner(provision_timeout_s=5.0, close_timeout_s=5.0)


def spec(i: int, **overrides: Any) -> StepSpec:
    fields: dict[str, Any] = {
        "name": f"step-{i}",
        "image": "python:3.12-slim",
        "args": ["echo", str(i)],
        "timeout_s": 10,
    }
    fields.update(overrides)
    return StepSpec.model_validate(fields)


class TestOneSessionForManySteps:
    async def test_concurrent_steps_share_one_session(self, engine: FakeDaggerEngine) -> None:
        async with runner().session():
            results = await asyncio.gather(*(runner().run(spec(i)) for i in range(6)))
            more = await runner().run(spec(9))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
        assert more.stdout == "9\n"
        assert engine.sessions == 1
        assert engine.executions == 7

    async def test_without_a_session_block_each_run_opens_its_own(
        self, engine: FakeDaggerEngine
    ) -> None:
        for i in range(3):
            await runner().run(spec(i))
        assert engine.sessions == 3

    async def test_a_run_in_another_thread_never_uses_this_loops_session(
        self, engine: FakeDaggerEngine
    ) -> None:
        got: dict[str, str] = {}

        def elsewhere() -> None:
            got["stdout"] = asyncio.run(runner().run(spec(7))).stdout

        async with runner().session():
            await runner().run(spec(1))
            thread = threading.Thread(target=elsewhere)
            thread.start()
            await asyncio.to_thread(thread.join, 20)
        assert got == {"stdout": "7\n"}
        assert engine.sessions == 2  # this loop's one, and the thread's own

    async def test_nested_blocks_reuse_the_outer_session(self, engine: FakeDaggerEngine) -> None:
        async with runner().session():
            async with runner().session():
                await runner().run(spec(1))
            await runner().run(spec(2))
        assert engine.sessions == 1


class TestEngineDeathInASharedSession:
    async def test_death_is_fast_and_typed_and_the_next_run_opens_a_new_session(
        self, engine: FakeDaggerEngine
    ) -> None:
        async with runner().session():
            engine.behaviour = DIE
            started = time.monotonic()
            with pytest.raises(EngineConnectionError):
                await runner().run(spec(1))
            assert time.monotonic() - started < 2.0
            # The engine is gone: the retry tries a new session, which fails at once, typed.
            started = time.monotonic()
            with pytest.raises(EngineUnavailableError):
                await runner().run(spec(2))
            assert time.monotonic() - started < 2.0


class TestOpeningTheSession:
    async def test_a_hung_cli_is_bounded_by_the_sessions_limit(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ENGINE_ENV:
            monkeypatch.delenv(name, raising=False)
        pidfile = tmp_path / "cli.pid"
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", str(fake_cli(tmp_path, _HANGING_CLI)))
        monkeypatch.setenv("FAKE_CLI_PIDFILE", str(pidfile))
        started = time.monotonic()
        with pytest.raises(ProvisioningTimeoutError):
            async with runner().session(provision_timeout_s=1.0):
                pytest.fail("the session never opened")
        assert 1.0 <= time.monotonic() - started < 2.5
        assert await eventually_dead(int(pidfile.read_text()))

    async def test_engine_lines_go_to_the_sessions_sink_and_step_output_to_the_step(
        self, engine: FakeDaggerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in {
            "_EXPERIMENTAL_DAGGER_CLI_BIN": str(fake_cli(tmp_path, _SERVING_CLI)),
            "FAKE_CLI_PIDFILE": str(tmp_path / "cli.pid"),
            "FAKE_CLI_PORT": str(engine.port),
            "FAKE_CLI_TOKEN": engine.token,
            "FAKE_CLI_LINES": "engine: starting",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DAGGER_SESSION_PORT")
        monkeypatch.delenv("DAGGER_SESSION_TOKEN")
        session_lines: Lines = []
        step_lines: dict[int, Lines] = {0: [], 1: []}
        async with runner().session(on_line=lambda s, line: session_lines.append((s, line))):
            await asyncio.gather(
                *(
                    runner().run(
                        spec(i), on_line=lambda s, line, i=i: step_lines[i].append((s, line))
                    )
                    for i in (0, 1)
                )
            )
        assert ("engine", "engine: starting") in session_lines
        resolved = [line for _, line in session_lines if "resolved to" in line]
        assert len(resolved) == 1 and resolved[0].startswith("image python:3.12-slim resolved to")
        assert step_lines == {0: [("stdout", "0")], 1: [("stdout", "1")]}
        assert engine.sessions == 1


# ---------------------------------------------------------------------------------------------
# A flow run: the backend is decided by opening the run's session
# ---------------------------------------------------------------------------------------------


class TestEngineForRun:
    async def test_auto_opens_the_runs_session_and_steps_use_it(
        self, engine: FakeDaggerEngine
    ) -> None:
        async with engine_for_run("auto") as choice:
            assert choice.backend == "dagger"
            await asyncio.gather(*(runner().run(spec(i)) for i in range(3)))
        assert engine.sessions == 1

    async def test_auto_falls_back_to_local_in_one_line_when_the_session_cannot_open(
        self, engine: FakeDaggerEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "not-the-token")  # the port answers, no session
        async with engine_for_run("auto") as choice:
            assert choice.backend == "local"
        assert "\n" not in choice.reason
        assert choice.reason.startswith("The Dagger engine could not be started")
        assert "local runner" in choice.reason

    async def test_auto_falls_back_when_the_first_run_limit_passes(
        self, engine: FakeDaggerEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        engine.hang_introspection = True
        started = time.monotonic()
        async with engine_for_run("auto", first_run_timeout_s=0.5) as choice:
            assert choice.backend == "local"
        assert time.monotonic() - started < 2.0
        assert "AIOP_DAGGER_FIRST_RUN_TIMEOUT_S" in choice.reason

    async def test_an_explicit_dagger_that_cannot_start_raises(
        self, engine: FakeDaggerEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "not-the-token")
        with pytest.raises(EngineUnavailableError):
            async with engine_for_run("dagger"):
                pytest.fail("no session, no run")


@pytest.mark.prefect
class TestSessionsPerPipelineRun:
    async def test_a_pipeline_run_opens_one_session(
        self, prefect_api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ENGINE_ENV:
            monkeypatch.delenv(name, raising=False)
        with exec_standin_engine() as fake:
            summary = await data_pipeline(
                rows=300,
                seed=3,
                partitions=3,
                output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"),
                backend="dagger",
            )
        assert summary["input_rows"] == 300
        steps = 4 + 3  # ingest, validate, aggregate, report and three transforms
        assert fake.executions == steps
        assert fake.sessions == 1


class TestHostReadsInOneSession:
    """``host.directory`` and ``host.file`` are cached per client for the session unless
    ``noCache`` (core/schema/host.go): a path read again after it changed would come back as the
    first snapshot. A run's steps share one session, and earlier steps change what later ones
    mount (their outputs), so every read asks for the path as it is now."""

    async def test_a_folder_changed_between_two_steps_of_the_run_is_read_anew(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "x.txt").write_text("first")
        seen: list[str] = []

        def read(request: Any) -> ExecOutcome:
            seen.append((Path(request.mounts["/in"].snapshot) / "x.txt").read_text())
            return ExecOutcome()

        engine.behaviour = read
        async with runner().session():
            await runner().run(spec(1, mounts={str(folder): "/in"}))
            (folder / "x.txt").write_text("second, longer")
            await runner().run(spec(1, mounts={str(folder): "/in"}))
        assert seen == ["first", "second, longer"]

    async def test_a_file_changed_between_two_steps_of_the_run_is_read_anew(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        path = tmp_path / "config.toml"
        path.write_text("a = 1\n")
        seen: list[str] = []

        def read(request: Any) -> ExecOutcome:
            seen.append(Path(request.mounts["/etc/x.toml"].snapshot).read_text())
            return ExecOutcome()

        engine.behaviour = read
        async with runner().session():
            await runner().run(spec(1, mounts={str(path): "/etc/x.toml"}))
            path.write_text("a = 22\n")
            await runner().run(spec(1, mounts={str(path): "/etc/x.toml"}))
        assert seen == ["a = 1\n", "a = 22\n"]


class TestOneConnectionFailureInASharedSession:
    """The SDK's reconnecting GraphQL session closes the session's one HTTP client for every
    request in flight when one request's connection fails; the runner opens sessions without
    it, so a broken connection fails its own step only."""

    @staticmethod
    def reset_a_while_b_runs(request: Any) -> Any:
        if request.args[-1] == "a":
            time.sleep(0.3)
            return DROP  # a's connection is reset; the engine goes on serving
        time.sleep(1.0)
        return ExecOutcome(stdout=f"{request.args[-1]} done\n")

    async def test_one_steps_broken_connection_fails_that_step_only(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.behaviour = self.reset_a_while_b_runs
        async with runner().session():
            a, b = await asyncio.gather(
                runner().run(spec(1, args=["echo", "a"])),
                runner().run(spec(2, args=["echo", "b"])),
                return_exceptions=True,
            )
            later = await runner().run(spec(3, args=["echo", "c"]))
        assert isinstance(a, EngineConnectionError) and a.transient
        assert not isinstance(b, BaseException) and b.stdout == "b done\n", b
        assert later.stdout == "c done\n" and engine.sessions == 2  # a's failure: a new session

    async def test_a_step_still_running_on_a_replaced_session_finishes_there(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.behaviour = self.reset_a_while_b_runs

        async def after_a_failed() -> Any:
            await asyncio.sleep(0.6)  # a's session is replaced now, while b still runs on it
            return await runner().run(spec(3, args=["echo", "c"]))

        async with runner().session():
            a, b, c = await asyncio.gather(
                runner().run(spec(1, args=["echo", "a"])),
                runner().run(spec(2, args=["echo", "b"])),
                after_a_failed(),
                return_exceptions=True,
            )
        assert isinstance(a, EngineConnectionError)
        assert [getattr(r, "stdout", r) for r in (b, c)] == ["b done\n", "c done\n"]

    @pytest.mark.prefect
    async def test_through_run_step_the_failed_step_is_retried_and_the_other_kept(
        self, prefect_api_url: str, engine: FakeDaggerEngine
    ) -> None:
        from prefect import flow

        from adapters.retry_policy import RetryPolicy
        from flows.runtime.step_task import execute_step

        first = {"a", "b"}

        def behaviour(request: Any) -> Any:
            name = request.args[-1]
            if name in first:
                first.discard(name)
                return self.reset_a_while_b_runs(request)
            return ExecOutcome(stdout=f"{name} done\n")

        engine.behaviour = behaviour
        retry = RetryPolicy(attempts=2, backoff_s=0, jitter=0)

        @flow
        async def two_steps() -> list[str]:
            async with engine_for_run("dagger"):
                outcomes = await asyncio.gather(
                    execute_step(spec(1, args=["echo", "a"]), "dagger", retry=retry),
                    execute_step(spec(2, args=["echo", "b"]), "dagger", retry=retry),
                )
            return [
                f"{o.state}:{o.attempts}:{o.result.stdout if o.result else ''}" for o in outcomes
            ]

        assert await two_steps() == ["Completed:2:a done\n", "Completed:1:b done\n"]
        assert sorted(r.args[-1] for r in engine.exec_requests) == ["a", "a", "b"]

    async def test_at_most_100_requests_of_a_session_are_in_flight_and_the_rest_wait(
        self, engine: FakeDaggerEngine
    ) -> None:
        release = threading.Event()
        lock = threading.Lock()
        running = {"now": 0, "most": 0}

        def held(request: Any) -> ExecOutcome:
            with lock:
                running["now"] += 1
                running["most"] = max(running["most"], running["now"])
            release.wait(20)
            with lock:
                running["now"] -= 1
            return ExecOutcome(stdout="ok\n")

        engine.behaviour = held

        async def release_when_full() -> None:
            for _ in range(400):
                if running["now"] >= 100:
                    break
                await asyncio.sleep(0.025)
            await asyncio.sleep(0.3)  # the 101st, if it could, would have arrived by now
            release.set()

        async with runner().session():
            steps = [runner().run(spec(i, timeout_s=30)) for i in range(101)]
            results, _ = await asyncio.gather(asyncio.gather(*steps), release_when_full())
        assert running["most"] == 100  # httpx's default pool: 100 connections
        assert all(r.exit_code == 0 for r in results)  # the 101st waited, it did not fail
