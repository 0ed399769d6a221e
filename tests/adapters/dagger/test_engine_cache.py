"""Failures are never kept by the engine: DaggerRunner against the stand-in's engine-like cache.

The real engine keeps every exec result whose exit code the query allowed, across sessions, and
gives it back for the same container definition without running the command again; errors are not
kept (dagql/cache.go, core/container.go). The stand-in does the same (``keep_results``, on by
default) and counts the commands it really ran, so these tests see whether a failed step would be
replayed from the engine's cache instead of running again.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dagger
import pytest
from prefect import flow

from adapters.dagger.errors import normalized_image
from adapters.errors import (
    EngineConnectionError,
    InvalidSpecError,
    RegistryUnavailableError,
    StepFailedError,
    StepTimeoutError,
)
from adapters.retry_policy import RetryPolicy
from flows.runtime.step_task import StepOutcome, execute_step, run_step
from tests.fakes import ExecOutcome, ExecRequest, FakeDaggerEngine, exec_standin_engine
from tests.fakes.dagger_engine import normalized_image_ref
from tests.fakes.session import ENGINE_ENV, short_runner, step_spec


@pytest.fixture
def exec_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    """The stand-in in exec mode (commands really run on the host), results kept."""
    for name in ENGINE_ENV:
        monkeypatch.delenv(name, raising=False)
    with exec_standin_engine() as fake:
        yield fake


runner = short_runner


spec = step_spec


class TestTheStandInKeepsResultsLikeTheEngine:
    """The model itself: successes are replayed, errors are not."""

    async def test_a_success_is_kept_across_sessions(self, engine: FakeDaggerEngine) -> None:
        engine.behaviour = lambda req: ExecOutcome(stdout="once\n")
        first = await runner().run(spec())
        second = await runner().run(spec())
        assert (first.stdout, second.stdout) == ("once\n", "once\n")
        assert engine.executions == 1
        assert engine.sessions == 2

    async def test_a_changed_definition_runs_again(self, engine: FakeDaggerEngine) -> None:
        await runner().run(spec())
        await runner().run(spec(env={"X": "1"}))
        assert engine.executions == 2

    async def test_identical_execs_in_flight_run_once_and_share_the_outcome(
        self, engine: FakeDaggerEngine
    ) -> None:
        # dagql/cache.go ongoingCalls: the second caller waits for the first one's call.
        def slow(request: ExecRequest) -> ExecOutcome:
            time.sleep(0.3)
            return ExecOutcome(stdout="shared\n")

        engine.behaviour = slow
        first, second = await asyncio.gather(runner().run(spec()), runner().run(spec()))
        assert (first.stdout, second.stdout) == ("shared\n", "shared\n")
        assert engine.executions == 1

    async def test_identical_failing_execs_in_flight_share_the_error_and_it_is_not_kept(
        self, engine: FakeDaggerEngine
    ) -> None:
        def slow_failure(request: ExecRequest) -> ExecOutcome:
            time.sleep(0.3)
            return ExecOutcome(exit_code=3, stderr="boom\n")

        engine.behaviour = slow_failure
        results = await asyncio.gather(runner().run(spec()), runner().run(spec()))
        assert [r.exit_code for r in results] == [3, 3] and engine.executions == 1
        await runner().run(spec())
        assert engine.executions == 2

    async def test_an_exec_whose_request_is_gone_is_cancelled_and_not_kept(
        self, engine: FakeDaggerEngine
    ) -> None:
        # dagql/cache.go wait: the last caller gone, the call is cancelled.
        def slow(request: ExecRequest) -> ExecOutcome:
            time.sleep(0.6)
            return ExecOutcome(stdout="late\n")

        engine.behaviour = slow
        with pytest.raises(StepTimeoutError):
            await runner().run(spec(timeout_s=0.2))
        await asyncio.sleep(0.6)  # the stand-in's command has ended by now
        engine.behaviour = lambda request: ExecOutcome(stdout="again\n")
        assert (await runner().run(spec())).stdout == "again\n"
        assert engine.executions == 2

    async def test_an_exec_error_reads_as_the_engine_words_it(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.behaviour = lambda request: ExecOutcome(exit_code=2, stderr="  nope \n")
        async with dagger.Connection(dagger.Config(retry=None)) as client:
            with pytest.raises(dagger.ExecError) as caught:
                await client.container().from_("alpine").with_exec(["false"]).sync()
        error = caught.value
        assert re.fullmatch(r"exit code: 2 \[traceparent:[0-9a-f]{32}-[0-9a-f]{16}\]", str(error))
        assert (error.command, error.exit_code, error.stderr) == (["false"], 2, "nope")


class TestFailuresAreNeverKept:
    """A failing command must run again next time, not come back from the engine's cache."""

    async def test_the_runner_asks_for_the_default_expectation(
        self, engine: FakeDaggerEngine
    ) -> None:
        await runner().run(spec())
        assert [r.expect for r in engine.exec_requests] == ["SUCCESS"]

    async def test_a_failed_step_runs_again_on_the_next_run(self, engine: FakeDaggerEngine) -> None:
        engine.behaviour = lambda req: ExecOutcome(exit_code=3, stdout="out\n", stderr="boom\n")
        first = await runner().run(spec())
        second = await runner().run(spec())
        assert (first.exit_code, second.exit_code) == (3, 3)
        assert engine.executions == 2

    async def test_the_failed_result_carries_exit_code_and_output_tails(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(
            exit_code=3, stdout="partial\n", stderr="x" * 200_000 + "\nboom\n"
        )
        result = await runner().run(spec())
        assert (result.exit_code, result.ok, result.stdout) == (3, False, "partial")
        assert result.stderr.endswith("boom")

    @pytest.mark.parametrize("code", [137, 143, 128 + 11])
    async def test_a_signal_death_is_a_result_with_its_exit_code(
        self, engine: FakeDaggerEngine, code: int
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(exit_code=code, stderr="Killed\n")
        result = await runner().run(spec())
        assert (result.exit_code, result.stderr) == (code, "Killed")
        await runner().run(spec())
        assert engine.executions == 2

    async def test_an_oom_kill_says_so_on_the_engine_stream(self, engine: FakeDaggerEngine) -> None:
        engine.behaviour = lambda req: ExecOutcome(exit_code=137)
        lines: list[tuple[str, str]] = []
        await runner().run(spec(), on_line=lambda stream, line: lines.append((stream, line)))
        [(stream, line)] = [item for item in lines if "137" in item[1]]
        assert stream == "engine" and "out of memory" in line

    async def test_a_failure_then_a_success_gives_the_success(
        self, engine: FakeDaggerEngine
    ) -> None:
        outcomes = iter([ExecOutcome(exit_code=75), ExecOutcome(stdout="ok\n")])
        engine.behaviour = lambda req: next(outcomes)
        first = await runner().run(spec(transient_exit_codes=[75]))
        second = await runner().run(spec(transient_exit_codes=[75]))
        assert (first.exit_code, second.exit_code, second.stdout) == (75, 0, "ok\n")


def _counting(counter: Path, fail_until: int, code: int) -> str:
    """A step that counts its runs in ``counter`` and exits ``code`` until run ``fail_until``."""
    return (
        f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        f"print('run', n); sys.exit({code} if n < {fail_until} else 0)"
    )


@pytest.mark.prefect
class TestThroughRunStep:
    """run_step on the Dagger path: retries and later flow runs really run the command again."""

    async def test_a_declared_transient_exit_really_runs_again_on_retry(
        self, prefect_api_url: str, exec_engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        counter = tmp_path / "attempts"
        step = spec(
            name="flaky",
            args=["python", "-c", _counting(counter, 3, 75)],
            transient_exit_codes=[75],
        )

        @flow
        async def once() -> StepOutcome:
            retry = RetryPolicy(attempts=3, backoff_s=0, jitter=0)
            state = await run_step(step, "dagger", retry=retry, return_state=True)
            result = await state.aresult()
            return StepOutcome("flaky", state.name or "", result.attempt, 0.0, result=result)

        outcome = await once()
        assert outcome.state == "Completed" and outcome.attempts == 3
        assert counter.read_text() == "3"
        assert exec_engine.executions == 3

    async def test_a_failed_step_runs_again_on_the_next_flow_run(
        self, prefect_api_url: str, exec_engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        counter = tmp_path / "runs"
        step = spec(name="blip", args=["python", "-c", _counting(counter, 2, 1)])

        @flow
        async def pipeline() -> StepOutcome:
            return await execute_step(step, "dagger")

        first = await pipeline()
        assert first.state == "Failed" and isinstance(first.error, StepFailedError)
        second = await pipeline()
        assert second.state == "Completed", second.error
        assert counter.read_text() == "2"
        assert exec_engine.executions == 2


# ---------------------------------------------------------------------------------------------
# Errors as the engine words them (core/schema/container.go, cmd/init/main.go)
# ---------------------------------------------------------------------------------------------

_DOCKER_HUB = "registry-1.docker.io/v2/library/alpine/manifests/3.99"


class TestImageErrorsAsTheEngineWordsThem:
    """The engine names the normalised reference; the class follows the registry's answer."""

    @pytest.mark.parametrize(
        "image",
        [
            "alpine:3.99",
            "library/alpine:3.99",
            "docker.io/alpine:3.99",
            "index.docker.io/alpine:3.99",
        ],
    )
    async def test_an_image_that_does_not_exist_is_invalid_spec_however_it_is_written(
        self, engine: FakeDaggerEngine, image: str
    ) -> None:
        engine.missing_images.add("docker.io/library/alpine:3.99")
        with pytest.raises(InvalidSpecError) as caught:
            await runner().run(spec(image=image))
        assert image in str(caught.value) and "docker.io/library/alpine:3.99" in str(caught.value)
        assert engine.executions == 0

    @pytest.mark.parametrize(
        "cause",
        [
            "pull access denied, repository does not exist or may require authorization: server"
            " message: insufficient_scope: authorization failed",
            "failed to authorize: failed to fetch oauth token: unexpected status from GET request"
            " to https://ghcr.io/token?scope=repository%3Aacme%2Fprivate%3Apull: 401 Unauthorized",
            f"unexpected status from HEAD request to https://{_DOCKER_HUB}: 403 Forbidden",
        ],
        ids=["denied", "unauthorized", "forbidden"],
    )
    async def test_a_registry_refusal_is_permanent(
        self, engine: FakeDaggerEngine, cause: str
    ) -> None:
        engine.image_errors["alpine:3.99"] = cause
        with pytest.raises(InvalidSpecError, match="log in to the registry"):
            await runner().run(spec(image="alpine:3.99"))

    @pytest.mark.parametrize(
        "cause",
        [
            f'failed to do request: Head "https://{_DOCKER_HUB}": dial tcp: lookup'
            " registry-1.docker.io: i/o timeout",
            f"unexpected status from HEAD request to https://{_DOCKER_HUB}: 429 Too Many Requests",
            "toomanyrequests: You have reached your unauthenticated pull rate limit.",
            f"unexpected status from HEAD request to https://{_DOCKER_HUB}: 503 Service Unavailable",
            "context deadline exceeded",
        ],
        ids=["timeout", "429", "rate-limit", "503", "deadline"],
    )
    async def test_a_registry_outage_is_transient(
        self, engine: FakeDaggerEngine, cause: str
    ) -> None:
        engine.image_errors["docker.io/library/alpine:3.99"] = cause
        with pytest.raises(RegistryUnavailableError) as caught:
            await runner().run(spec(image="alpine:3.99"))
        assert caught.value.transient and "docker.io/library/alpine:3.99" in str(caught.value)

    async def test_an_image_without_a_build_for_the_engines_platform_is_invalid_spec(
        self, engine: FakeDaggerEngine
    ) -> None:
        # engine/server/resolver/resolver.go: "no manifest matches requested platform for <digest>"
        engine.image_errors["alpine:3.99"] = (
            "no manifest matches requested platform for sha256:" + "ab" * 32
        )
        with pytest.raises(InvalidSpecError, match="no build for the engine's platform") as caught:
            await runner().run(spec(image="alpine:3.99"))
        assert not caught.value.transient and engine.executions == 0

    async def test_an_invalid_reference_is_invalid_spec(self, engine: FakeDaggerEngine) -> None:
        with pytest.raises(InvalidSpecError, match="Alpine:3"):
            await runner().run(spec(image="Alpine:3"))


class TestMissingExecutable:
    """The engine's init cannot start args[0]: exit 1 with its message, made a helpful error."""

    async def test_a_missing_command_is_invalid_spec_naming_it_and_the_image(
        self, exec_engine: FakeDaggerEngine
    ) -> None:
        with pytest.raises(InvalidSpecError) as caught:
            await runner().run(spec(image="alpine:3.20", args=["pyhton", "-V"]))
        message = str(caught.value)
        assert "'pyhton'" in message and "alpine:3.20" in message
        assert 'exec: "pyhton": executable file not found in $PATH' in message
        assert exec_engine.executions == 1

    async def test_a_command_that_prints_the_same_words_among_others_is_a_failed_result(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.behaviour = lambda req: ExecOutcome(
            exit_code=1, stderr='step 3\nexec: "pyhton": executable file not found in $PATH\n'
        )
        result = await runner().run(spec(args=["pyhton"]))
        assert result.exit_code == 1


@pytest.mark.parametrize(
    ("image", "engine_ref"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        ("library/alpine:3.20", "docker.io/library/alpine:3.20"),
        ("docker.io/alpine:3.20", "docker.io/library/alpine:3.20"),
        ("acme/tool", "docker.io/acme/tool:latest"),
        ("ghcr.io/acme/tool:1", "ghcr.io/acme/tool:1"),
        ("localhost:5000/tool", "localhost:5000/tool:latest"),
        ("python@sha256:" + "a" * 64, "docker.io/library/python@sha256:" + "a" * 64),
    ],
)
def test_the_adapter_names_images_as_the_engine_does(image: str, engine_ref: str) -> None:
    assert normalized_image_ref(image) == engine_ref  # the stand-in's model of the engine
    assert normalized_image(image) == engine_ref  # the adapter's own


class TestMountExclude:
    """Bytecode in a mounted folder is left out, so it cannot make an unchanged step run again."""

    async def test_new_bytecode_in_a_mounted_folder_keeps_the_engines_result(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        src = tmp_path / "src"
        src.mkdir()
        (src / "m.py").write_text("x = 1\n")
        step = spec(mounts={str(src): "/src"})
        await runner().run(step)
        (src / "__pycache__").mkdir()
        (src / "__pycache__" / "m.cpython-312.pyc").write_bytes(b"\x00\x01")
        await runner().run(step)
        assert engine.executions == 1
        [call, *_] = [c for c in engine.calls("directory") if c.type_name == "Host"]
        assert "**/__pycache__" in call.args["exclude"]

    async def test_a_changed_source_file_runs_again(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        src = tmp_path / "src"
        src.mkdir()
        (src / "m.py").write_text("x = 1\n")
        step = spec(mounts={str(src): "/src"})
        await runner().run(step)
        (src / "m.py").write_text("x = 22\n")
        await runner().run(step)
        assert engine.executions == 2


async def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(
    exec_engine: FakeDaggerEngine,
) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    lines: list[tuple[str, str]] = []
    result = await runner().run(
        spec(args=["python", "-c", code]), on_line=lambda s, line: lines.append((s, line))
    )
    assert result.exit_code == 137
    assert any(s == "engine" and "SIGKILL (exit 137)" in line for s, line in lines)


class TestStepImageBuiltOnce:
    """requirements become one pip layer under the command, with a pip cache volume."""

    async def test_requirements_are_installed_as_a_layer_under_the_command(
        self, engine: FakeDaggerEngine
    ) -> None:
        await runner().run(spec(requirements=["duckdb==1.1.3"]))
        [request] = engine.exec_requests
        [layer] = request.setup
        assert layer[:4] == ("python", "-m", "pip", "install") and layer[-1] == "duckdb==1.1.3"
        assert request.args == ["python", "-c", "print('hi')"]
        assert any(c.args["path"] == "/root/.cache/pip" for c in engine.calls("withMountedCache"))

    async def test_other_requirements_are_another_definition(
        self, engine: FakeDaggerEngine
    ) -> None:
        await runner().run(spec(requirements=["duckdb==1.1.3"]))
        await runner().run(spec(requirements=["duckdb==1.1.3"]))
        await runner().run(spec(requirements=["duckdb==1.2.0"]))
        assert engine.executions == 2

    async def test_the_layer_runs_before_the_command_once_for_the_engine(
        self, engine: FakeDaggerEngine
    ) -> None:
        await runner().run(spec(requirements=["duckdb==1.1.3"]))
        await runner().run(spec(requirements=["duckdb==1.1.3"], args=["python", "-V"]))
        assert [r.args[-1] for r in engine.layer_requests] == ["duckdb==1.1.3"]
        assert engine.executions == 2

    async def test_a_failing_install_fails_the_step_with_pips_exit_and_the_command_never_runs(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.layer_behaviour = lambda request: ExecOutcome(
            exit_code=1, stderr="ERROR: No matching distribution found for duckdb==9.9\n"
        )
        lines: list[tuple[str, str]] = []
        result = await runner().run(
            spec(requirements=["duckdb==9.9"]), on_line=lambda s, line: lines.append((s, line))
        )
        assert result.exit_code == 1 and "No matching distribution" in result.stderr
        assert engine.executions == 0 and len(engine.layer_requests) == 1
        assert any(
            s == "engine" and "installing the step's requirements (duckdb==9.9)" in line
            for s, line in lines
        ), lines
        engine.layer_behaviour = None  # the failure was not kept: the retry installs again
        assert (await runner().run(spec(requirements=["duckdb==9.9"]))).exit_code == 0
        assert len(engine.layer_requests) == 2

    async def test_no_requirements_no_layer(self, engine: FakeDaggerEngine) -> None:
        await runner().run(spec())
        assert engine.exec_requests[0].setup == ()
        assert engine.calls("withMountedCache") == []


class TestLazyPullErrorsByRule:
    """The layers are fetched when a container is first evaluated, and a failure then reads
    ``pull image "<ref@digest>": ...`` or ``import image ...`` (core/container_image.go)."""

    async def test_a_registry_outage_while_pulling_is_transient_and_names_the_registry(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.pull_errors["python:3.12-slim"] = (
            "failed to copy: httpReadSeeker: failed open: unexpected status code"
            " https://registry-1.docker.io/v2/library/python/blobs/sha256:00: 503 Service"
            " Unavailable"
        )
        with pytest.raises(RegistryUnavailableError, match="could not be reached or failed") as e:
            await runner().run(spec())
        assert e.value.transient and "@sha256:" in str(e.value)
        assert engine.executions == 0

    async def test_a_registry_refusing_the_layers_is_invalid_spec(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.pull_errors["python:3.12-slim"] = (
            "failed to copy: httpReadSeeker: failed open: content at"
            " https://registry-1.docker.io/v2/library/python/manifests/sha256:00 not found:"
            " not found"
        )
        with pytest.raises(InvalidSpecError, match=r"the registry refused docker\.io/library/"):
            await runner().run(spec())

    async def test_an_image_the_engine_cannot_store_is_its_hosts_trouble(
        self, engine: FakeDaggerEngine
    ) -> None:
        engine.import_errors["python:3.12-slim"] = (
            "failed to extract layer sha256:00: write /var/lib/dagger/x: no space left on device"
        )
        with pytest.raises(EngineConnectionError, match=r"could not store it .*no space left"):
            await runner().run(spec())


class TestImageTagsNeedTheRegistryInEverySession:
    """A tag is resolved against its registry once per session, even when the engine holds the
    image; only a digest reference resolves locally (core/schema/container.go ``from``,
    engine/server/resolver/resolver.go ``tryLocalCanonicalConfig``)."""

    _OUTAGE = (
        'failed to do request: Head "https://registry-1.docker.io/v2/library/python/manifests/'
        '3.12-slim": dial tcp: lookup registry-1.docker.io: no such host'
    )

    async def test_a_tag_the_engine_holds_still_needs_the_registry_in_a_new_session(
        self, engine: FakeDaggerEngine
    ) -> None:
        await runner().run(spec())
        engine.new_session()
        engine.registry_outage = self._OUTAGE
        with pytest.raises(RegistryUnavailableError) as caught:
            await runner().run(spec(args=["python", "-c", "print('again')"]))
        message = str(caught.value)
        assert "no such host" in message and "once in every session" in message
        assert "python:3.12-slim@sha256:" in message  # how to pin it

    async def test_the_digest_a_tag_resolved_to_runs_without_the_registry(
        self, engine: FakeDaggerEngine
    ) -> None:
        lines: list[tuple[str, str]] = []
        await runner().run(spec(), on_line=lambda s, line: lines.append((s, line)))
        said = [line for s, line in lines if s == "engine" and "resolved to" in line]
        assert len(said) == 1, lines
        pinned = said[0].split(" write ")[1].split(" ")[0]
        assert pinned == f"python:3.12-slim@{engine.registry['docker.io/library/python:3.12-slim']}"
        engine.new_session()
        engine.registry_outage = self._OUTAGE
        asked = len(engine.registry_requests)
        result = await runner().run(spec(image=pinned, args=["python", "-c", "print('offline')"]))
        assert result.exit_code == 0 and engine.executions == 2
        assert len(engine.registry_requests) == asked  # the engine held it: no registry request

    async def test_a_moved_tag_is_a_new_image_in_a_new_session(
        self, engine: FakeDaggerEngine
    ) -> None:
        await runner().run(spec())
        engine.registry["docker.io/library/python:3.12-slim"] = "sha256:" + "cd" * 32
        await runner().run(spec())  # same session: the tag is not looked up again
        assert engine.executions == 1
        engine.new_session()
        await runner().run(spec())
        assert engine.executions == 2  # the tag moved: another image, run again
