"""Circuit breakers for execution targets and agents: fail fast while a target is down.

One :class:`Breaker` per target (``engine:local``, ``engine:dagger:<host>``, ``agent:<name>``),
shared per process through :func:`get_breaker`. pybreaker's ``CircuitBreaker`` keeps the state
machine, counters, listeners and storage; this module adds what the platform needs on top:

* **async and concurrent**: the guarded coroutine runs outside every lock (pybreaker's ``call()``
  holds its lock for the whole call and records a coroutine as a success without awaiting it);
  only admission and the recording of the outcome take a lock, for microseconds.
* **what counts**: only infrastructure errors are failures; a step's own non-zero exit
  (``StepFailedError``) is a success; anything else, cancellation included, is neutral
  (:func:`~adapters.breakers.policy.classify_outcome` has the rule and why).
* **fail fast with a reason**: while open, :class:`~adapters.errors.CircuitOpenError` names the
  breaker, ``opened_at`` and ``probe_at`` without calling the target.
* **bounded half-open**: at most ``half_open_max_calls`` probes at once in this process (Redis
  shares open/closed between processes, not the probe slots); ``success_threshold`` consecutive
  successes close it, a failure re-opens it with a new ``opened_at``.
* **injected clock** for ``opened_at``, ``probe_at`` and the open -> half-open decision.
* **events**: each transition is logged on ``aiop.breaker`` and handed to listeners as a
  :class:`BreakerEvent` (``aiop.breaker.opened`` / ``half-opened`` / ``closed``).
* **shared state** in Redis when ``redis_url=`` is given (the ``AIOP_BREAKER_REDIS_URL`` setting), falling
  back to in-process state with one warning while Redis is down (see
  :mod:`adapters.breakers.storage`).

Examples:
    >>> import asyncio
    >>> from adapters.breakers.breaker import Breaker, BreakerPolicy
    >>> breaker = Breaker("engine:doc", BreakerPolicy(fail_max=2))
    >>> async def step() -> str:
    ...     return "ok"
    >>> asyncio.run(breaker.call(step)), breaker.state
    ('ok', 'closed')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, cast

import pybreaker

from adapters.breakers.policy import (
    EVENT_NAMES,
    BreakerEvent,
    BreakerListener,
    BreakerPolicy,
    BreakerState,
    Outcome,
    classify_outcome,
)
from adapters.breakers.storage import REDIS_RECHECK_S, SharedStorage
from adapters.errors import CircuitOpenError, InvalidInputError

__all__ = [
    "Breaker",
    "BreakerEvent",
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "Outcome",
    "classify_outcome",
    "get_breaker",
    "reset_breakers",
]

logger = logging.getLogger("aiop.breaker")

T = TypeVar("T")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _hms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


@dataclass(frozen=True)
class _Ticket:
    probe: bool


class _TransitionRecorder(pybreaker.CircuitBreakerListener):
    """Turns pybreaker's state_change hook into BreakerEvents queued on the Breaker."""

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        if old_state is not None and old_state.name != new_state.name:
            self._breaker._on_transition(old_state.name, new_state.name)


class _Guard:
    """``async with breaker.guard():`` -- admission on enter, outcome on exit, never suppresses."""

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker
        self._ticket: _Ticket | None = None

    async def __aenter__(self) -> None:
        self._ticket = self._breaker._admit()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticket is not None:
            ticket, self._ticket = self._ticket, None
            self._breaker._record(ticket, exc)


class Breaker:
    """A circuit breaker for one execution target or agent.

    Args:
        name: the target, e.g. ``engine:local``, ``engine:dagger:<host>``, ``agent:<name>``.
        policy: thresholds and timeouts (``BreakerPolicy()`` if None).
        listeners: called with a :class:`BreakerEvent` on every transition, outside the lock.
        clock: epoch seconds; drives ``opened_at``, ``probe_at`` and open -> half-open.
        redis_url: share the state through this Redis (``redis://host:port/db``); None keeps it in
            this process. :func:`get_breaker` passes the caller's ``redis_url``.
        redis_recheck_s: seconds between attempts to reach Redis again after it failed.

    Raises:
        InvalidInputError: empty name, or an unusable Redis URL.

    Examples:
        >>> import asyncio
        >>> from adapters.errors import EngineUnavailableError
        >>> breaker = Breaker("engine:example", BreakerPolicy(fail_max=1))
        >>> async def down() -> None:
        ...     raise EngineUnavailableError("no engine")
        >>> async def main() -> str:
        ...     try:
        ...         await breaker.call(down)
        ...     except EngineUnavailableError:
        ...         pass
        ...     try:
        ...         await breaker.call(down)
        ...     except CircuitOpenError as exc:
        ...         return exc.breaker
        ...     return "not reached"
        >>> asyncio.run(main())
        'engine:example'
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        listeners: Iterable[BreakerListener] = (),
        clock: Callable[[], float] = time.time,
        redis_url: str | None = None,
        redis_recheck_s: float = REDIS_RECHECK_S,
    ) -> None:
        if not name or not name.strip():
            raise InvalidInputError("a breaker needs a name, e.g. 'engine:local' or 'agent:coder'")
        self.name = name
        self.policy = policy if policy is not None else BreakerPolicy()
        self.resource_id = f"aiop.breaker.{name}"
        self._clock = clock
        self._listeners: list[BreakerListener] = list(listeners)
        self._lock = threading.RLock()
        self._pending: list[BreakerEvent] = []
        self._probes = 0
        self._last_error: str | None = None
        self._closing_successes: int | None = None
        self._storage = SharedStorage(name, clock, redis_url, redis_recheck_s)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=self.policy.fail_max,
            reset_timeout=self.policy.reset_timeout,
            success_threshold=self.policy.success_threshold,
            exclude=[lambda exc: classify_outcome(exc) is not Outcome.FAILURE],
            listeners=[_TransitionRecorder(self)],
            state_storage=self._storage,
            name=name,
            throw_new_error_on_trip=False,
        )

    def __repr__(self) -> str:
        return f"Breaker({self.name!r}, {self.policy!r})"

    # -- public API ----------------------------------------------------------------------

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` through the breaker.

        Args:
            fn: a zero-argument callable returning the awaitable to guard (not called while open).

        Returns:
            What ``fn()`` returned.

        Raises:
            CircuitOpenError: the circuit is open, or half-open with all probe slots taken.
            BaseException: whatever ``fn()`` raised, unchanged.

        Examples:
            >>> import asyncio
            >>> async def step() -> int:
            ...     return 7
            >>> asyncio.run(Breaker("engine:call-doc").call(step))
            7
        """
        async with self.guard():
            return await fn()

    def guard(self) -> _Guard:
        """An async context manager guarding its body like :meth:`call`.

        Raises:
            CircuitOpenError: on enter, when the circuit does not admit the call.

        Examples:
            >>> import asyncio
            >>> async def main() -> str:
            ...     async with Breaker("engine:guard-doc").guard():
            ...         return "ran"
            >>> asyncio.run(main())
            'ran'
        """
        return _Guard(self)

    def rejection(self) -> CircuitOpenError | None:
        """The error a call would fail with right now, or None when it would be admitted.

        Asks without calling: an open circuit whose probe time has come stays open (the next
        call moves it to half-open) and no probe slot is taken. Lets a caller refuse work before
        it pays for setting it up (``flows.execute_step`` does, before creating a task run).

        Examples:
            >>> Breaker("engine:rejection-doc").rejection() is None
            True
        """
        try:
            with self._lock:
                return self._refusal(self._cb.state.name)
        finally:
            self._dispatch()

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half-open`` (open stays open until the next call asks)."""
        try:
            with self._lock:
                return cast(BreakerState, self._cb.state.name)
        finally:
            self._dispatch()

    @property
    def storage(self) -> str:
        """Where the state lives: ``memory``, ``redis`` or ``memory (redis unreachable)``."""
        with self._lock:
            return self._storage.backend

    def snapshot(self) -> dict[str, Any]:
        """The breaker's state as plain data, for display.

        Examples:
            >>> snap = Breaker("engine:snap-doc").snapshot()
            >>> snap["state"], snap["fail_counter"], snap["opened_at"]
            ('closed', 0, None)
        """
        try:
            with self._lock:
                state = self._cb.state.name
                opened_at = self._storage.opened_at_epoch if state != "closed" else None
                return {
                    "name": self.name,
                    "resource_id": self.resource_id,
                    "state": state,
                    "fail_counter": self._storage.counter,
                    "success_counter": self._storage.success_counter,
                    "probes_in_flight": self._probes,
                    "opened_at": opened_at,
                    "probe_at": None
                    if opened_at is None
                    else opened_at + self.policy.reset_timeout,
                    "last_error": self._last_error or self._storage.last_error,
                    "fail_max": self.policy.fail_max,
                    "reset_timeout": self.policy.reset_timeout,
                    "success_threshold": self.policy.success_threshold,
                    "half_open_max_calls": self.policy.half_open_max_calls,
                    "storage": self._storage.backend,
                    "redis_url": self._storage.redis_url,
                }
        finally:
            self._dispatch()

    def add_listener(self, listener: BreakerListener) -> None:
        """Also call ``listener`` on every transition (a no-op if it is already registered)."""
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        """Stop calling ``listener`` (a no-op if it is not registered)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def dispose(self) -> None:
        """Close the Redis connections, if any. The breaker keeps working in-process after."""
        with self._lock:
            self._storage.dispose()

    # -- admission and outcome -------------------------------------------------------------

    def _refusal(self, state: str) -> CircuitOpenError | None:
        """Why a call would be refused in ``state`` now, or None (the caller holds the lock).

        Open refuses until its probe time; half-open refuses once its probe slots are taken.
        """
        if state == pybreaker.STATE_OPEN:
            opened_at = self._opened_at()
            if self._clock() < opened_at + self.policy.reset_timeout:
                return self._open_error(opened_at)
        elif state == pybreaker.STATE_HALF_OPEN and self._probes >= self.policy.half_open_max_calls:
            return self._open_error(self._opened_at(), busy=True)
        return None

    def _admit(self) -> _Ticket:
        try:
            with self._lock:
                state = self._cb.state.name
                refused = self._refusal(state)
                if refused is not None:
                    raise refused
                if state == pybreaker.STATE_OPEN:  # its probe time has come
                    self._cb.half_open()
                    state = pybreaker.STATE_HALF_OPEN
                    refused = self._refusal(state)
                    if refused is not None:
                        raise refused
                if state == pybreaker.STATE_HALF_OPEN:
                    self._probes += 1
                    return _Ticket(probe=True)
                return _Ticket(probe=False)
        finally:
            self._dispatch()

    def _record(self, ticket: _Ticket, exc: BaseException | None) -> None:
        outcome = classify_outcome(exc)
        try:
            with self._lock:
                if ticket.probe:
                    self._probes -= 1
                if outcome is Outcome.NEUTRAL:
                    return
                state = self._cb.state.name
                if state == pybreaker.STATE_OPEN or (
                    state == pybreaker.STATE_HALF_OPEN and not ticket.probe
                ):
                    return  # a late outcome of a call admitted before the circuit opened
                if outcome is Outcome.FAILURE:
                    assert exc is not None
                    self._replay_failure(exc)
                else:
                    if state == pybreaker.STATE_HALF_OPEN:
                        self._closing_successes = self._storage.success_counter + 1
                    self._cb.call(lambda: None)
        except Exception:  # bookkeeping must never replace the call's own result or error
            logger.exception("breaker %r: could not record the outcome of a call", self.name)
        finally:
            self._closing_successes = None
            self._dispatch()

    def _replay_failure(self, exc: BaseException) -> None:
        """Feed an infrastructure failure to pybreaker's state machine (counts, maybe opens)."""
        self._last_error = _describe(exc)
        self._storage.pending_last_error = self._last_error
        saved = (exc.__traceback__, exc.__context__, exc.__suppress_context__)

        def replay() -> None:
            raise exc

        try:
            self._cb.call(replay)
        except pybreaker.CircuitBreakerError:
            pass  # another process opened it meanwhile: nothing left to count
        except BaseException as raised:
            if raised is not exc:
                raise
        finally:
            exc.__traceback__, exc.__context__, exc.__suppress_context__ = saved

    def _opened_at(self) -> float:
        opened_at = self._storage.opened_at_epoch
        if opened_at is None:  # open without a timestamp (set from outside): count from now
            opened_at = self._clock()
            self._storage.mark_opened(opened_at, self._storage.last_error)
        return opened_at

    def _open_error(self, opened_at: float, *, busy: bool = False) -> CircuitOpenError:
        last = self._storage.last_error or "unknown"
        if busy:  # half-open and every probe slot taken: the next probe is whenever one ends
            probe_at = self._clock()
            message = (
                f"circuit {self.name!r} is half-open and its {self.policy.half_open_max_calls} "
                f"probe call(s) are still running; it opened at {_hms(opened_at)} (last: {last}); "
                "other calls fail fast until a probe succeeds"
            )
        else:
            probe_at = opened_at + self.policy.reset_timeout
            message = (
                f"circuit {self.name!r} is open since {_hms(opened_at)} after "
                f"{self._storage.counter} infrastructure failures (last: {last}); "
                f"next probe at {_hms(probe_at)}"
            )
        return CircuitOpenError(message, breaker=self.name, opened_at=opened_at, probe_at=probe_at)

    # -- transitions -----------------------------------------------------------------------

    def _on_transition(self, old: str, new: str) -> None:
        """Called by pybreaker (under the lock): queue the event and log it."""
        new_state, old_state = cast(BreakerState, new), cast(BreakerState, old)
        opened_at = self._storage.opened_at_epoch if new_state != "closed" else None
        probe_at = None if opened_at is None else opened_at + self.policy.reset_timeout
        success = self._storage.success_counter
        if new_state == "closed" and self._closing_successes is not None:
            success = self._closing_successes  # pybreaker resets the counter before notifying
        event = BreakerEvent(
            name=EVENT_NAMES[new_state],
            breaker=self.name,
            resource_id=self.resource_id,
            old_state=old_state,
            new_state=new_state,
            fail_counter=self._storage.counter,
            success_count=success,
            last_error=self._storage.last_error if opened_at is not None else self._last_error,
            at=self._clock(),
            opened_at=opened_at,
            probe_at=probe_at,
        )
        self._pending.append(event)
        if new_state == "open":
            logger.warning(
                "circuit %r opened (was %s) after %d infrastructure failures (last: %s); "
                "next probe at %s",
                *(self.name, old, event.fail_counter, event.last_error, _hms(probe_at or event.at)),
            )
        elif new_state == "half-open":
            logger.info(
                "circuit %r half-open (was %s): letting up to %d probe call(s) through",
                *(self.name, old, self.policy.half_open_max_calls),
            )
        else:
            logger.info(
                "circuit %r closed (was %s) after %d successful probe(s)", self.name, old, success
            )

    def _dispatch(self) -> None:
        """Hand queued events to the listeners, outside the lock."""
        with self._lock:
            events, self._pending = self._pending, []
            listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception(
                        "breaker %r: listener %r failed on %s", self.name, listener, event.name
                    )


# -- registry -------------------------------------------------------------------------------

_registry: dict[str, Breaker] = {}
_registry_lock = threading.Lock()


def get_breaker(
    name: str,
    policy: BreakerPolicy | None = None,
    *,
    default_policy: BreakerPolicy | None = None,
    redis_url: str | None = None,
) -> Breaker:
    """The process-wide breaker for ``name``, created on first use (thread-safe).

    A new breaker takes ``policy``, else ``default_policy``, else the defaults, and shares its
    state through ``redis_url`` when one is given (the caller passes the ``breaker_redis_url``
    setting).

    Args:
        name: the target, e.g. ``engine:local``, ``engine:dagger:<host>``, ``agent:<name>``.
        policy: the policy the breaker must have; for an existing one it must equal its policy.
        default_policy: the policy of a new breaker when ``policy`` is None (the operator's
            breaker settings); an existing breaker keeps its own.
        redis_url: where a new breaker keeps its state (None: in this process).

    Raises:
        InvalidInputError: ``policy`` differs from the existing breaker's, or a bad environment.

    Examples:
        >>> get_breaker("engine:local") is get_breaker("engine:local")
        True
    """
    with _registry_lock:
        existing = _registry.get(name)
        if existing is not None:
            if policy is not None and policy != existing.policy:
                raise InvalidInputError(
                    f"breaker {name!r} already exists with {existing.policy!r}, not {policy!r}; "
                    "pass the same policy (or none) for one target"
                )
            return existing
        breaker = Breaker(
            name,
            policy or default_policy or BreakerPolicy(),
            redis_url=redis_url,
        )
        _registry[name] = breaker
        return breaker


def reset_breakers() -> None:
    """Forget every registered breaker and close their Redis connections (for tests).

    Examples:
        >>> first = get_breaker("engine:reset-doc")
        >>> reset_breakers()
        >>> get_breaker("engine:reset-doc") is first
        False
    """
    with _registry_lock:
        breakers = list(_registry.values())
        _registry.clear()
    for breaker in breakers:
        breaker.dispose()
