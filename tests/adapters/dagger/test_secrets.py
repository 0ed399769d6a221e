"""Multi-line secrets through DaggerRunner (loopback stand-in engine): no key line in clear in the
lines, the result, a failed step's error or an engine error."""

from __future__ import annotations

import traceback

import pytest
from graphql import GraphQLError

from adapters.contract import StepSpec
from adapters.dagger.runner import DaggerRunner
from adapters.errors import EngineConnectionError
from tests.fakes import ExecOutcome, ExecRequest, FakeDaggerEngine
from tests.flows.runtime.test_step_secrets import body_lines, pem_key

KEY = pem_key(3)


def spec() -> StepSpec:
    return StepSpec(
        name="pem",
        image="python:3.12-slim",
        args=["python", "-c", "print(1)"],
        timeout_s=10,
        secrets={"KEY": KEY},
    )


def runner() -> DaggerRunner:
    return DaggerRunner(provision_timeout_s=5.0, close_timeout_s=5.0)


def leaked(*texts: str) -> list[str]:
    return [line for line in body_lines(KEY) for text in texts if line in text]


def printed_line_by_line(req: ExecRequest, exit_code: int) -> ExecOutcome:
    key = req.secret_env["KEY"]
    text = "".join(f"got {line} ok\n" for line in key.splitlines())
    return ExecOutcome(exit_code=exit_code, stdout=text, stderr=key.replace("\n", "\r\n") + "\n")


async def test_lines_and_result_show_no_key_line(engine: FakeDaggerEngine) -> None:
    engine.behaviour = lambda req: printed_line_by_line(req, 0)
    lines: list[str] = []
    result = await runner().run(spec(), on_line=lambda stream, line: lines.append(line))
    assert result.exit_code == 0 and "got *** ok" in result.stdout
    assert not leaked(result.stdout, result.stderr, *lines)


async def test_a_signal_death_shows_no_key_line(engine: FakeDaggerEngine) -> None:
    # Exit codes 128-191 come back from the engine as an ExecError (core/container.go).
    engine.behaviour = lambda req: printed_line_by_line(req, 137)
    lines: list[str] = []
    result = await runner().run(spec(), on_line=lambda stream, line: lines.append(line))
    assert result.exit_code == 137
    assert not leaked(result.stdout, result.stderr, *lines)


async def test_an_engine_error_quoting_key_lines_shows_none(engine: FakeDaggerEngine) -> None:
    def leak(req: ExecRequest) -> ExecOutcome:
        raise GraphQLError("engine trouble near " + req.secret_env["KEY"].splitlines()[3])

    engine.behaviour = leak
    with pytest.raises(EngineConnectionError) as caught:
        await runner().run(spec())
    printed = "".join(traceback.format_exception(caught.value))
    assert "engine trouble near" in printed and not leaked(printed)
