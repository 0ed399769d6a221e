"""Where a breaker keeps its state: in this process, or shared in Redis with an in-process fallback.

pybreaker's state machine reads and writes its state through the ``CircuitBreakerStorage``
interface. This storage keeps five values -- the state, the failure and success counters,
``opened_at`` and the last error -- in this process, and with a Redis URL also under
``aiop:breaker:<name>:<value>`` in Redis, so every process and worker sees the same circuit.
Each part answers a trap of pybreaker or redis-py (PLATFORM.md, "pybreaker 1.4.1"):

* ``opened_at`` is epoch seconds of the breaker's injected clock: pybreaker stamps
  ``datetime.now()``, which a test's clock cannot move.
* Redis is read and written directly, not through pybreaker's ``CircuitRedisStorage``, which
  answers a Redis error with made-up values (closed, no failures: the breaker can never open while
  Redis is down) and a traceback per call, and recurses forever with ``fallback_circuit_state=
  "open"``.
* The client has short socket timeouts and no retry: redis-py's default retry made each guarded
  call take 6-11 s while Redis was down.
* Every write lands in the in-process copy too, and every Redis read refreshes it, so the first
  Redis error switches the breaker to that copy -- with exactly one warning -- and it carries on
  from the last state this process saw. Redis is tried again every ``recheck_s`` seconds (one
  info line when it is back); its state then wins, except that a circuit this process opened
  during the outage is published (the freshest evidence that the target is down).

Not public: :class:`adapters.breakers.breaker.Breaker` builds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pybreaker
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from adapters.errors import InvalidInputError
from adapters.redaction import redact_url, redact_urls

__all__: list[str] = []

logger = logging.getLogger("aiop.breaker")

#: Socket timeouts of the Redis client, seconds: a dead or black-holed Redis costs at most this.
REDIS_TIMEOUT_S = 0.25
#: How often a breaker that fell back to in-process state tries Redis again, seconds (its clock).
REDIS_RECHECK_S = 5.0

_STATES = frozenset({pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN})


def make_redis_client(url: str) -> redis.Redis:
    """A Redis client that fails fast: short timeouts, no retry.

    Raises:
        InvalidInputError: the URL is malformed.
    """
    try:
        return redis.Redis.from_url(
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


def _text(raw: Any) -> str | None:
    """A Redis reply as text (bytes, or str from a client with ``decode_responses``)."""
    if raw is None:
        return None
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


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
        #: The in-process copy: the whole state without Redis, the fallback with it.
        self._local: dict[str, Any] = {
            "state": pybreaker.STATE_CLOSED,
            "fail_counter": 0,
            "success_counter": 0,
            "opened_at": None,
            "last_error": None,
        }
        self.namespace = f"aiop:breaker:{breaker}"
        self.redis_url = redact_url(redis_url) if redis_url else None
        self._url = redis_url or ""
        self._client = make_redis_client(redis_url) if redis_url else None
        self._up = False
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
        return "redis" if self._up else "memory (redis unreachable)"

    def _key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def _redis(self) -> redis.Redis | None:
        """The client while Redis is usable; after a failure, tried again every ``recheck_s``."""
        if self._client is None or self._up:
            return self._client
        now = self._clock()
        if now < self._next_attempt:
            return None
        self._next_attempt = now + self._recheck_s
        try:
            self._resume(self._client)
        except RedisError as exc:
            self._went_down(exc)
            return None
        if self._down_since is not None:
            logger.info(
                "breaker %r: Redis at %s is reachable again; sharing the circuit state again",
                self._breaker,
                self.redis_url,
            )
        self._down_since, self._up = None, True
        return self._client

    def _resume(self, client: redis.Redis) -> None:
        """Publish a circuit this process opened while Redis was down; otherwise Redis wins."""
        shared = _text(client.get(self._key("state")))
        opened = self._local["opened_at"]
        if (
            self._down_since is not None
            and self._local["state"] == pybreaker.STATE_OPEN
            and opened is not None
            and opened >= self._down_since
            and shared != pybreaker.STATE_OPEN
        ):
            client.set(self._key("opened_at"), repr(opened))
            client.set(self._key("last_error"), self._local["last_error"] or "")
            client.set(self._key("state"), pybreaker.STATE_OPEN)

    def _went_down(self, exc: RedisError) -> None:
        self._up = False
        text = redact_urls(f"{type(exc).__name__}: {exc}", self._url)
        if self._down_since is None:
            self._down_since = self._clock()
            self._next_attempt = self._down_since + self._recheck_s
            logger.warning(
                "breaker %r: Redis at %s is unreachable (%s); using in-process circuit state "
                "and trying Redis again every %g s",
                *(self._breaker, self.redis_url, text, self._recheck_s),
            )
        else:
            logger.debug(
                "breaker %r: Redis at %s still unreachable (%s)",
                self._breaker,
                self.redis_url,
                text,
            )

    def _get(self, name: str, parse: Callable[[str | None], Any]) -> Any:
        client = self._redis()
        if client is not None:
            try:
                value = parse(_text(client.get(self._key(name))))
            except RedisError as exc:
                self._went_down(exc)
            else:
                self._local[name] = value  # the fallback copy stays current
                return value
        return self._local[name]

    def _set(self, name: str, value: Any) -> None:
        self._local[name] = value
        client = self._redis()
        if client is not None:
            try:
                text = value if isinstance(value, str) else "" if value is None else repr(value)
                client.set(self._key(name), text)
            except RedisError as exc:
                self._went_down(exc)

    def _increment(self, name: str) -> None:
        self._local[name] += 1
        client = self._redis()
        if client is not None:
            try:
                self._local[name] = int(client.incr(self._key(name)))
            except RedisError as exc:
                self._went_down(exc)

    # -- pybreaker's storage interface -------------------------------------------------------

    @property
    def state(self) -> str:
        """The circuit state: ``closed``, ``open`` or ``half-open``."""

        def parse(text: str | None) -> str:
            if text is None:
                return pybreaker.STATE_CLOSED
            if text not in _STATES:  # a foreign or corrupted key: keep going on our own copy
                logger.warning(
                    "breaker %r: ignoring unknown state %r in Redis", self._breaker, text
                )
                return str(self._local["state"])
            return text

        return str(self._get("state", parse))

    @state.setter
    def state(self, state: str) -> None:
        self._set("state", state)

    def increment_counter(self) -> None:
        """Add one consecutive failure."""
        self._increment("fail_counter")

    def reset_counter(self) -> None:
        """Forget the consecutive failures."""
        self._set("fail_counter", 0)

    def increment_success_counter(self) -> None:
        """Add one consecutive half-open success."""
        self._increment("success_counter")

    def reset_success_counter(self) -> None:
        """Forget the half-open successes."""
        self._set("success_counter", 0)

    @property
    def counter(self) -> int:
        """Consecutive infrastructure failures."""
        return int(self._get("fail_counter", lambda text: int(text or 0)))

    @property
    def success_counter(self) -> int:
        """Consecutive successful half-open probes."""
        return int(self._get("success_counter", lambda text: int(text or 0)))

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

        def parse(text: str | None) -> float | None:
            try:
                return float(text) if text else None
            except ValueError:
                return None

        value = self._get("opened_at", parse)
        return None if value is None else float(value)

    @property
    def last_error(self) -> str | None:
        """The infrastructure error that opened the circuit last (None: unknown)."""
        value = self._get("last_error", lambda text: text or None)
        return None if value is None else str(value)

    def mark_opened(self, at: float, last_error: str | None) -> None:
        """Record when the circuit opened and the error that opened it."""
        self._set("opened_at", at)
        self._set("last_error", last_error or "")
        self._local["last_error"] = last_error

    def dispose(self) -> None:
        """Close the Redis connections and keep the state in this process from now on."""
        if self._client is not None:
            self._client.close()
        self._client = None
        self._up = False
