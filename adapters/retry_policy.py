"""The retry policy: how often and how patiently a step is retried, its bounds declared once.

:class:`RetryPolicy` is the one model of the retry knobs (:mod:`adapters.policy`): built in code,
read from ``AIOP_RETRY_<FIELD>`` as the settings' ``retry`` (:mod:`adapters.settings`), and written
as an agent definition's ``retry:`` section (:mod:`agents.spec`). Prefect's task options are made
from it in one place (:func:`flows.runtime.retries.task_retry_options`).

Examples:
    >>> policy = RetryPolicy(attempts=4, backoff_s=1.0, factor=2.0, max_backoff_s=5.0)
    >>> policy.delays()
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from adapters.policy import Policy

__all__ = ["DEFAULT_RETRY_POLICY", "MAX_ATTEMPTS", "RetryPolicy"]

#: Prefect accepts at most 50 retry delays per task (``prefect/tasks.py``): 51 attempts in all.
MAX_ATTEMPTS = 51
#: Longest delay (and cap on a delay): one day. Prefect schedules each retry as a date, and a
#: delay of 1e300 s is past any date it can hold.
_MAX_DELAY_S = 86_400.0
#: Largest growth factor between two delays (the cap bounds each delay anyway).
_MAX_FACTOR = 100.0
#: Largest jitter: a delay varies by up to its own length.
_MAX_JITTER = 1.0
#: Longest retry budget: one week.
_MAX_BUDGET_S = 604_800.0

_Seconds = Annotated[float, Field(ge=0, le=_MAX_DELAY_S, allow_inf_nan=False)]


class RetryPolicy(Policy):
    """How a step is retried after a transient error.

    The exit codes that count as transient are declared on the step
    (``StepSpec.transient_exit_codes``), next to the command that returns them. The operator's
    ``AIOP_RETRY_*`` settings apply over a policy (:meth:`adapters.settings.Settings.retry_policy`).
    """

    attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] = Field(
        default=3,
        description="Total attempts per step, the first included (`1` = no retry; Prefect allows"
        " at most 50 retries).",
    )
    backoff_s: _Seconds = Field(default=1.0, description="Delay before the first retry, seconds.")
    factor: Annotated[float, Field(ge=1, le=_MAX_FACTOR, allow_inf_nan=False)] = Field(
        default=2.0, description="Each further delay is the previous one times this (>= 1)."
    )
    max_backoff_s: _Seconds = Field(default=30.0, description="Cap on a single delay, seconds.")
    jitter: Annotated[float, Field(ge=0, le=_MAX_JITTER, allow_inf_nan=False)] = Field(
        default=0.5, description="Each delay varies randomly by up to this fraction."
    )
    budget_s: float | None = Field(
        default=600.0,
        gt=0,
        le=_MAX_BUDGET_S,
        allow_inf_nan=False,
        description="No retry starts once this many seconds have passed since the step's first"
        " attempt; `none` for no budget.",
    )

    @field_validator("budget_s", mode="before")
    @classmethod
    def _no_budget(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

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
        """True when a retry may start ``elapsed_s`` seconds after the first attempt."""
        return self.budget_s is None or elapsed_s < self.budget_s


DEFAULT_RETRY_POLICY = RetryPolicy()
