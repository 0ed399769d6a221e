"""Resilience settings as frozen values: how often and how patiently a step is retried.

Examples:
    >>> policy = RetryPolicy(attempts=4, backoff_s=1.0, factor=2.0, max_backoff_s=5.0)
    >>> policy.delays()
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_RETRY_POLICY", "RetryPolicy"]


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
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1 (1 means: no retry)")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.factor < 1 or self.jitter < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0, factor >= 1, jitter >= 0")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ValueError("budget_s must be positive (or None for no budget)")

    @property
    def retries(self) -> int:
        """Retries after the first attempt (Prefect's ``retries``)."""
        return self.attempts - 1

    def delays(self) -> list[float]:
        """The delay before each retry, capped exponential backoff (jitter is applied by Prefect)."""
        return [
            min(self.max_backoff_s, self.backoff_s * self.factor**i) for i in range(self.retries)
        ] or [0.0]

    def within_budget(self, elapsed_s: float) -> bool:
        """True when a retry may still start ``elapsed_s`` seconds after the first attempt."""
        return self.budget_s is None or elapsed_s < self.budget_s


DEFAULT_RETRY_POLICY = RetryPolicy()
