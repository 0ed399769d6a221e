"""Skip-or-fail guards for tests that need a real service (Redis, PostgreSQL).

On a developer's fresh machine the services may not run: the test skips with a reason that says
what is missing and how to start it. In CI (``AIOP_REQUIRE_SERVICES=1``) a missing service is a
failure, so a broken service can never turn a green run into a silently skipped one.

Example:
    >>> from tests.services import require_redis
    >>> def test_something_shared() -> None:
    ...     require_redis("redis://127.0.0.1:6379/0")
    ...     ...
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = ["REQUIRE_SERVICES_ENV", "require_postgres", "require_redis", "services_required"]

#: Set to 1 (CI does) to turn "service not reachable" skips into failures.
REQUIRE_SERVICES_ENV = "AIOP_REQUIRE_SERVICES"

_TIMEOUT_S = 1.0

_HOW_TO_START = {
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
}


def services_required() -> bool:
    """True when missing services must fail the tests (``AIOP_REQUIRE_SERVICES=1``)."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip().lower() in {"1", "true", "yes"}


def _unavailable(service: str, where: str, reason: str) -> NoReturn:
    message = (
        f"{service} at {where} is not reachable ({reason}); start it "
        f"(e.g. `{_HOW_TO_START[service]}`) to run this test"
    )
    if services_required():
        pytest.fail(f"{message}. {REQUIRE_SERVICES_ENV}=1 makes this a failure.", pytrace=False)
    pytest.skip(f"{message}; set {REQUIRE_SERVICES_ENV}=1 to fail instead of skipping.")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` does not answer PING, or None when it does."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        return f"the URL is malformed: {exc}"
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def require_redis(url: str) -> None:
    """Skip (or fail, when required) unless a Redis server answers PING at ``url``.

    Args:
        url: a redis-py URL, e.g. ``redis://127.0.0.1:6379/0``.
    """
    problem = _redis_problem(url)
    if problem is not None:
        _unavailable("Redis", _redact(url), problem)


def _postgres_address(dsn: str) -> tuple[str, int]:
    """Host and port of a URL DSN (``postgresql://...``) or a key=value DSN (``host=... port=...``)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return parts.hostname or "localhost", parts.port or 5432
    fields = dict(item.split("=", 1) for item in dsn.split() if "=" in item)
    host = fields.get("host", "localhost")
    return ("localhost" if host.startswith("/") else host), int(fields.get("port", "5432"))


def require_postgres(dsn: str) -> None:
    """Skip (or fail, when required) unless a PostgreSQL server accepts connections for ``dsn``.

    The check opens a TCP connection and sends an SSL request, which every PostgreSQL server
    answers with one byte (``S`` or ``N``) before any authentication; no driver is needed.

    Args:
        dsn: ``postgresql://user@host:port/db`` or ``host=... port=... dbname=...``.
    """
    host, port = _postgres_address(dsn)
    where = f"{host}:{port}"
    answer = b""
    reason = None
    try:
        with socket.create_connection((host, port), timeout=_TIMEOUT_S) as sock:
            sock.settimeout(_TIMEOUT_S)
            sock.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))  # SSLRequest
            answer = sock.recv(1)
    except OSError as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if reason is not None:
        _unavailable("PostgreSQL", where, reason)
    if answer not in (b"S", b"N"):
        _unavailable(
            "PostgreSQL", where, f"the server there does not speak PostgreSQL ({answer!r})"
        )
