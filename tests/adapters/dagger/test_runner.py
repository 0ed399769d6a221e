"""DaggerRunner against a loopback stand-in engine (tests/fakes/dagger_engine.py).

The stand-in fakes the engine at the network boundary: the real Dagger SDK, gql and httpx talk real
HTTP/GraphQL to it (introspection included), and it validates every query against the official
schema when that file is present. Provisioning is exercised with small scripts standing in for the
``dagger`` CLI. Only the opt-in ``dagger`` test uses a real engine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagger
import gql
import gql.transport.exceptions as gql_errors
import graphql
import httpx
import pytest
import tenacity
from dagger._exceptions import QueryErrorValue
from dagger.mod._exceptions import ModuleError
from graphql import GraphQLError

from adapters.contract import MASK, StepResult
from adapters.dagger import engine_process as _engine_process
from adapters.dagger.errors import ERROR_RULES, translate_error
from adapters.dagger.runner import DaggerRunner
from adapters.errors import (
    AiopError,
    EngineConnectionError,
    EngineUnavailableError,
    InvalidInputError,
    InvalidSpecError,
    ProvisioningTimeoutError,
    RegistryUnavailableError,
    StepFailedError,
    StepTimeoutError,
)
from adapters.ownership import MANIFEST
from adapters.runner import Runner
from tests.fakes import DIE, HANG, ExecOutcome, ExecRequest, FakeDaggerEngine
from tests.fakes.dagger_engine import (
    MIN_SCHEMA_PATH,
    OFFICIAL_SCHEMA_PATH,
    SCHEMA_ENV,
    official_schema,
)
from tests.fakes.session import ENGINE_ENV, short_runner, step_spec
from tests.services import REQUIRE_SERVICES_ENV, services_required

SECRET = "s3cr3t-value-42"
#: The engine settings of the shell that started pytest (only the opt-in real-engine test uses them).
_AMBIENTENGINE_ENV = {name: os.environ[name] for name in ENGINE_ENV if name in os.environ}
_AMBIENT_SESSION = "DAGGER_SESSION_PORT" in _AMBIENTENGINE_ENV
Lines = list[tuple[str, str]]


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_ambient_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the developer's shell says about engines, these tests pick their own."""
    for name in ENGINE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def runner() -> DaggerRunner:
    return short_runner()


spec = step_spec


def collector() -> tuple[Lines, Callable[[str, str], None]]:
    lines: Lines = []
    return lines, lambda stream, line: lines.append((stream, line))


def fake_cli(tmp_path: Path, body: str) -> Path:
    """An executable standing in for the ``dagger`` CLI (``dagger session ...``)."""
    script = tmp_path / "fake-dagger"
    script.write_text(body, encoding="utf-8")
    script.chmod(0o755)
    return script


_SERVING_CLI = f"""#!{sys.executable}
import json, os, sys
open(os.environ["FAKE_CLI_PIDFILE"], "w").write(str(os.getpid()))
if not os.environ.get("DAGGER_NO_NAG"):
    print("Setup tracing at https://dagger.cloud/traces/setup. To hide set DAGGER_NO_NAG=1",
          file=sys.stderr, flush=True)
for line in os.environ.get("FAKE_CLI_LINES", "").split("|"):
    print(line, file=sys.stderr, flush=True)
print(json.dumps({{"port": int(os.environ["FAKE_CLI_PORT"]),
                  "session_token": os.environ["FAKE_CLI_TOKEN"]}}), flush=True)
sys.stdin.read()
print("engine: session closed", file=sys.stderr, flush=True)
"""

_HANGING_CLI = """#!/bin/sh
echo $$ > "$FAKE_CLI_PIDFILE"
echo "engine: pulling engine image" >&2
sleep 3600
"""

_FAILING_CLI = """#!/bin/sh
echo "engine: cannot connect to the Docker daemon" >&2
exit 1
"""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def eventually_dead(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def no_progress_threads(within_s: float = 1.0) -> bool:
    """True once no refresh thread of a rich live display (the SDK's progress) is running."""
    deadline = time.monotonic() + within_s
    while any(type(t).__name__ == "_RefreshThread" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------


class TestRunnerShape:
    """The runner's identity and configuration."""

    def test_is_a_runner_with_backend_dagger(self) -> None:
        runner = DaggerRunner()
        assert isinstance(runner, Runner)
        assert runner.backend == "dagger"
        assert runner.provision_timeout_s == 60.0

    @pytest.mark.parametrize(
        "field", ["provision_timeout_s", "execute_timeout_s", "close_timeout_s"]
    )
    def test_rejects_non_positive_limits(self, field: str) -> None:
        with pytest.raises(InvalidInputError, match=field):
            DaggerRunner(**{field: 0})


class TestSuccessfulStep:
    """A step that exits 0 on the loopback stand-in engine."""

    async def test_returns_exit_code_output_duration_and_attempt(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(stdout="hello\n", stderr="warn\n")
        result = await runner.run(spec(), attempt=3)
        assert isinstance(result, StepResult)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "hello\n", "warn\n")
        assert (result.backend, result.attempt, result.step) == ("dagger", 3, "step-1")
        assert result.ok and result.duration_s > 0 and result.outputs == {}

    async def test_sends_image_args_env_workdir_and_caches_as_one_pipeline(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        await runner.run(
            spec(env={"MODE": "fast"}, workdir="/work", caches={"pip-cache": "/root/.cache/pip"})
        )
        [request] = engine.exec_requests
        assert request.image == "python:3.12-slim"
        assert request.args == ["python", "-c", "print('hi')"]
        assert request.env == {"MODE": "fast"}
        assert request.workdir == "/work"
        assert request.caches == {"/root/.cache/pip": "pip-cache"}
        assert request.expect == "SUCCESS"

    async def test_output_lines_reach_on_line_after_the_command(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(stdout="a\nb\n", stderr="c\n")
        lines, on_line = collector()
        await runner.run(spec(), on_line=on_line)
        assert lines[0][0] == "engine" and "image python:3.12-slim resolved to" in lines[0][1]
        assert lines[1:] == [("stdout", "a"), ("stdout", "b"), ("stderr", "c")]

    async def test_runs_the_exec_once_and_reads_its_results_by_id(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        await runner.run(spec())
        assert len(engine.exec_requests) == 1
        # sync runs it (exit 0, or an ExecError); stdout and stderr are read back by its ID.
        assert [c.field_name for c in engine.calls() if c.field_name in ("sync", "node")] == [
            "sync",
            "node",
            "node",
        ]


class TestNonZeroExit:
    """A failing command is a result, not an exception (loopback stand-in engine)."""

    async def test_non_zero_exit_comes_back_as_a_result(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(exit_code=3, stdout="partial\n", stderr="boom\n")
        result = await runner.run(spec())
        assert (result.exit_code, result.ok) == (3, False)
        # As the engine reports a failed command: its ExecError's output, trimmed.
        assert (result.stdout, result.stderr) == ("partial", "boom")


class TestEngineUnreachable:
    """No engine where the session says it is."""

    async def test_closed_port_raises_engine_unavailable_within_two_seconds(
        self, monkeypatch: pytest.MonkeyPatch, runner: DaggerRunner
    ) -> None:
        with FakeDaggerEngine() as fake:
            env = fake.session_env()
        # The stand-in is stopped: nothing listens on its port any more.
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        with pytest.raises(EngineUnavailableError) as caught:
            await runner.run(spec())
        assert time.monotonic() - started < 2.0
        assert type(caught.value) is EngineUnavailableError
        assert isinstance(caught.value.__cause__, dagger.ClientConnectionError)

    async def test_wrong_session_token_raises_engine_unavailable(
        self, engine: FakeDaggerEngine, monkeypatch: pytest.MonkeyPatch, runner: DaggerRunner
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "not-the-token")
        with pytest.raises(EngineUnavailableError):
            await runner.run(spec())


class TestEngineDiesMidStep:
    """The loopback stand-in engine dies while the exec query is in flight."""

    async def test_raises_engine_connection_error_quickly_never_retry_error(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = DIE
        started = time.monotonic()
        with pytest.raises(EngineConnectionError) as caught:
            await runner.run(spec())
        assert time.monotonic() - started < 2.0
        assert not engine.alive
        assert not any(isinstance(e, tenacity.RetryError) for e in chain(caught.value))
        assert isinstance(caught.value.__cause__, dagger.TransportError)
        assert len(engine.exec_requests) == 1  # not re-sent


class TestProvisioning:
    """No session in the environment: the SDK starts a CLI (here a script standing in for it)."""

    async def test_hung_cli_raises_provisioning_timeout_at_the_limit_and_is_killed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pidfile = tmp_path / "cli.pid"
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", str(fake_cli(tmp_path, _HANGING_CLI)))
        monkeypatch.setenv("FAKE_CLI_PIDFILE", str(pidfile))
        lines, on_line = collector()
        started = time.monotonic()
        with pytest.raises(ProvisioningTimeoutError) as caught:
            await DaggerRunner(provision_timeout_s=1.0).run(spec(), on_line=on_line)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 2.0
        assert "provision_timeout_s=1" in str(caught.value)
        assert "pulling engine image" in str(caught.value)
        assert ("engine", "engine: pulling engine image") in lines
        assert await eventually_dead(int(pidfile.read_text()))
        assert await no_progress_threads(), "the SDK's progress display was left running"

    async def test_a_hung_cli_is_killed_without_proc_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Where there is no /proc (macOS), the CLI is found with ps and killed all the same."""
        pidfile = tmp_path / "cli.pid"
        monkeypatch.setattr(_engine_process, "_PROC", tmp_path / "no-proc")
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", str(fake_cli(tmp_path, _HANGING_CLI)))
        monkeypatch.setenv("FAKE_CLI_PIDFILE", str(pidfile))
        with pytest.raises(ProvisioningTimeoutError):
            await DaggerRunner(provision_timeout_s=1.0).run(spec())
        assert await eventually_dead(int(pidfile.read_text()))

    async def test_engine_that_never_serves_the_session_raises_provisioning_timeout(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.hang_introspection = True
        started = time.monotonic()
        with pytest.raises(ProvisioningTimeoutError):
            await DaggerRunner(provision_timeout_s=0.5).run(spec())
        assert time.monotonic() - started < 1.5

    async def test_cli_session_runs_the_step_and_is_closed_afterwards(
        self, engine: FakeDaggerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pidfile = tmp_path / "cli.pid"
        for name, value in {
            "_EXPERIMENTAL_DAGGER_CLI_BIN": str(fake_cli(tmp_path, _SERVING_CLI)),
            "FAKE_CLI_PIDFILE": str(pidfile),
            "FAKE_CLI_PORT": str(engine.port),
            "FAKE_CLI_TOKEN": engine.token,
            "FAKE_CLI_LINES": "engine: starting",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DAGGER_SESSION_PORT")
        monkeypatch.delenv("DAGGER_SESSION_TOKEN")
        result = await DaggerRunner(provision_timeout_s=5.0).run(spec())
        assert result.exit_code == 0
        assert not alive(int(pidfile.read_text()))

    async def test_cli_that_cannot_start_an_engine_raises_engine_unavailable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", str(fake_cli(tmp_path, _FAILING_CLI)))
        with pytest.raises(EngineUnavailableError, match="cannot connect to the Docker daemon"):
            await DaggerRunner(provision_timeout_s=5.0).run(spec())
        assert await no_progress_threads(), "the SDK's progress display was left running"


class TestEngineLogLines:
    """Engine log lines (the CLI's stderr) reach on_line as they arrive, masked."""

    async def test_engine_lines_reach_on_line_masked(
        self, engine: FakeDaggerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in {
            "_EXPERIMENTAL_DAGGER_CLI_BIN": str(fake_cli(tmp_path, _SERVING_CLI)),
            "FAKE_CLI_PIDFILE": str(tmp_path / "cli.pid"),
            "FAKE_CLI_PORT": str(engine.port),
            "FAKE_CLI_TOKEN": engine.token,
            "FAKE_CLI_LINES": f"engine: starting|engine: token {SECRET} loaded",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DAGGER_SESSION_PORT")
        monkeypatch.delenv("DAGGER_SESSION_TOKEN")
        lines, on_line = collector()
        await DaggerRunner(provision_timeout_s=5.0).run(
            spec(secrets={"TOKEN": SECRET}), on_line=on_line
        )
        engine_lines = [line for stream, line in lines if stream == "engine"]
        assert engine_lines[:2] == ["engine: starting", f"engine: token {MASK} loaded"]
        assert not any("DAGGER_NO_NAG" in line for line in engine_lines)
        assert "engine: session closed" in engine_lines
        assert all(SECRET not in line for _, line in lines)
        # Engine lines arrive before the command's output.
        assert lines.index(("engine", "engine: starting")) < lines.index(
            ("stdout", "python -c print('hi')")
        )


class TestStepTimeout:
    """The command outlives spec.timeout_s on the loopback stand-in engine."""

    async def test_raises_step_timeout_at_the_limit(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = HANG
        started = time.monotonic()
        with pytest.raises(StepTimeoutError) as caught:
            await runner.run(spec(timeout_s=0.3))
        assert 0.3 <= time.monotonic() - started < 2.0
        assert caught.value.timeout_s == 0.3
        assert caught.value.step == "step-1"


class TestExportsUnderTheDeadline:
    """A stuck engine during the export is bounded by the step's timeout_s as well."""

    async def test_a_hanging_export_raises_step_timeout_at_the_limit(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(files={"/out/a.txt": "A"})
        engine.hang_export = True
        started = time.monotonic()
        with pytest.raises(StepTimeoutError):
            await runner.run(spec(timeout_s=0.5, outputs={"/out": str(tmp_path / "results")}))
        assert time.monotonic() - started < 3.0
        assert not (tmp_path / "results").exists()


class TestRequestTimeout:
    """execute_timeout_s bounds each request to the loopback stand-in engine."""

    async def test_a_request_past_execute_timeout_is_an_engine_connection_error(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.behaviour = HANG
        started = time.monotonic()
        with pytest.raises(EngineConnectionError, match="timed out"):
            await DaggerRunner(execute_timeout_s=0.3).run(spec(timeout_s=30))
        assert time.monotonic() - started < 1.5


class TestCancellation:
    """A caller cancelling the run (e.g. a flow timeout) is not swallowed."""

    async def test_cancelling_a_running_step_propagates_promptly(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = HANG
        task = asyncio.ensure_future(runner.run(spec(timeout_s=30)))
        await asyncio.sleep(0.3)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0


class TestConcurrency:
    """Runs are isolated: one connection each, in one event loop or in several threads."""

    async def test_concurrent_runs_in_one_loop_each_get_their_own_result(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(stdout=req.args[-1] + "\n")
        results = await asyncio.gather(
            *(runner.run(spec(name=f"s{i}", args=["echo", str(i)])) for i in range(4))
        )
        assert [r.stdout for r in results] == ["0\n", "1\n", "2\n", "3\n"]

    def test_runs_from_several_threads_each_with_its_own_loop(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(stdout=req.args[-1] + "\n")
        results: dict[int, str] = {}

        def work(i: int) -> None:
            results[i] = asyncio.run(runner.run(spec(args=["echo", str(i)]))).stdout

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert results == {i: f"{i}\n" for i in range(4)}


class TestSecrets:
    """Secrets travel as Dagger secrets and never show (loopback stand-in engine)."""

    async def test_secrets_go_through_set_secret_never_as_plain_env(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        await runner.run(spec(env={"MODE": "x"}, secrets={"API_KEY": SECRET}))
        [set_secret] = engine.calls("setSecret")
        assert set_secret.args["plaintext"] == SECRET
        [with_secret] = engine.calls("withSecretVariable")
        assert with_secret.args["name"] == "API_KEY"
        assert all(c.args["value"] != SECRET for c in engine.calls("withEnvVariable"))
        assert all(c.args["name"] != "API_KEY" for c in engine.calls("withEnvVariable"))
        carrying = [q.text for q in engine.queries if SECRET in q.text]
        assert len(carrying) == 1 and "setSecret" in carrying[0]
        assert engine.exec_requests[0].secret_env == {"API_KEY": SECRET}

    async def test_each_run_uses_a_unique_secret_name(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        await runner.run(spec(secrets={"API_KEY": SECRET}))
        await runner.run(spec(secrets={"API_KEY": SECRET}))
        names = [c.args["name"] for c in engine.calls("setSecret")]
        assert len(set(names)) == 2 and all(SECRET not in n for n in names)

    async def test_secret_values_are_masked_in_output_and_lines(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(
            stdout=f"key={req.secret_env['API_KEY']}\n", stderr=f"{SECRET}!\n"
        )
        lines, on_line = collector()
        result = await runner.run(spec(secrets={"API_KEY": SECRET}), on_line=on_line)
        assert (result.stdout, result.stderr) == (f"key={MASK}\n", f"{MASK}!\n")
        assert [line for line in lines if line[0] != "engine"] == [
            ("stdout", f"key={MASK}"),
            ("stderr", f"{MASK}!"),
        ]

    async def test_secret_values_are_masked_in_errors_and_their_causes(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        def leak(req: ExecRequest) -> ExecOutcome:
            raise GraphQLError(f"engine trouble with {req.secret_env['API_KEY']}")

        engine.behaviour = leak
        with pytest.raises(EngineConnectionError) as caught:
            await runner.run(spec(secrets={"API_KEY": SECRET}))
        printed = "".join(traceback.format_exception(caught.value))
        assert "engine trouble with" in printed
        assert SECRET not in printed


class TestMounts:
    """Host paths mounted into the step (loopback stand-in engine)."""

    async def test_directory_mounts_use_absolute_host_paths_and_read_only_flags(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        (tmp_path / "in").mkdir()
        (tmp_path / "work").mkdir()
        await runner.run(
            spec(
                mounts={
                    str(tmp_path / "in"): "/data/in",
                    str(tmp_path / "work"): {"target": "/data/work", "writable": True},
                }
            )
        )
        # The SDK resolves argument IDs concurrently: compare as sets.
        assert {c.args["path"] for c in engine.calls("directory") if c.type_name == "Host"} == {
            str(tmp_path / "in"),
            str(tmp_path / "work"),
        }
        mounted = {c.args["path"]: c.args["readOnly"] for c in engine.calls("withMountedDirectory")}
        assert mounted == {"/data/in": True, "/data/work": False}
        mounts = engine.exec_requests[0].mounts
        assert mounts["/data/in"].host_path == str(tmp_path / "in")

    async def test_file_mounts_use_host_file_and_with_mounted_file(
        self,
        engine: FakeDaggerEngine,
        runner: DaggerRunner,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        (tmp_path / "config.toml").write_text("x = 1\n")
        monkeypatch.chdir(tmp_path)
        await runner.run(spec(mounts={"config.toml": "/etc/app/config.toml"}))
        [host_file] = [c for c in engine.calls("file") if c.type_name == "Host"]
        assert host_file.args["path"] == str(tmp_path / "config.toml")  # made absolute
        [mount] = engine.calls("withMountedFile")
        assert mount.args["path"] == "/etc/app/config.toml"

    async def test_missing_mount_source_is_invalid_spec_before_any_engine_contact(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        with pytest.raises(InvalidSpecError, match="does not exist"):
            await runner.run(spec(mounts={str(tmp_path / "nope"): "/in"}))
        assert engine.queries == []


class TestOutputs:
    """Outputs exported to the host, atomically, only after exit 0 (loopback stand-in engine)."""

    @staticmethod
    def produce(exit_code: int = 0) -> Callable[[ExecRequest], ExecOutcome]:
        files = {"/out/a.txt": "A", "/out/sub/b.txt": "B", "/report.json": '{"ok": true}'}
        return lambda req: ExecOutcome(exit_code=exit_code, files=files)

    async def test_directory_and_file_outputs_land_at_their_host_paths(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        engine.behaviour = self.produce()
        report = tmp_path / "files" / "r.json"  # a file output goes into a folder it can own
        outputs = {"/out": str(tmp_path / "results"), "/report.json": str(report)}
        result = await runner.run(spec(outputs=outputs))
        assert result.outputs == outputs
        assert (tmp_path / "results" / "a.txt").read_text() == "A"
        assert (tmp_path / "results" / "sub" / "b.txt").read_text() == "B"
        assert report.read_text() == '{"ok": true}'
        assert sorted(p.name for p in tmp_path.iterdir()) == ["files", "results"]  # no leftovers
        assert sorted(p.name for p in report.parent.iterdir()) == [MANIFEST, "r.json"]

    async def test_exports_go_to_a_sibling_temporary_path_first(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        engine.behaviour = self.produce()
        await runner.run(spec(outputs={"/out": str(tmp_path / "results")}))
        [export] = engine.calls("export")
        landing = Path(export.args["path"])
        assert landing.parent == tmp_path and landing.name.startswith(".results.aiop-tmp-")

    async def test_an_earlier_output_is_replaced_and_a_users_file_in_it_kept(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(files={"/out/stale.txt": "old"})
        await runner.run(spec(outputs={"/out": str(tmp_path / "results")}))
        (tmp_path / "results" / "mine.txt").write_text("the user's")
        engine.behaviour = self.produce()
        # Another command: the same one would come back from the engine's cache of successes.
        changed = ["python", "-c", "print('again')"]
        await runner.run(spec(args=changed, outputs={"/out": str(tmp_path / "results")}))
        names = sorted(p.name for p in (tmp_path / "results").iterdir())
        assert names == [".aiop-manifest.json", "a.txt", "mine.txt", "sub"]
        assert [p.name for p in tmp_path.iterdir()] == ["results"]

    async def test_a_folder_the_platform_did_not_write_is_refused_before_the_engine(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        (tmp_path / "results").mkdir()
        (tmp_path / "results" / "stale.txt").write_text("the user's")
        engine.behaviour = self.produce()
        with pytest.raises(InvalidSpecError, match="did not"):
            await runner.run(spec(outputs={"/out": str(tmp_path / "results")}))
        assert engine.queries == []
        assert [p.name for p in (tmp_path / "results").iterdir()] == ["stale.txt"]

    async def test_nothing_is_exported_after_a_non_zero_exit(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        engine.behaviour = self.produce(exit_code=1)
        result = await runner.run(spec(outputs={"/out": str(tmp_path / "results")}))
        assert result.outputs == {}
        assert engine.calls("export") == []
        assert not (tmp_path / "results").exists()

    async def test_a_declared_output_the_step_did_not_write_is_invalid_spec(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        with pytest.raises(InvalidSpecError, match="/missing"):
            await runner.run(spec(outputs={"/missing": str(tmp_path / "m")}))

    async def test_a_destination_that_cannot_be_written_is_invalid_spec(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        (tmp_path / "a-file").write_text("not a folder")
        engine.behaviour = self.produce()
        with pytest.raises(InvalidSpecError, match="cannot write output"):
            await runner.run(spec(outputs={"/out": str(tmp_path / "a-file" / "results")}))

    async def test_an_engine_crash_mid_export_leaves_no_output_under_the_final_name(
        self, engine: FakeDaggerEngine, runner: DaggerRunner, tmp_path: Path
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(files={"/out/previous.txt": "kept"})
        await runner.run(spec(outputs={"/out": str(tmp_path / "results")}))
        engine.behaviour = self.produce()
        engine.die_during_export = True
        with pytest.raises(EngineConnectionError):
            await runner.run(spec(outputs={"/out": str(tmp_path / "results")}))
        assert [p.name for p in tmp_path.iterdir()] == ["results"]  # the half-written temp is gone
        names = sorted(p.name for p in (tmp_path / "results").iterdir())
        assert names == [".aiop-manifest.json", "previous.txt"]


class TestUserInputErrors:
    """Engine errors caused by the spec itself are InvalidSpecError (loopback stand-in engine)."""

    async def test_an_image_that_cannot_be_pulled_is_invalid_spec(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        engine.missing_images.add("no-such-image:1")
        with pytest.raises(InvalidSpecError, match="no-such-image:1"):
            await runner.run(spec(image="no-such-image:1"))

    async def test_other_query_errors_are_engine_connection_errors(
        self, engine: FakeDaggerEngine, runner: DaggerRunner
    ) -> None:
        def broken(req: ExecRequest) -> ExecOutcome:
            raise GraphQLError("buildkit: failed to solve: internal error")

        engine.behaviour = broken
        with pytest.raises(EngineConnectionError, match="internal error"):
            await runner.run(spec())


# ---------------------------------------------------------------------------------------------
# The translation table
# ---------------------------------------------------------------------------------------------


def _query_error(message: str, **extensions: Any) -> dagger.QueryError:
    request = gql.GraphQLRequest("{ version }")
    return dagger.QueryError([QueryErrorValue(message, extensions=dict(extensions))], request)


def _retry_error() -> tenacity.RetryError:
    attempt = tenacity.Future(attempt_number=5)
    attempt.set_exception(dagger.TransportError("Server disconnected"))
    return tenacity.RetryError(attempt)


#: One instance per foreign class in ERROR_RULES.
FOREIGN_FACTORIES: dict[type[BaseException], Callable[[], BaseException]] = {
    dagger.ExecError: lambda: _query_error(
        "process did not complete successfully",
        _type="EXEC_ERROR",
        cmd=["false"],
        exitCode=1,
        stdout="",
        stderr="nope",
    ),
    dagger.QueryError: lambda: _query_error("buildkit internal error"),
    dagger.InvalidQueryError: lambda: dagger.InvalidQueryError("Failed to build GraphQL query"),
    dagger.ClientConnectionError: lambda: dagger.ClientConnectionError(
        "All connection attempts failed"
    ),
    dagger.TransportError: lambda: dagger.TransportError("Server disconnected"),
    dagger.ClientError: lambda: dagger.ClientError("client"),
    dagger.DownloadError: lambda: dagger.DownloadError("no network"),
    dagger.SessionError: lambda: dagger.SessionError("exit status 1"),
    dagger.ProvisionError: lambda: dagger.ProvisionError("cannot provision"),
    ModuleError: lambda: ModuleError("module"),
    dagger.DaggerError: lambda: dagger.DaggerError("dagger"),
    tenacity.RetryError: _retry_error,
    gql_errors.TransportError: lambda: gql_errors.TransportConnectionFailed("dropped"),
    httpx.HTTPError: lambda: httpx.ConnectError("Connection refused"),
    graphql.GraphQLError: lambda: graphql.GraphQLError("bad"),
    ConnectionRefusedError: lambda: ConnectionRefusedError(111, "Connection refused"),
    OSError: lambda: PermissionError(13, "Permission denied"),
}

#: The mapping as the platform promises it, written independently of ERROR_RULES.
EXPECTED: list[tuple[type[BaseException], bool, type[AiopError]]] = [
    (dagger.ExecError, True, StepFailedError),
    (dagger.QueryError, True, EngineConnectionError),
    (dagger.InvalidQueryError, True, EngineConnectionError),
    (dagger.ClientConnectionError, False, EngineUnavailableError),
    (dagger.ClientConnectionError, True, EngineConnectionError),
    (dagger.TransportError, False, EngineUnavailableError),
    (dagger.TransportError, True, EngineConnectionError),
    (dagger.DownloadError, False, EngineUnavailableError),
    (dagger.SessionError, False, EngineUnavailableError),
    (dagger.ProvisionError, False, EngineUnavailableError),
    (tenacity.RetryError, True, EngineConnectionError),
    (tenacity.RetryError, False, EngineUnavailableError),
    (gql_errors.TransportError, True, EngineConnectionError),
    (httpx.HTTPError, False, EngineUnavailableError),
    (httpx.HTTPError, True, EngineConnectionError),
    (ConnectionRefusedError, False, EngineUnavailableError),
    (OSError, False, EngineUnavailableError),
]


class TestErrorTranslation:
    """Every foreign error maps to one platform error class (pure function, no engine)."""

    def test_every_rule_has_an_instance_to_check(self) -> None:
        assert {rule.foreign for rule in ERROR_RULES} == set(FOREIGN_FACTORIES)

    @pytest.mark.parametrize("rule", ERROR_RULES, ids=lambda r: r.foreign.__name__)
    def test_each_rule_maps_its_foreign_class_in_both_phases(self, rule: Any) -> None:
        exc = FOREIGN_FACTORIES[rule.foreign]()
        # The instance exercises this very rule (no earlier, more specific rule catches it).
        assert next(r for r in ERROR_RULES if isinstance(exc, r.foreign)) is rule
        assert type(translate_error(exc, connected=False)) is rule.connecting
        assert type(translate_error(exc, connected=True)) is rule.running

    @pytest.mark.parametrize(
        ("foreign", "connected", "expected"),
        EXPECTED,
        ids=[f"{f.__name__}-{'running' if c else 'connecting'}" for f, c, _ in EXPECTED],
    )
    def test_maps_to_the_promised_class(
        self, foreign: type[BaseException], connected: bool, expected: type[AiopError]
    ) -> None:
        error = translate_error(FOREIGN_FACTORIES[foreign](), connected=connected, spec=spec())
        assert type(error) is expected
        assert error.step == "step-1"

    def test_no_dagger_error_subclass_is_missing_from_the_table(self) -> None:
        def walk(cls: type[BaseException]) -> Iterator[type[BaseException]]:
            yield cls
            for sub in cls.__subclasses__():
                yield from walk(sub)

        in_table = {rule.foreign for rule in ERROR_RULES}
        missing = [
            f"{cls.__module__}.{cls.__qualname__}"
            for cls in walk(dagger.DaggerError)
            if cls not in in_table
            # Module-runtime errors (dagger.mod) never reach a client; their root has a rule.
            and not (issubclass(cls, ModuleError) and cls.__module__.startswith("dagger.mod"))
        ]
        assert missing == [], "add these to adapters.dagger.errors.ERROR_RULES (and to this test)"

    def test_exec_error_becomes_step_failed_with_exit_code_and_transient_flag(self) -> None:
        error = translate_error(
            FOREIGN_FACTORIES[dagger.ExecError](),
            connected=True,
            spec=spec(transient_exit_codes=[1]),
        )
        assert isinstance(error, StepFailedError)
        assert (error.exit_code, error.stderr_tail, error.transient) == (1, "nope", True)

    def test_retry_error_names_the_last_underlying_error(self) -> None:
        error = translate_error(_retry_error(), connected=True)
        assert "Server disconnected" in str(error)

    @pytest.mark.parametrize(
        "message",
        [
            "failed to resolve source metadata for docker.io/library/nope:1: pull access denied",
            "nope:1: not found",
            "invalid reference format: repository name must be lowercase",
        ],
    )
    def test_pull_failures_naming_the_image_are_invalid_spec(self, message: str) -> None:
        error = translate_error(_query_error(message), connected=True, spec=spec(image="nope:1"))
        assert type(error) is InvalidSpecError

    def test_a_command_missing_from_the_image_is_invalid_spec(self) -> None:
        message = 'exec: "pyhton": executable file not found in $PATH'
        error = translate_error(_query_error(message), connected=True, spec=spec(args=["pyhton"]))
        assert type(error) is InvalidSpecError and "pyhton" in str(error)

    def test_a_registry_outage_is_not_the_users_fault(self) -> None:
        message = (
            "failed to resolve source metadata for docker.io/library/nope:1: dial tcp: i/o timeout"
        )
        error = translate_error(_query_error(message), connected=True, spec=spec(image="nope:1"))
        assert type(error) is RegistryUnavailableError and error.transient

    def test_the_engines_trace_suffix_is_left_out_of_messages(self) -> None:
        message = (
            "lstat /x: no such file or directory [traceparent:0af7651916cd43dd-b7ad6b7169203331]"
        )
        error = translate_error(_query_error(message), connected=True, spec=spec())
        assert "traceparent" not in str(error) and "lstat /x" in str(error)

    def test_a_missing_host_path_named_by_the_engine_is_invalid_spec(self, tmp_path: Path) -> None:
        (tmp_path / "in").mkdir()
        step = spec(mounts={str(tmp_path / "in"): "/in"})
        message = f"lstat {tmp_path / 'in'}: no such file or directory"
        assert (
            type(translate_error(_query_error(message), connected=True, spec=step))
            is InvalidSpecError
        )

    def test_messages_never_contain_secret_values(self) -> None:
        step = spec(secrets={"API_KEY": SECRET})
        for factory in FOREIGN_FACTORIES.values():
            exc = factory()
            exc.args = (f"failed with {SECRET}",)
            for connected in (False, True):
                assert SECRET not in str(translate_error(exc, connected=connected, spec=step))


class TestSchemas:
    """The stand-in's hand-written schema agrees with the official one (when it is present)."""

    def test_minimal_schema_is_a_subset_of_the_official_schema(self) -> None:
        official = official_schema()
        if official is None:
            missing = (
                f"the official Dagger schema is not at {OFFICIAL_SCHEMA_PATH} (set {SCHEMA_ENV} to"
                " its path); without it no query is checked against the real engine's schema"
            )
            if services_required():
                pytest.fail(f"{missing}. {REQUIRE_SERVICES_ENV}=1 makes this a failure.")
            pytest.skip(f"{missing}; set {REQUIRE_SERVICES_ENV}=1 to fail instead of skipping.")
        minimal = graphql.build_schema(MIN_SCHEMA_PATH.read_text(encoding="utf-8"))
        problems = []
        for name, named in minimal.type_map.items():
            if name.startswith("__"):
                continue
            theirs = official.type_map.get(name)
            if theirs is None or type(theirs) is not type(named):
                problems.append(f"type {name}")
                continue
            for field_name, field in getattr(named, "fields", {}).items():
                their_field = theirs.fields.get(field_name)  # type: ignore[attr-defined]
                if their_field is None or str(their_field.type) != str(field.type):
                    problems.append(f"{name}.{field_name}")
                    continue
                for arg_name, arg in field.args.items():
                    their_arg = their_field.args.get(arg_name)
                    if (
                        their_arg is None
                        or str(their_arg.type) != str(arg.type)
                        or their_arg.default_value != arg.default_value
                    ):
                        problems.append(f"{name}.{field_name}({arg_name})")
            for value in getattr(named, "values", {}):
                if value not in theirs.values:  # type: ignore[attr-defined]
                    problems.append(f"{name}.{value}")
        assert problems == []


# ---------------------------------------------------------------------------------------------
# Opt-in: a real engine
# ---------------------------------------------------------------------------------------------


@pytest.mark.dagger
class TestRealEngine:
    """Against a real Dagger engine; skipped unless one is requested or a session is in the env."""

    async def test_runs_a_real_step(self, monkeypatch: pytest.MonkeyPatch) -> None:
        if os.environ.get("AIOP_TEST_REAL_DAGGER") != "1" and not _AMBIENT_SESSION:
            pytest.skip(
                "no real Dagger engine: set AIOP_TEST_REAL_DAGGER=1 with Docker running, or run"
                " the tests under `dagger run` (which provides a session)"
            )
        for name, value in _AMBIENTENGINE_ENV.items():
            monkeypatch.setenv(name, value)
        result = await DaggerRunner(provision_timeout_s=600).run(
            spec(
                image="alpine:3.20",
                args=["sh", "-c", "echo hello; echo oops >&2; exit 3"],
                timeout_s=600,
            )
        )
        assert (result.exit_code, result.stdout, result.stderr) == (3, "hello\n", "oops\n")
