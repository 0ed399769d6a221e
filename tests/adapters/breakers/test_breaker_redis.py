"""Breaker state shared through Redis, and what happens while Redis is down.

Tests that need the Redis at ``AIOP_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) skip
when it is not reachable, or fail with ``AIOP_REQUIRE_SERVICES=1`` (CI). The outage tests need no
server: they point at a closed port, or start and stop their own ``redis-server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.breakers.breaker import Breaker, BreakerPolicy, get_breaker, reset_breakers
from adapters.errors import CircuitOpenError, EngineUnavailableError, InvalidInputError
from adapters.settings import Settings
from tests.processes import free_port
from tests.services import require_redis

REPO = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("AIOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DOWN_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
START = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise EngineUnavailableError("engine gone")


async def attempt(breaker: Breaker, fn: Callable[[], Any]) -> BaseException | None:
    try:
        await breaker.call(fn)
    except Exception as exc:
        return exc
    return None


def wipe(url: str, name: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        keys = list(client.scan_iter(match=f"aiop:breaker:{name}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def shared_redis() -> str:
    require_redis(REDIS_URL)
    return REDIS_URL


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A breaker name (and so a Redis namespace) of this test alone; its keys are wiped after."""
    unique = f"test:{request.node.name[:40]}:{uuid.uuid4().hex[:8]}"
    yield unique
    with contextlib.suppress(redis.RedisError):
        wipe(REDIS_URL, unique)


@pytest.fixture
def breakers() -> Iterator[list[Breaker]]:
    made: list[Breaker] = []
    yield made
    for breaker in made:
        breaker.dispose()


class RedisServer:
    """A throwaway redis-server on its own port, to stop and start again."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10.0
        try:
            while True:  # wait for the server to accept connections (not a timing assertion)
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; it is needed to simulate Redis going away")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


class TestSharedState:
    async def test_a_circuit_opened_in_another_process_rejects_calls_here(
        self, shared_redis: str, name: str, breakers: list[Breaker]
    ) -> None:
        script = textwrap.dedent(
            f"""
            import asyncio
            from adapters.breakers.breaker import Breaker, BreakerPolicy
            from adapters.errors import EngineUnavailableError

            breaker = Breaker({name!r}, BreakerPolicy(fail_max=2), redis_url={shared_redis!r})

            async def down():
                raise EngineUnavailableError("engine gone (seen by the other process)")

            async def main():
                for _ in range(2):
                    try:
                        await breaker.call(down)
                    except EngineUnavailableError:
                        pass
                print(breaker.state)

            asyncio.run(main())
            """
        )
        before = time.time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
        after = time.time()
        assert proc.returncode == 0, stderr.decode()
        assert stdout.decode().strip() == "open"

        here = Breaker(name, BreakerPolicy(fail_max=2), redis_url=shared_redis)
        breakers.append(here)
        called: list[bool] = []

        async def must_not_run() -> None:
            called.append(True)

        raised = await attempt(here, must_not_run)
        assert isinstance(raised, CircuitOpenError), raised
        assert called == []
        assert before - 1.0 <= raised.opened_at <= after + 1.0
        assert raised.probe_at == raised.opened_at + 30.0
        assert "seen by the other process" in str(raised)
        assert here.storage == "redis"

    async def test_two_breakers_share_state_counters_and_opened_at(
        self, shared_redis: str, name: str, breakers: list[Breaker]
    ) -> None:
        clock_a, clock_b = FakeClock(), FakeClock(START + 2.0)
        policy = BreakerPolicy(fail_max=2, reset_timeout=10.0)
        a = Breaker(name, policy, clock=clock_a, redis_url=shared_redis)
        b = Breaker(name, policy, clock=clock_b, redis_url=shared_redis)
        breakers.extend([a, b])
        await attempt(a, down)
        await attempt(b, down)  # the second consecutive failure, counted in Redis
        assert a.state == b.state == "open"
        raised = await attempt(b, ok)
        assert isinstance(raised, CircuitOpenError)
        assert raised.opened_at == START + 2.0  # b's clock opened it; a computes the same probe_at
        assert a.snapshot()["probe_at"] == START + 12.0
        clock_a.advance(12.0)
        assert await attempt(a, ok) is None  # a's probe closes it for everybody
        assert b.snapshot()["state"] == "closed"

    async def test_registry_breakers_use_the_redis_url_setting(
        self, shared_redis: str, name: str
    ) -> None:
        settings = Settings(breaker_redis_url=shared_redis)
        try:
            breaker = get_breaker(name, redis_url=settings.redis_url())
            assert breaker.storage == "redis"
            assert breaker.snapshot()["redis_url"] == shared_redis
        finally:
            reset_breakers()


class TestRedisDown:
    async def test_calls_work_in_process_with_one_warning_and_return_fast(
        self, name: str, breakers: list[Breaker], caplog: pytest.LogCaptureFixture
    ) -> None:
        breaker = Breaker(name, BreakerPolicy(fail_max=3), redis_url=DOWN_URL)
        breakers.append(breaker)
        slowest = 0.0
        with caplog.at_level(logging.DEBUG):
            for _ in range(10):
                started = time.perf_counter()
                assert await attempt(breaker, ok) is None
                slowest = max(slowest, time.perf_counter() - started)
            for _ in range(3):
                started = time.perf_counter()
                await attempt(breaker, down)
                slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 1.0
        assert breaker.state == "open"  # counted in-process
        assert breaker.storage == "memory (redis unreachable)"
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        unreachable = [r for r in warnings if "unreachable" in r.getMessage()]
        assert len(unreachable) == 1, [r.getMessage() for r in warnings]
        assert "127.0.0.1:1" in unreachable[0].getMessage()
        assert not [r for r in caplog.records if r.name == "pybreaker"]  # no traceback per call

    async def test_redis_is_tried_again_on_the_clock_not_on_every_call(
        self, name: str, breakers: list[Breaker], caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = FakeClock()
        breaker = Breaker(name, clock=clock, redis_url=DOWN_URL, redis_recheck_s=5.0)
        breakers.append(breaker)
        with caplog.at_level(logging.DEBUG, logger="aiop.breaker"):
            for _ in range(20):
                await attempt(breaker, ok)
            retries_before = sum("still unreachable" in r.getMessage() for r in caplog.records)
            clock.advance(5.0)
            for _ in range(20):
                await attempt(breaker, ok)
            retries_after = sum("still unreachable" in r.getMessage() for r in caplog.records)
        assert retries_before == 0
        assert retries_after == 1
        assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1

    async def test_resumes_redis_when_it_returns_and_publishes_an_outage_opening(
        self,
        own_redis: RedisServer,
        name: str,
        breakers: list[Breaker],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        clock = FakeClock()
        policy = BreakerPolicy(fail_max=2, reset_timeout=60.0)
        breaker = Breaker(name, policy, clock=clock, redis_url=own_redis.url, redis_recheck_s=5.0)
        breakers.append(breaker)
        assert await attempt(breaker, ok) is None
        assert breaker.storage == "redis"

        own_redis.stop()
        with caplog.at_level(logging.INFO, logger="aiop.breaker"):
            started = time.perf_counter()
            await attempt(breaker, down)
            await attempt(breaker, down)
            assert time.perf_counter() - started < 1.0
            assert breaker.storage == "memory (redis unreachable)"
            assert breaker.state == "open"  # opened in-process during the outage

            own_redis.start()  # same port, empty data
            clock.advance(5.0)
            raised = await attempt(breaker, ok)
        assert isinstance(raised, CircuitOpenError)
        assert breaker.storage == "redis"
        messages = [r.getMessage() for r in caplog.records]
        assert sum("unreachable" in m for m in messages) == 1
        assert sum("reachable again" in m for m in messages) == 1

        other = Breaker(name, policy, clock=clock, redis_url=own_redis.url)
        breakers.append(other)
        seen = await attempt(other, ok)
        assert isinstance(seen, CircuitOpenError)  # the outage opening was published
        assert seen.opened_at == START

    async def test_a_redis_unreachable_at_start_is_picked_up_when_it_comes(
        self, tmp_path: Path, name: str, breakers: list[Breaker]
    ) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed; it is needed to simulate Redis arriving")
        server = RedisServer(free_port(), tmp_path)
        clock = FakeClock()
        breaker = Breaker(name, clock=clock, redis_url=server.url, redis_recheck_s=5.0)
        breakers.append(breaker)
        assert await attempt(breaker, ok) is None
        assert breaker.storage == "memory (redis unreachable)"
        server.start()
        try:
            clock.advance(5.0)
            assert await attempt(breaker, ok) is None
            assert breaker.storage == "redis"
        finally:
            server.stop()


class TestRedisUrl:
    def test_an_unusable_url_is_invalid_input_naming_the_fix(self) -> None:
        with pytest.raises(InvalidInputError, match="is invalid") as info:
            Breaker("engine:bad-url", redis_url="http://127.0.0.1:6379/0")
        assert "redis" in str(info.value).lower()

    async def test_a_client_that_decodes_responses_shares_the_same_state(
        self, shared_redis: str, name: str, breakers: list[Breaker]
    ) -> None:
        # pybreaker's Redis storage needed bytes; the platform reads either.
        decoding = Breaker(
            name, BreakerPolicy(fail_max=1), redis_url=f"{shared_redis}?decode_responses=True"
        )
        plain = Breaker(name, BreakerPolicy(fail_max=1), redis_url=shared_redis)
        breakers.extend([decoding, plain])
        await attempt(decoding, down)
        assert isinstance(await attempt(plain, ok), CircuitOpenError)

    def test_the_password_never_shows(self, name: str, breakers: list[Breaker]) -> None:
        breaker = Breaker(name, redis_url="redis://user:s3cret@127.0.0.1:1/0")
        breakers.append(breaker)
        snap = breaker.snapshot()
        assert "s3cret" not in str(snap)
        assert snap["redis_url"] == "redis://user:***@127.0.0.1:1/0"
