"""What the CLIs print when Prefect's machinery, not a step, fails: one paragraph with the fix."""

from __future__ import annotations

import pytest

from adapters.settings import Settings
from flows.ui.console import describe_infrastructure_error, run_flow_quietly


def test_embedded_server_timeout_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    text = describe_infrastructure_error(
        RuntimeError(
            "Timed out while attempting to connect to ephemeral Prefect API server. stdout: x"
        )
    )
    assert "did not start within 7 s" in text and "prefect server start" in text
    assert "#prefect-embedded-server-slow" in text and "stdout" not in text


def test_unexpected_errors_point_at_aiop_debug() -> None:
    assert "AIOP_DEBUG=1" in describe_infrastructure_error(ValueError("boom"))


def test_run_flow_quietly_exits_1_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    async def broken() -> None:
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    with pytest.raises(SystemExit) as info:
        run_flow_quietly(broken)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Prefect's embedded server") and "Traceback" not in err


def test_the_debug_setting_lets_the_exception_through() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_flow_quietly(broken, debug=Settings(debug=True).debug)
