"""Helpers for the agents tests: definition files in a temporary folder, a fake clock, breakers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.breakers.breaker import Breaker, BreakerPolicy, reset_breakers


def minimal(**fields: Any) -> dict[str, Any]:
    """A valid container definition, with ``fields`` replacing or adding fields."""
    data: dict[str, Any] = {
        "name": "echo",
        "description": "Echoes its argument.",
        "capabilities": ["echo"],
        "image": "python:3.12-slim",
        "parameters": {"text": {"description": "what to echo"}},
        "command": ["python", "-c", "import sys; print(sys.argv[1])", "{text}"],
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def write_definition(folder: Path, data: dict[str, Any] | str, file: str | None = None) -> Path:
    """Write one definition file (a mapping as YAML, or raw text) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = file or (f"{data['name']}.yaml" if isinstance(data, dict) else "raw.yaml")
    path = folder / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


class FakeClock:
    """Epoch seconds that only move when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Breakers:
    """A breaker lookup for AgentManager: real Breakers on the fake clock, one per name."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.made: dict[str, Breaker] = {}

    def __call__(self, name: str, policy: BreakerPolicy | None) -> Breaker:
        if name not in self.made:
            self.made[name] = Breaker(name, policy or BreakerPolicy(), clock=self.clock)
        return self.made[name]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breakers(clock: FakeClock) -> Breakers:
    return Breakers(clock)


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """The process-wide breakers (engine:local, agent:...) start closed in every test."""
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def definitions(tmp_path: Path) -> Callable[..., Path]:
    """``definitions(data, ...)`` writes definition files into one folder and returns the folder."""
    folder = tmp_path / "agents"
    folder.mkdir()

    def write(*items: dict[str, Any]) -> Path:
        for item in items:
            write_definition(folder, item)
        return folder

    return write
