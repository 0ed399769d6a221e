"""Circuit breakers for execution targets, agents and LLM providers: fail fast while one is down.

One :class:`Breaker` per target (``engine:local``, ``engine:dagger:<host>``, ``agent:<name>``,
``llm:<provider>``), shared per process through :func:`get_breaker`. pybreaker's
``CircuitBreaker`` keeps the state machine, the counters, the listeners and the storage interface;
this module keeps only what pybreaker cannot do for the platform (PLATFORM.md, "pybreaker 1.4.1"):

* **one decision, then the call outside every lock**: :meth:`Breaker.admit` decides whether a call
  may run and returns a :class:`Permit`; the call runs without any lock and the permit records its
  outcome once. pybreaker's ``call()`` holds its lock for the whole call (4 x 0.5 s took 2.0 s) and
  records a coroutine as a success without awaiting it, so async failures never counted.
* **what counts, for which breaker**: only the errors of the breaker's kind are failures
  (:func:`~adapters.breakers.policy.classify_outcome`); pybreaker counts any ``BaseException``,
  cancellation included.
* **an injected clock** for ``opened_at``, ``probe_at`` and the open -> half-open decision:
  pybreaker compares ``datetime.now()``, which tests cannot move.
* **fail fast with a reason**: while open, :class:`~adapters.errors.CircuitOpenError` names the
  breaker, ``opened_at`` and ``probe_at`` (pybreaker's error names neither).
* **bounded half-open**: at most ``half_open_max_calls`` probes at once in this process (pybreaker
  lets every call through while half-open); ``success_threshold`` successes close it.
* **events**: each transition is logged on ``aiop.breaker`` and handed to listeners as a
  :class:`BreakerEvent`, outside the lock (pybreaker calls its listeners under its lock).
* **shared state** in Redis when ``redis_url=`` is given, with an in-process fallback while Redis is
  down (:mod:`adapters.breakers.storage`).

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
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    kind_of,
)
from adapters.breakers.storage import REDIS_RECHECK_S, SharedStorage
from adapters.errors import CircuitOpenError, InvalidInputError

__all__ = [
    "Breaker",
    "BreakerEvent",
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "Permit",
    "admit_all",
    "get_breaker",
    "reset_breakers",
]

logger = logging.getLogger("aiop.breaker")

T = TypeVar("T")


def _hms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


class Permit:
    """A call one or more breakers admitted. Its outcome is recorded once, with each of them: by
    :meth:`record`, or when the ``async with`` block it guards ends (an exception raised there is
    the outcome); each breaker counts only the errors of its kind. A permit never used is given
    back with :meth:`release`, which counts nothing and frees its probe slots.

    Examples:
        >>> import asyncio
        >>> async def main() -> str:
        ...     async with Breaker("engine:permit-doc").admit():
        ...         return "ran"
        >>> asyncio.run(main())
        'ran'
    """

    def __init__(self, grants: Sequence[tuple[Breaker, bool]]) -> None:
        self._grants = list(grants)  # (breaker, admitted as a half-open probe)
        self._done = False

    def record(self, error: BaseException | None) -> None:
        """Count the call's outcome: ``error`` (None: it succeeded). Only the first one counts."""
        if not self._done:
            self._done = True
            for breaker, probe in self._grants:
                breaker._record(probe, error)

    def release(self) -> None:
        """Give the permit back unused (a no-op once an outcome was recorded)."""
        if not self._done:
            self._done = True
            for breaker, probe in self._grants:
                breaker._record(probe, None, ran=False)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.record(exc)


def admit_all(breakers: Iterable[Breaker]) -> Permit:
    """One decision over every breaker a call depends on (an llm step: its engine and its
    provider): all admit it, or it is refused with the first refusal and the others' permits
    are given back.

    Raises:
        CircuitOpenError: one of the breakers did not admit the call.
    """
    grants: list[tuple[Breaker, bool]] = []
    try:
        for breaker in breakers:
            grants += breaker.admit()._grants
    except CircuitOpenError:
        Permit(grants).release()
        raise
    return Permit(grants)


class _Transitions(pybreaker.CircuitBreakerListener):
    """pybreaker's ``state_change`` hook, turned into the Breaker's events."""

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


class Breaker:
    """A circuit breaker for one execution target, agent or LLM provider.

    Args:
        name: the target, ``<kind>:<name>``: ``engine:local``, ``agent:<name>``,
            ``llm:<provider>`` (:func:`~adapters.breakers.policy.kind_of`).
        policy: thresholds and timeouts (``BreakerPolicy()`` if None).
        listeners: called with a :class:`BreakerEvent` on every transition, outside the lock.
        clock: epoch seconds; drives ``opened_at``, ``probe_at`` and open -> half-open.
        redis_url: share the state through this Redis (``redis://host:port/db``); None keeps it in
            this process.
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
        self.kind = kind_of(name)
        self.policy = policy if policy is not None else BreakerPolicy()
        self.resource_id = f"aiop.breaker.{name}"
        self._clock = clock
        self._listeners: list[BreakerListener] = list(listeners)
        self._lock = threading.RLock()
        self._pending: list[BreakerEvent] = []
        self._probes = 0
        self._last_error: str | None = None
        self._storage = SharedStorage(name, clock, redis_url, redis_recheck_s)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=self.policy.fail_max,
            reset_timeout=self.policy.reset_timeout,
            success_threshold=self.policy.success_threshold,
            listeners=[_Transitions(self)],
            state_storage=self._storage,
            name=name,
            throw_new_error_on_trip=False,
        )

    def __repr__(self) -> str:
        return f"Breaker({self.name!r}, {self.policy!r})"

    # -- public API ----------------------------------------------------------------------

    def admit(self) -> Permit:
        """Decide whether a call may run now: a :class:`Permit` for it, or a refusal.

        An open circuit whose probe time has come turns half-open here and admits the call as a
        probe.

        Raises:
            CircuitOpenError: the circuit is open, or half-open with all probe slots taken.
        """
        try:
            with self._lock:
                state = self._cb.state.name
                refused = self._refusal(state)
                if refused is None and state == pybreaker.STATE_OPEN:  # its probe time has come
                    self._cb.half_open()
                    state = pybreaker.STATE_HALF_OPEN
                    refused = self._refusal(state)
                if refused is not None:
                    raise refused
                probe = state == pybreaker.STATE_HALF_OPEN
                self._probes += probe
                return Permit([(self, probe)])
        finally:
            self._dispatch()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` through the breaker: :meth:`admit`, then the call, then its outcome.

        Raises:
            CircuitOpenError: the circuit did not admit the call (``fn`` was not called).
            BaseException: whatever ``fn()`` raised, unchanged.

        Examples:
            >>> import asyncio
            >>> async def step() -> int:
            ...     return 7
            >>> asyncio.run(Breaker("engine:call-doc").call(step))
            7
        """
        async with self.admit():
            return await fn()

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
                    **self.policy.model_dump(),
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

    def _record(self, probe: bool, exc: BaseException | None, *, ran: bool = True) -> None:
        outcome = classify_outcome(exc, self.kind) if ran else Outcome.NEUTRAL
        try:
            with self._lock:
                self._probes -= probe
                if outcome is Outcome.NEUTRAL:
                    return
                state = self._cb.state.name
                if state == pybreaker.STATE_OPEN or (
                    state == pybreaker.STATE_HALF_OPEN and not probe
                ):
                    return  # a late outcome of a call admitted before the circuit opened
                if outcome is Outcome.FAILURE:
                    assert exc is not None
                    self._replay_failure(exc)
                else:
                    self._cb.call(lambda: None)  # pybreaker's own success path
        except Exception:  # bookkeeping must never replace the call's own result or error
            logger.exception("breaker %r: could not record the outcome of a call", self.name)
        finally:
            self._dispatch()

    def _replay_failure(self, exc: BaseException) -> None:
        """Feed a failure to pybreaker's state machine (counts, maybe opens), leaving the error's
        traceback as the caller raised it (pybreaker raises it again inside its own frames)."""
        self._last_error = f"{type(exc).__name__}: {exc}"
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
        # pybreaker resets the success counter before it says "closed": a half-open circuit
        # closes when it reaches the threshold.
        closing = new_state == "closed" and old_state == "half-open"
        success = self.policy.success_threshold if closing else self._storage.success_counter
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
        breaker = Breaker(name, policy or default_policy or BreakerPolicy(), redis_url=redis_url)
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
