"""Credentials in URLs never reach a log record, a snapshot, an error or a printed report."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from adapters.breakers.breaker import Breaker, BreakerPolicy, get_breaker, reset_breakers
from adapters.errors import EngineUnavailableError, InvalidInputError
from adapters.redaction import redact_url, redact_urls
from adapters.settings import Settings

PASSWORD = "pw-s3cret-9f2"


@pytest.fixture
def fresh_breakers() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


async def _down() -> None:
    raise EngineUnavailableError("engine gone")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://127.0.0.1:1/0?password={PASSWORD}",
        f"redis://:{PASSWORD}@127.0.0.1:1/0",
        f"redis://default:{PASSWORD}@127.0.0.1:1/0",
        f"redis://127.0.0.1:1/0?username=u&password={PASSWORD}&socket_timeout=1",
    ],
)
async def test_a_redis_password_is_never_logged_nor_shown(
    url: str,
    caplog: pytest.LogCaptureFixture,
    fresh_breakers: None,
) -> None:
    settings = Settings(breaker_redis_url=url)
    assert PASSWORD not in repr(settings)
    with caplog.at_level(logging.DEBUG):
        breaker = get_breaker(
            "engine:redaction", BreakerPolicy(fail_max=1), redis_url=settings.redis_url()
        )
        with pytest.raises(EngineUnavailableError):
            await breaker.call(_down)
        snapshot = breaker.snapshot()
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(snapshot)
    assert "127.0.0.1:1" in repr(snapshot)


def test_an_invalid_redis_url_error_hides_the_password() -> None:
    url = f"http://user:{PASSWORD}@127.0.0.1:1/0"  # not a Redis scheme
    with pytest.raises(InvalidInputError) as info:
        Breaker("engine:bad-url", redis_url=url)
    assert PASSWORD not in str(info.value) and "is invalid" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"redis://127.0.0.1/0?password={PASSWORD}", "redis://127.0.0.1/0?password=***"),
        (f"https://user:{PASSWORD}@prefect.example/api", "https://user:***@prefect.example/api"),
        (
            f"postgresql+asyncpg://app:{PASSWORD}@db:5432/prefect?sslmode=require",
            "postgresql+asyncpg://app:***@db:5432/prefect?sslmode=require",
        ),
        (f"http://h/api?token={PASSWORD}&x=1", "http://h/api?token=***&x=1"),
        (f"http://h/api?api_key={PASSWORD}", "http://h/api?api_key=***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_in_free_text_are_redacted() -> None:
    text = f"cannot reach redis://:{PASSWORD}@host:6379/0 (nonnumeric port: '{PASSWORD}@host')"
    assert PASSWORD not in redact_urls(text, f"redis://:{PASSWORD}@host:6379/0")
    assert "redis://:***@host:6379/0" in redact_urls(text)
