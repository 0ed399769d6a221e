"""Retry policies: capped exponential delays and the budget (the environment: test_settings.py)."""

from __future__ import annotations

import pytest

from adapters import InvalidInputError, RetryPolicy


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=6, backoff_s=1, factor=3, max_backoff_s=10)
    assert policy.retries == 5
    assert policy.delays() == [1, 3, 9, 10, 10]


def test_single_attempt_means_no_retry() -> None:
    assert RetryPolicy(attempts=1).retries == 0


def test_budget_limits_when_a_retry_may_start() -> None:
    policy = RetryPolicy(budget_s=10)
    assert policy.within_budget(9.9) and not policy.within_budget(10)
    assert RetryPolicy(budget_s=None).within_budget(1e9)


@pytest.mark.parametrize(
    "fields",
    [
        {"attempts": 0},
        {"factor": 0.5},
        {"backoff_s": -1},
        {"budget_s": 0},
        {"attempts": 52},  # Prefect refuses more than 50 retry delays
        {"backoff_s": 1e300},
        {"max_backoff_s": float("inf")},
        {"factor": 1e300},
        {"jitter": 2.0},
        {"budget_s": 1e300},
    ],
)
def test_nonsense_values_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(fields))):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_the_most_attempts_allowed_never_overflow_whatever_the_factor() -> None:
    policy = RetryPolicy(attempts=51, backoff_s=86_400, factor=100, max_backoff_s=86_400)
    assert policy.delays() == [86_400.0] * 50
    assert RetryPolicy(attempts=51, backoff_s=0.5, factor=100, max_backoff_s=10).delays()[:3] == [
        0.5,
        10,
        10,
    ]
