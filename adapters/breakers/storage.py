"""Where a breaker keeps its state: in this process, or shared in Redis with an in-process fallback.

pybreaker's state machine reads and writes its state through a ``CircuitBreakerStorage``. This
module gives it one storage that

* keeps ``opened_at`` as epoch seconds from the breaker's injected clock (pybreaker itself stamps
  ``datetime.now()``, which a fake clock cannot move), and the last infrastructure error beside it;
* with a Redis URL, delegates to pybreaker's ``CircuitRedisStorage`` (one namespace per breaker,
  ``aiop:breaker:<name>``) so every process and worker sees the same circuit, and stores
  ``opened_at`` and the last error under the same namespace;
* never hangs or raises because Redis is down: the client has short socket timeouts and no retry,
  the first Redis error switches the breaker to its in-process copy with exactly one warning, and
  Redis is tried again every ``recheck_s`` seconds (one info line when it is back).

Every write goes to the in-process copy too, so the fallback starts from the last state this
process saw. When Redis returns, its state wins, except that a circuit this process opened during
the outage is published (the freshest evidence that the target is down).

Not public: :class:`adapters.breakers.breaker.Breaker` builds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar, cast

import pybreaker
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from adapters.errors import InvalidInputError
from adapters.redaction import redact_url, redact_urls

__all__: list[str] = []

logger = logging.getLogger("aiop.breaker")

T = TypeVar("T")

#: Socket timeouts of the Redis client, seconds: a dead or black-holed Redis costs at most this.
REDIS_TIMEOUT_S = 0.25
#: How often a breaker that fell back to in-process state tries Redis again, seconds (its clock).
REDIS_RECHECK_S = 5.0

_STATES = frozenset({pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN})


def make_redis_client(url: str) -> redis.Redis:
    """A Redis client that fails fast: short timeouts, no retry, bytes responses.

    Raises:
        InvalidInputError: the URL is malformed or asks for ``decode_responses``.
    """
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    except ValueError as exc:
        raise InvalidInputError(
            f"breaker Redis URL {redact_url(url)!r} is invalid ({redact_urls(str(exc), url)});"
            " set the breaker Redis URL setting "
            "(or redis_url=) to e.g. redis://127.0.0.1:6379/0, or unset it for in-process state"
        ) from exc
    if client.get_connection_kwargs().get("decode_responses"):
        raise InvalidInputError(
            f"breaker Redis URL {redact_url(url)!r} sets decode_responses; pybreaker's Redis "
            "storage needs bytes: remove decode_responses from the URL"
        )
    return client


class _RedisDown(Exception):
    """A Redis command failed. Deliberately not a ``RedisError``: pybreaker's Redis storage catches
    those, logs a traceback per call and carries on with made-up values; this one escapes to
    :class:`SharedStorage`, which switches to its in-process copy."""


class _FailFastClient:
    """The few Redis commands pybreaker's storage and this module use, raising ``_RedisDown``."""

    def __init__(self, client: redis.Redis, url: str) -> None:
        self._client = client
        self._url = url

    def _do(self, command: Callable[[], T]) -> T:
        try:
            return command()
        except RedisError as exc:
            text = redact_urls(f"{type(exc).__name__}: {exc}", self._url)
            raise _RedisDown(text) from None

    def get(self, key: str) -> bytes | None:
        return self._do(lambda: cast("bytes | None", self._client.get(key)))

    def set(self, key: str, value: str | int | float) -> object:
        return self._do(lambda: self._client.set(key, value))

    def setnx(self, key: str, value: str | int) -> object:
        return self._do(lambda: self._client.setnx(key, value))

    def incr(self, key: str) -> object:
        return self._do(lambda: self._client.incr(key))

    def close(self) -> None:
        self._client.close()


class SharedStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage with clock-based ``opened_at`` and Redis-with-fallback sharing.

    Args:
        breaker: the breaker's name (namespace and log lines).
        clock: the breaker's clock, epoch seconds.
        redis_url: share the state through this Redis; None keeps it in this process.
        recheck_s: seconds between attempts to reach Redis again after it failed.
    """

    def __init__(
        self,
        breaker: str,
        clock: Callable[[], float],
        redis_url: str | None = None,
        recheck_s: float = REDIS_RECHECK_S,
    ) -> None:
        super().__init__("aiop-redis" if redis_url else "aiop-memory")
        self._breaker = breaker
        self._clock = clock
        self._recheck_s = recheck_s
        self._memory = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._local_opened_at: float | None = None
        self._local_last_error: str | None = None
        self.namespace = f"aiop:breaker:{breaker}"
        self.redis_url = redact_url(redis_url) if redis_url else None
        self._client = (
            _FailFastClient(make_redis_client(redis_url), redis_url) if redis_url else None
        )
        self._redis: pybreaker.CircuitRedisStorage | None = None
        self._down_since: float | None = None
        self._next_attempt = float("-inf")
        #: The error to store beside ``opened_at`` when pybreaker opens the circuit next.
        self.pending_last_error: str | None = None

    # -- where the state lives -------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``memory``, ``redis`` or ``memory (redis unreachable)``."""
        if self._client is None:
            return "memory"
        return "redis" if self._redis is not None else "memory (redis unreachable)"

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _shared(self) -> pybreaker.CircuitRedisStorage | None:
        """The Redis storage when it is usable now; reconnects at most every ``recheck_s``."""
        if self._client is None or self._redis is not None:
            return self._redis
        now = self._clock()
        if now < self._next_attempt:
            return None
        self._next_attempt = now + self._recheck_s
        try:
            shared = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED,
                cast("redis.Redis", self._client),
                namespace=self.namespace,
                fallback_circuit_state=pybreaker.STATE_CLOSED,
            )
            self._resume(shared)
        except _RedisDown as exc:
            self._went_down(exc)
            return None
        if self._down_since is not None:
            logger.info(
                "breaker %r: Redis at %s is reachable again; sharing the circuit state again",
                self._breaker,
                self.redis_url,
            )
        self._down_since = None
        self._redis = shared
        return shared

    def _resume(self, shared: pybreaker.CircuitRedisStorage) -> None:
        """Publish a circuit this process opened while Redis was down; otherwise Redis wins."""
        assert self._client is not None
        down_since = self._down_since
        opened = self._local_opened_at
        if (
            down_since is not None
            and self._memory.state == pybreaker.STATE_OPEN
            and opened is not None
            and opened >= down_since
            and shared.state != pybreaker.STATE_OPEN
        ):
            self._client.set(self._key("opened_at"), repr(opened))
            self._client.set(self._key("last_error"), self._local_last_error or "")
            shared.state = pybreaker.STATE_OPEN

    def _went_down(self, exc: _RedisDown) -> None:
        self._redis = None
        if self._down_since is None:
            self._down_since = self._clock()
            self._next_attempt = self._down_since + self._recheck_s
            logger.warning(
                "breaker %r: Redis at %s is unreachable (%s); using in-process circuit state "
                "and trying Redis again every %g s",
                self._breaker,
                self.redis_url,
                exc,
                self._recheck_s,
            )
        else:
            logger.debug(
                "breaker %r: Redis at %s still unreachable (%s)", self._breaker, self.redis_url, exc
            )

    def _read(self, op: Callable[[pybreaker.CircuitRedisStorage], T], local: Callable[[], T]) -> T:
        shared = self._shared()
        if shared is not None:
            try:
                return op(shared)
            except _RedisDown as exc:
                self._went_down(exc)
        return local()

    def _write(
        self, op: Callable[[pybreaker.CircuitRedisStorage], object], local: Callable[[], object]
    ) -> None:
        local()
        shared = self._shared()
        if shared is not None:
            try:
                op(shared)
            except _RedisDown as exc:
                self._went_down(exc)

    # -- pybreaker's storage interface -------------------------------------------------------

    @property
    def state(self) -> str:
        """The circuit state: ``closed``, ``open`` or ``half-open``."""

        def shared_state(shared: pybreaker.CircuitRedisStorage) -> str:
            value = shared.state
            if value not in _STATES:  # a foreign or corrupted key: keep going on our own copy
                logger.warning(
                    "breaker %r: ignoring unknown state %r in Redis", self._breaker, value
                )
                return self._memory.state
            self._memory.state = value  # keep the fallback copy current
            return value

        return self._read(shared_state, lambda: self._memory.state)

    @state.setter
    def state(self, state: str) -> None:
        def set_memory() -> None:
            self._memory.state = state

        def set_shared(shared: pybreaker.CircuitRedisStorage) -> None:
            shared.state = state

        self._write(set_shared, set_memory)

    def increment_counter(self) -> None:
        """Add one consecutive failure."""
        self._write(lambda s: s.increment_counter(), self._memory.increment_counter)

    def reset_counter(self) -> None:
        """Forget the consecutive failures."""
        self._write(lambda s: s.reset_counter(), self._memory.reset_counter)

    def increment_success_counter(self) -> None:
        """Add one consecutive half-open success."""
        self._write(lambda s: s.increment_success_counter(), self._memory.increment_success_counter)

    def reset_success_counter(self) -> None:
        """Forget the half-open successes."""
        self._write(lambda s: s.reset_success_counter(), self._memory.reset_success_counter)

    @property
    def counter(self) -> int:
        """Consecutive infrastructure failures."""
        return self._read(lambda s: s.counter, lambda: self._memory.counter)

    @property
    def success_counter(self) -> int:
        """Consecutive successful half-open probes."""
        return self._read(lambda s: s.success_counter, lambda: self._memory.success_counter)

    @property
    def opened_at(self) -> datetime | None:
        """When the circuit opened, for pybreaker (from the breaker's clock, not datetime.now)."""
        epoch = self.opened_at_epoch
        return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

    @opened_at.setter
    def opened_at(self, _now: datetime) -> None:
        # pybreaker passes datetime.now(); the breaker's clock is the one that counts.
        self.mark_opened(self._clock(), self.pending_last_error)

    # -- what pybreaker does not store -----------------------------------------------------

    @property
    def opened_at_epoch(self) -> float | None:
        """When the circuit last opened, epoch seconds of the breaker's clock (None: never)."""

        def shared_opened_at(_shared: pybreaker.CircuitRedisStorage) -> float | None:
            value = self._get_float("opened_at")
            self._local_opened_at = value  # keep the fallback copy current
            return value

        return self._read(shared_opened_at, lambda: self._local_opened_at)

    @property
    def last_error(self) -> str | None:
        """The infrastructure error that opened the circuit last (None: unknown)."""

        def shared_last_error(_shared: pybreaker.CircuitRedisStorage) -> str | None:
            value = self._get_text("last_error")
            self._local_last_error = value
            return value

        return self._read(shared_last_error, lambda: self._local_last_error)

    def mark_opened(self, at: float, last_error: str | None) -> None:
        """Record when the circuit opened and the error that opened it."""

        def set_local() -> None:
            self._local_opened_at = at
            self._local_last_error = last_error

        def set_shared(_shared: pybreaker.CircuitRedisStorage) -> None:
            assert self._client is not None
            self._client.set(self._key("opened_at"), repr(at))
            self._client.set(self._key("last_error"), last_error or "")

        self._write(set_shared, set_local)

    def _get_float(self, key: str) -> float | None:
        raw = self._get_text(key)
        try:
            return float(raw) if raw else None
        except ValueError:
            return None

    def _get_text(self, key: str) -> str | None:
        assert self._client is not None
        raw = self._client.get(self._key(key))
        return raw.decode("utf-8", "replace") if raw else None

    def dispose(self) -> None:
        """Close the Redis connections and keep the state in this process from now on."""
        if self._client is not None:
            self._client.close()
        self._client = None
        self._redis = None
