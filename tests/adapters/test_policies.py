"""Retry policies: capped exponential delays, the budget, and configuration by environment."""

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
    "fields", [{"attempts": 0}, {"factor": 0.5}, {"backoff_s": -1}, {"budget_s": 0}]
)
def test_nonsense_values_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_environment_overrides_the_defaults() -> None:
    env = {"AIOP_RETRY_ATTEMPTS": "5", "AIOP_RETRY_BACKOFF_S": "0.1", "AIOP_RETRY_BUDGET_S": "none"}
    policy = RetryPolicy.from_env(environ=env)
    assert (policy.attempts, policy.backoff_s, policy.budget_s) == (5, 0.1, None)


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({"AIOP_RETRY_ATTEMPTS": "many"}, "AIOP_RETRY_ATTEMPTS='many' is not a whole number"),
        ({"AIOP_RETRY_JITTER": "lots"}, "is not a number"),
        ({"AIOP_RETRY_ATTEMPTS": "0"}, "attempts must be at least 1"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], hint: str) -> None:
    with pytest.raises(InvalidInputError, match=hint):
        RetryPolicy.from_env(environ=env)
