"""Fixtures shared by the adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeDaggerEngine
from tests.fakes.session import standin_session


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    """A running stand-in engine that the SDK finds as the existing session."""
    with standin_session(monkeypatch) as fake:
        yield fake
