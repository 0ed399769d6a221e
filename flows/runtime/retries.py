"""A retry policy as Prefect's task options: the one translation, and the condition it retries on.

:func:`task_retry_options` is the only place that turns a
:class:`~adapters.retry_policy.RetryPolicy` into Prefect's ``retries``, ``retry_delay_seconds``,
``retry_jitter_factor`` and ``retry_condition_fn``; ``run_step`` and ``run_llm_step`` take their
options from it on every call.

Examples:
    >>> from adapters.retry_policy import RetryPolicy
    >>> options = task_retry_options(RetryPolicy(attempts=3, backoff_s=1, jitter=0))
    >>> options["retries"], options["retry_delay_seconds"], options["retry_jitter_factor"]
    (2, [1.0, 2.0], 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

from prefect.client.schemas.objects import State

from adapters.errors import AiopError
from adapters.retry_policy import RetryPolicy

__all__ = [
    "TaskRetryOptions",
    "exception_of",
    "retry_condition",
    "retry_condition_for",
    "task_retry_options",
]

RetryCondition = Callable[[Any, Any, State[Any]], bool]


class TaskRetryOptions(TypedDict):
    """The keyword arguments of ``Task.with_options`` (and ``@task``) that say how it retries."""

    retries: int
    retry_delay_seconds: list[float]
    retry_jitter_factor: float
    retry_condition_fn: RetryCondition


def task_retry_options(policy: RetryPolicy) -> TaskRetryOptions:
    """Prefect's retry options for ``policy``: its retries and capped delays, its jitter, and
    :func:`retry_condition` within its budget."""
    return TaskRetryOptions(
        retries=policy.retries,
        retry_delay_seconds=policy.delays(),
        retry_jitter_factor=policy.jitter,
        retry_condition_fn=retry_condition_for(policy),
    )


def retry_condition_for(policy: RetryPolicy) -> RetryCondition:
    """A Prefect ``retry_condition_fn``: :func:`retry_condition` within ``policy.budget_s``."""

    def condition(task: Any, task_run: Any, state: State[Any]) -> bool:
        started = getattr(task_run, "start_time", None)
        if started is not None:
            elapsed = (datetime.now(UTC) - started).total_seconds()
            if not policy.within_budget(elapsed):
                return False
        return retry_condition(task, task_run, state)

    return condition


def retry_condition(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry exactly the errors whose ``transient`` is True.

    Those are infrastructure errors, declared-transient exits and an open circuit (``run_step``
    has already waited until its probe time, so the retry arrives when the breaker lets a probe
    through instead of burning attempts in a burst). Invalid specs, bad input, permanent
    non-zero exits and anything outside the error tree are never retried.
    """
    exc = exception_of(state)
    return isinstance(exc, AiopError) and exc.transient


def exception_of(state: State[Any]) -> BaseException | None:
    """The exception a failed state carries, or None."""
    data = state.data
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # a result that cannot be loaded is itself the best evidence
        return exc
    return result if isinstance(result, BaseException) else None
