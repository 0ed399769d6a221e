"""Asking the engine's breaker before a step's task run is created.

A step the open breaker rejects costs microseconds when it is refused here, and 8-18 ms when its
task run is created, fails and is recorded first. A task run is still worth creating when
``run_step`` would wait for the probe and retry (the wait then shows on the task run), or when the
step's result may come from the cache (a cached step never touches the engine): the caller checks
that, only when this module says the breaker would reject.
"""

from __future__ import annotations

import time

from adapters import AiopError, CircuitOpenError
from adapters.breakers.breaker import get_breaker
from adapters.breakers.policy import BreakerPolicy
from adapters.retry_policy import RetryPolicy
from adapters.selection import choose_backend, engine_breaker_name

__all__ = ["rejection_before_start"]


def rejection_before_start(
    backend: str | None,
    policy: RetryPolicy,
    *,
    step: str,
    breaker_policy: BreakerPolicy | None = None,
    redis_url: str | None = None,
    breaker_name: str | None = None,
) -> CircuitOpenError | None:
    """The engine breaker's rejection of ``step`` when no retry would wait for its probe, else None.

    Args:
        backend: the step's backend (as given to ``run_step``).
        policy: the step's retry policy.
        step: the step's name (set on the error).
        breaker_policy: the engine breaker's policy if it is new, as ``run_step`` passes it.
        redis_url: where the engine breaker keeps its state, as ``run_step`` passes it.
        breaker_name: the engine breaker's name when the flow run resolved its runner already
            (:class:`adapters.selection.StepRunner`); None: found from ``backend``.

    Examples:
        >>> from adapters.breakers.breaker import reset_breakers
        >>> reset_breakers()
        >>> rejection_before_start("local", RetryPolicy(), step="s") is None
        True
    """
    try:
        name = breaker_name or engine_breaker_name(choose_backend(backend).backend)
    except AiopError:
        return None  # a bad backend: run_step reports it, with its task run
    exc = get_breaker(name, default_policy=breaker_policy, redis_url=redis_url).rejection()
    if exc is None:
        return None
    if policy.retries > 0 and policy.within_budget(max(0.0, exc.probe_at - time.time())):
        return None
    exc.step = step
    return exc
