"""The circuit breaker's plain values: its policy, its kinds, the rule for what counts, its events.

:class:`BreakerPolicy` (when a circuit opens and how it recovers) is a small frozen value, passed in
(the operator's ``AIOP_BREAKER_*`` settings through
:meth:`adapters.settings.Settings.breaker_policy`); :class:`BreakerEvent` is what listeners receive
on a transition. A breaker's name says its kind (:func:`kind_of`): ``engine:<target>``,
``agent:<name>`` or ``llm:<provider>``. :func:`classify_outcome` is the one rule for how a guarded
call's result counts for a breaker of a kind:

* an error whose ``counted_by`` is that kind (:mod:`adapters.errors`; also inside an
  ``ExceptionGroup``) is a **failure**: it counts toward ``fail_max`` and a failed probe re-opens
  the circuit. So each error counts against the one breaker it proves something about: the engine
  unreachable or broken against the engine's, a step's timeout or its image's registry against the
  agent's, a provider's refusal against the provider's.
* a normal return, and :class:`~adapters.errors.StepFailedError`, are a **success**: a step's own
  non-zero exit proves the engine ran it, so it resets the failure streak and counts as a
  successful half-open probe (what pybreaker does with excluded errors, chosen on purpose here).
* everything else is **neutral** -- neither counted nor resetting the streak, because it proves
  nothing about the target: another kind's error, ``InvalidInputError`` (raised before the engine
  is touched), a nested breaker's ``CircuitOpenError``, a bug (``ValueError`` ...), and
  ``asyncio.CancelledError``, ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, which pass
  through untouched.

Examples:
    >>> from adapters.breakers.policy import BreakerPolicy
    >>> BreakerPolicy(fail_max=3, reset_timeout=10.0)
    BreakerPolicy(fail_max=3, reset_timeout=10.0, success_threshold=1, half_open_max_calls=1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Literal

from pydantic import Field

from adapters.errors import AiopError, BreakerKind, StepFailedError
from adapters.policy import Policy

__all__ = [
    "EVENT_NAMES",
    "BreakerEvent",
    "BreakerKind",
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "EventName",
    "Outcome",
    "classify_outcome",
    "kind_of",
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


def kind_of(name: str) -> BreakerKind:
    """The kind of the breaker named ``name``: ``agent`` (``agent:<name>``), ``llm``
    (``llm:<provider>``), else ``engine`` (an execution target, ``engine:local``).

    Examples:
        >>> kind_of("agent:validate-duckdb"), kind_of("llm:anthropic"), kind_of("engine:local")
        ('agent', 'llm', 'engine')
    """
    prefix = name.partition(":")[0]
    return "agent" if prefix == "agent" else "llm" if prefix == "llm" else "engine"


def classify_outcome(exc: BaseException | None, kind: BreakerKind = "engine") -> Outcome:
    """How a call that raised ``exc`` (None: returned normally) counts for a breaker of ``kind``;
    see the module docstring.

    Examples:
        >>> from adapters.errors import EngineUnavailableError, StepFailedError, StepTimeoutError
        >>> classify_outcome(EngineUnavailableError("no engine")).value
        'failure'
        >>> classify_outcome(EngineUnavailableError("no engine"), "agent").value
        'neutral'
        >>> classify_outcome(StepTimeoutError("slow", timeout_s=1), "agent").value
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
    if isinstance(exc, ExceptionGroup):
        counted = exc.subgroup(lambda e: isinstance(e, AiopError) and e.counted_by == kind)
        return Outcome.NEUTRAL if counted is None else Outcome.FAILURE
    if isinstance(exc, AiopError) and exc.counted_by == kind:
        return Outcome.FAILURE
    if isinstance(exc, StepFailedError):
        return Outcome.SUCCESS
    return Outcome.NEUTRAL


class BreakerPolicy(Policy):
    """When a breaker opens and how it recovers. pybreaker's names where they mean the same.

    The one model of the breaker knobs (:mod:`adapters.policy`): built in code, read from
    ``AIOP_BREAKER_<FIELD>`` as the settings' ``breaker``, and written as an agent definition's
    ``breaker:`` section. A reset timeout is at most a day (pybreaker and the Redis storage turn
    it into dates); the counts stay far below what anyone needs.

    Raises:
        InvalidInputError: a value is out of range (``fail_max < 1``, ``reset_timeout <= 0`` ...).

    Examples:
        >>> policy = BreakerPolicy(fail_max=3)
        >>> policy.reset_timeout
        30.0
        >>> policy.replace(success_threshold=2).success_threshold
        2
    """

    fail_max: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=5, description="Consecutive infrastructure failures that open a circuit."
    )
    reset_timeout: Annotated[float, Field(gt=0, le=86_400.0, allow_inf_nan=False)] = Field(
        default=30.0,
        description="Seconds a circuit stays open before it lets one probe call through.",
    )
    success_threshold: Annotated[int, Field(ge=1, le=1_000)] = Field(
        default=1, description="Consecutive successful probes needed to close a half-open circuit."
    )
    half_open_max_calls: Annotated[int, Field(ge=1, le=1_000)] = Field(
        default=1, description="Probe calls allowed at once while half-open, per process."
    )
