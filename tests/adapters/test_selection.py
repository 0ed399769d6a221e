"""Backend selection: the probe and the one line that says which runner runs steps and why."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from adapters import InvalidInputError, choose_backend, get_runner, probe_engine
from adapters.chaos import ChaosRunner, parse_plan
from adapters.local_runner import LocalRunner
from adapters.selection import _cached_probe, resolve_runner
from adapters.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "DAGGER_SESSION_PORT",
        "DAGGER_SESSION_TOKEN",
        "_EXPERIMENTAL_DAGGER_RUNNER_HOST",
    ):
        monkeypatch.delenv(var, raising=False)
    _cached_probe.cache_clear()
    yield
    _cached_probe.cache_clear()


@pytest.fixture
def listening_port() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class TestProbe:
    def test_existing_session_that_answers_is_reachable(
        self, monkeypatch: pytest.MonkeyPatch, listening_port: int
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(listening_port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "t")
        probe = probe_engine(timeout_s=1)
        assert probe.reachable and probe.kind == "session"

    def test_existing_session_that_does_not_answer_is_not(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(closed_port()))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "t")
        probe = probe_engine(timeout_s=1)
        assert not probe.reachable and "nothing answers" in probe.detail

    def test_remote_tcp_engine_is_connected_to(
        self, monkeypatch: pytest.MonkeyPatch, listening_port: int
    ) -> None:
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", f"tcp://127.0.0.1:{listening_port}")
        assert probe_engine(timeout_s=1).kind == "remote"
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", f"tcp://127.0.0.1:{closed_port()}")
        assert not probe_engine(timeout_s=1).reachable

    def test_no_runtime_says_why(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", "/nonexistent")
        probe = probe_engine(timeout_s=1)
        assert not probe.reachable and "no container runtime" in probe.detail


class TestChooseBackend:
    def test_auto_falls_back_to_local_in_one_plain_line(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", "/nonexistent")
        choice = choose_backend("auto")
        assert choice.backend == "local"
        assert "\n" not in choice.reason
        assert "local runner" in choice.reason and "Docker" in choice.reason

    def test_auto_picks_dagger_when_a_session_answers(
        self, monkeypatch: pytest.MonkeyPatch, listening_port: int
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(listening_port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "t")
        assert choose_backend("auto").backend == "dagger"

    def test_the_backend_setting_is_the_callers_to_pass(self) -> None:
        settings = Settings(backend="local")
        assert choose_backend(settings.backend).backend == "local"
        assert isinstance(get_runner(settings.backend), LocalRunner)

    def test_unknown_backend_is_refused_with_the_choices(self) -> None:
        with pytest.raises(InvalidInputError, match=r"'auto'.*'dagger' or 'local'"):
            choose_backend("kubernetes")


class TestProvisionTimeout:
    def test_the_dagger_runner_takes_the_given_limit(self) -> None:
        settings = Settings(dagger_provision_timeout_s=120)
        runner = get_runner("dagger", provision_timeout_s=settings.dagger_provision_timeout_s)
        assert runner.provision_timeout_s == 120.0  # type: ignore[attr-defined]
        assert get_runner("dagger").provision_timeout_s == 60.0  # type: ignore[attr-defined]


class TestResolveRunner:
    def test_the_engine_breaker_is_named_when_resolved_not_at_each_step(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "kube-pod://engine-a")
        resolved = resolve_runner("dagger", provision_timeout_s=5)
        monkeypatch.setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "kube-pod://engine-b")
        assert resolved.breaker_name == "engine:dagger:kube-pod://engine-a"
        assert resolved.backend == "dagger" and resolved.plan is None
        assert resolved.runner.provision_timeout_s == 5.0  # type: ignore[attr-defined]

    def test_a_fault_plan_travels_with_the_runner_it_wraps(self) -> None:
        plan = parse_plan("step=s,kind=permanent-exit")
        resolved = resolve_runner("local", plan=plan)
        assert isinstance(resolved.runner, ChaosRunner) and resolved.runner.plan is plan
        assert isinstance(resolved.runner.inner, LocalRunner)
        assert resolved.breaker_name == "engine:local" and resolved.plan is plan
