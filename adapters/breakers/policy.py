"""The circuit breaker's plain values: its policy, the rule for what counts, its events.

:class:`BreakerPolicy` (when a circuit opens and how it recovers) is a small frozen value, passed in
(the operator's ``AIOP_BREAKER_*`` settings through :meth:`adapters.settings.Settings.breaker_policy`); :class:`BreakerEvent` is what listeners receive on a transition.
:func:`classify_outcome` is the one rule for how a guarded call's result counts:

* :class:`~adapters.errors.InfrastructureError` (also inside an ``ExceptionGroup``) is a
  **failure**: it counts toward ``fail_max`` and a failed probe re-opens the circuit.
* a normal return, and :class:`~adapters.errors.StepFailedError`, are a **success**: a step's own
  non-zero exit proves the engine ran it, so it resets the failure streak and counts as a
  successful half-open probe (what pybreaker does with excluded errors, chosen on purpose here).
* everything else is **neutral** -- neither counted nor resetting the streak, because it proves
  nothing about the target: ``InvalidInputError`` (raised before the engine is touched), a nested
  breaker's ``CircuitOpenError``, a bug (``ValueError`` ...), and ``asyncio.CancelledError``,
  ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, which pass through untouched.

Examples:
    >>> from adapters.breakers.policy import BreakerPolicy
    >>> BreakerPolicy(fail_max=3, reset_timeout=10.0)
    BreakerPolicy(fail_max=3, reset_timeout=10.0, success_threshold=1, half_open_max_calls=1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from adapters.errors import InfrastructureError, InvalidInputError, StepFailedError

__all__ = [
    "EVENT_NAMES",
    "LIMITS",
    "BreakerEvent",
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "EventName",
    "Outcome",
    "classify_outcome",
]

BreakerState = Literal["closed", "open", "half-open"]
EventName = Literal["aiop.breaker.opened", "aiop.breaker.half-opened", "aiop.breaker.closed"]

#: Event name per state entered.
EVENT_NAMES: dict[BreakerState, EventName] = {
    "open": "aiop.breaker.opened",
    "half-open": "aiop.breaker.half-opened",
    "closed": "aiop.breaker.closed",
}


@dataclass(frozen=True, kw_only=True)
class BreakerEvent:
    """One state transition of a breaker, as handed to listeners.

    Attributes:
        name: ``aiop.breaker.opened``, ``aiop.breaker.half-opened`` or ``aiop.breaker.closed``.
        breaker: the breaker's name, e.g. ``engine:local``.
        resource_id: ``aiop.breaker.<breaker>`` (a Prefect event resource id).
        old_state: the state before.
        new_state: the state after.
        fail_counter: consecutive infrastructure failures at the transition.
        success_count: consecutive successful half-open probes at the transition.
        last_error: the last infrastructure error, ``"ClassName: message"``, or None.
        at: when, epoch seconds of the breaker's clock.
        opened_at: when the circuit last opened (None if it never did).
        probe_at: when an open circuit lets a probe through (None unless opened).
    """

    name: EventName
    breaker: str
    resource_id: str
    old_state: BreakerState
    new_state: BreakerState
    fail_counter: int
    success_count: int
    last_error: str | None
    at: float
    opened_at: float | None = None
    probe_at: float | None = None


#: A transition listener; exceptions it raises are logged and never reach the guarded call.
BreakerListener = Callable[[BreakerEvent], None]


class Outcome(Enum):
    """How one guarded call counts for its breaker."""

    FAILURE = "failure"
    SUCCESS = "success"
    NEUTRAL = "neutral"


def classify_outcome(exc: BaseException | None) -> Outcome:
    """How a call that raised ``exc`` (None: returned normally) counts; see the module docstring.

    Examples:
        >>> from adapters.errors import EngineUnavailableError, StepFailedError
        >>> classify_outcome(EngineUnavailableError("no engine")).value
        'failure'
        >>> classify_outcome(StepFailedError("exit 1", step="s", exit_code=1)).value
        'success'
        >>> classify_outcome(KeyboardInterrupt()).value
        'neutral'
    """
    if exc is None:
        return Outcome.SUCCESS
    if not isinstance(exc, Exception):  # CancelledError, KeyboardInterrupt, SystemExit, ...
        return Outcome.NEUTRAL
    if isinstance(exc, InfrastructureError):
        return Outcome.FAILURE
    if isinstance(exc, ExceptionGroup) and exc.subgroup(InfrastructureError) is not None:
        return Outcome.FAILURE
    if isinstance(exc, StepFailedError):
        return Outcome.SUCCESS
    return Outcome.NEUTRAL


#: Field name -> (minimum, maximum, kind): the one table the validation below, the settings and
#: the agents' ``breaker:`` section read. A reset timeout is at most a day (pybreaker and the Redis
#: storage turn it into dates); the counts stay far below what anyone needs.
LIMITS: dict[str, tuple[float, float, type[int] | type[float]]] = {
    "fail_max": (1, 10_000, int),
    "reset_timeout": (0.0, 86_400.0, float),
    "success_threshold": (1, 1_000, int),
    "half_open_max_calls": (1, 1_000, int),
}


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers. pybreaker's names where they mean the same.

    Attributes:
        fail_max: consecutive infrastructure failures that open the circuit.
        reset_timeout: seconds the circuit stays open before one probe is let through.
        success_threshold: consecutive successful half-open probes needed to close it again.
        half_open_max_calls: probe calls allowed at once while half-open; others fail fast.

    Raises:
        InvalidInputError: a value is out of range (``fail_max < 1``, ``reset_timeout <= 0`` ...).

    Examples:
        >>> policy = BreakerPolicy(fail_max=3)
        >>> policy.reset_timeout
        30.0
        >>> dataclasses.replace(policy, success_threshold=2).success_threshold
        2
    """

    fail_max: int = 5
    reset_timeout: float = 30.0
    success_threshold: int = 1
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        for field, (minimum, maximum, kind) in LIMITS.items():
            value = getattr(self, field)
            if kind is int:
                ok = (
                    isinstance(value, int)
                    and not isinstance(value, bool)
                    and minimum <= value <= maximum
                )
                need = f"an integer from {int(minimum)} to {int(maximum)}"
            else:
                ok = (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and minimum < value <= maximum
                )
                need = f"a number of seconds above 0 and at most {maximum:g}"
            if not ok:
                raise InvalidInputError(
                    f"BreakerPolicy.{field}={value!r} is invalid: it must be {need}"
                )
        if isinstance(self.reset_timeout, int):
            object.__setattr__(self, "reset_timeout", float(self.reset_timeout))
