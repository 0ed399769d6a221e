"""Resilience settings as frozen values: how often and how patiently a step is retried.

Examples:
    >>> policy = RetryPolicy(attempts=4, backoff_s=1.0, factor=2.0, max_backoff_s=5.0)
    >>> policy.delays()
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "MAX_ATTEMPTS",
    "MAX_BUDGET_S",
    "MAX_DELAY_S",
    "MAX_FACTOR",
    "MAX_JITTER",
    "RetryPolicy",
]

#: Prefect accepts at most 50 retry delays per task (``prefect/tasks.py``): 51 attempts in all.
MAX_ATTEMPTS = 51
#: Longest delay (and cap on a delay): one day. Prefect schedules each retry as a date, and a
#: delay of 1e300 s is past any date it can hold.
MAX_DELAY_S = 86_400.0
#: Largest growth factor between two delays (the cap bounds each delay anyway).
MAX_FACTOR = 100.0
#: Largest jitter: a delay varies by up to its own length.
MAX_JITTER = 1.0
#: Longest retry budget: one week.
MAX_BUDGET_S = 604_800.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a step is retried after a transient error.

    Attributes:
        attempts: total attempts, the first included (1 = no retry).
        backoff_s: delay before the first retry.
        factor: each further delay is the previous one times ``factor``...
        max_backoff_s: ...capped at this many seconds.
        jitter: each delay varies randomly by up to this fraction (Prefect's ``retry_jitter_factor``).
        budget_s: no retry starts once this many seconds have passed since the first attempt
            (None: no budget).

    The exit codes that count as transient are declared on the step
    (``StepSpec.transient_exit_codes``), next to the command that returns them. The operator's
    ``AIOP_RETRY_*`` settings apply over a policy through
    :meth:`adapters.settings.Settings.retry_policy`.
    """

    attempts: int = 3
    backoff_s: float = 1.0
    factor: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.5
    budget_s: float | None = 600.0

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(
                f"attempts must be between 1 (no retry) and {MAX_ATTEMPTS} (Prefect allows at"
                " most 50 retries of a task)"
            )
        for name, low, high in (
            ("backoff_s", 0.0, MAX_DELAY_S),
            ("max_backoff_s", 0.0, MAX_DELAY_S),
            ("factor", 1.0, MAX_FACTOR),
            ("jitter", 0.0, MAX_JITTER),
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name} must be between {low:g} and {high:g}")
        if self.budget_s is not None and not (
            math.isfinite(self.budget_s) and 0 < self.budget_s <= MAX_BUDGET_S
        ):
            raise ValueError(
                f"budget_s must be above 0 and at most {MAX_BUDGET_S:g} (or None for no budget)"
            )

    @property
    def retries(self) -> int:
        """Retries after the first attempt (Prefect's ``retries``)."""
        return self.attempts - 1

    def delays(self) -> list[float]:
        """The delay before each retry, capped exponential backoff (jitter is applied by Prefect).

        Each delay grows from the previous, capped one, so no power of ``factor`` is ever formed:
        ``2.0 ** 1999`` overflows a float.
        """
        delays: list[float] = []
        delay = min(self.max_backoff_s, self.backoff_s)
        for _ in range(self.retries):
            delays.append(delay)
            delay = min(self.max_backoff_s, delay * self.factor)
        return delays or [0.0]

    def within_budget(self, elapsed_s: float) -> bool:
        """True when a retry may still start ``elapsed_s`` seconds after the first attempt."""
        return self.budget_s is None or elapsed_s < self.budget_s


DEFAULT_RETRY_POLICY = RetryPolicy()
