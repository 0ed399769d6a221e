"""One model per policy: a value is refused the same way from the environment, YAML and code.

The retry and breaker knobs are declared once, on :class:`RetryPolicy` and :class:`BreakerPolicy`;
the settings object and the agents' ``retry:`` / ``breaker:`` sections use those models. So a bad
value gets the same reason and the same bounds wherever it was written; only the name of where it
was written differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from adapters.breakers.policy import BreakerPolicy
from adapters.errors import InvalidInputError
from adapters.retry_policy import RetryPolicy
from adapters.settings import Settings, load_settings
from agents.loader import load_file

#: (policy, field, bad value as text, the reason, the bounds): one row per kind of refusal.
REFUSALS = [
    (RetryPolicy, "attempts", "0", "greater than or equal to 1", "from 1 to 51"),
    (RetryPolicy, "attempts", "52", "less than or equal to 51", "from 1 to 51"),
    (RetryPolicy, "backoff_s", "-1", "greater than or equal to 0", "from 0 to 86400"),
    (RetryPolicy, "factor", "0.5", "greater than or equal to 1", "from 1 to 100"),
    (RetryPolicy, "jitter", "2", "less than or equal to 1", "from 0 to 1"),
    (RetryPolicy, "budget_s", "0", "greater than 0", "above 0, at most 604800"),
    (BreakerPolicy, "fail_max", "0", "greater than or equal to 1", "from 1 to 10000"),
    (
        BreakerPolicy,
        "reset_timeout",
        "1e300",
        "less than or equal to 86400",
        "above 0, at most 86400",
    ),
    (BreakerPolicy, "success_threshold", "0", "greater than or equal to 1", "from 1 to 1000"),
    (BreakerPolicy, "half_open_max_calls", "1001", "less than or equal to 1000", "from 1 to 1000"),
]
SECTION = {RetryPolicy: "retry", BreakerPolicy: "breaker"}


def from_environment(monkeypatch: pytest.MonkeyPatch, section: str, field: str, text: str) -> str:
    for variable in [v for v in os.environ if v.upper().startswith("AIOP_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv(f"AIOP_{section.upper()}_{field.upper()}", text)
    with pytest.raises(InvalidInputError) as info:
        load_settings()
    return str(info.value)


def from_yaml(tmp_path: Path, section: str, field: str, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "name: bad\ndescription: refused\ncapabilities: [work]\nimage: alpine:3\n"
        f"command: [echo]\n{section}:\n  {field}: {text}\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInputError) as info:
        load_file(path)
    return str(info.value)


def from_code(policy: type[Any], field: str, text: str) -> str:
    with pytest.raises(InvalidInputError) as info:
        policy(**{field: float(text) if "." in text or "e" in text else int(text)})
    return str(info.value)


@pytest.mark.parametrize(
    ("policy", "field", "text", "reason", "bounds"),
    REFUSALS,
    ids=[f"{p.__name__}.{f}={t}" for p, f, t, _, _ in REFUSALS],
)
def test_a_value_is_refused_the_same_way_from_the_environment_yaml_and_code(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    policy: type[Any],
    field: str,
    text: str,
    reason: str,
    bounds: str,
) -> None:
    section = SECTION[policy]
    messages = {
        "environment": from_environment(monkeypatch, section, field, text),
        "yaml": from_yaml(tmp_path, section, field, text),
        "code": from_code(policy, field, text),
    }
    default = policy.model_fields[field].default
    shown = str(int(default)) if float(default).is_integer() else str(default)
    said = f"is not valid (input should be {reason}); set a value {bounds} (default {shown})"
    for source, message in messages.items():
        assert said in message, (source, message)
        assert field in message.lower() and "\n" not in message, (source, message)
    assert f"AIOP_{section.upper()}_{field.upper()}={text!r}" in messages["environment"]
    assert f"field '{section}.{field}'" in messages["yaml"]
    assert f"{policy.__name__}.{field}=" in messages["code"]


@pytest.mark.parametrize("policy", [RetryPolicy, BreakerPolicy])
def test_each_knob_is_declared_once_and_the_settings_read_it_by_its_documented_name(
    policy: type[Any],
) -> None:
    from adapters.settings import setting_variables

    section = SECTION[policy]
    variables = setting_variables()
    for field, info in policy.model_fields.items():
        variable = f"AIOP_{section.upper()}_{field.upper()}"
        assert variables[variable] is info  # the settings' variable is the policy's own field
        assert info.description
    assert Settings.model_fields[section].annotation is policy


def test_a_policy_is_frozen_keyword_only_and_refuses_unknown_fields() -> None:
    policy = RetryPolicy(attempts=2)
    with pytest.raises(AttributeError, match="frozen"):
        policy.attempts = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(2)  # type: ignore[misc]
    with pytest.raises(InvalidInputError, match="attempt=2 is not a field of RetryPolicy"):
        RetryPolicy(attempt=2)


def test_true_or_false_is_not_a_number_of_anything() -> None:
    with pytest.raises(InvalidInputError, match="not true or false"):
        BreakerPolicy(fail_max=True)
    with pytest.raises(InvalidInputError, match="not true or false"):
        RetryPolicy(attempts=True)


def test_replace_validates_and_over_applies_only_what_was_set() -> None:
    agent = RetryPolicy(attempts=2, backoff_s=5.0, jitter=0.0)
    operator: dict[str, Any] = {"backoff_s": 0.1}
    combined = RetryPolicy(**operator).over(agent)
    assert (combined.attempts, combined.backoff_s, combined.jitter) == (2, 0.1, 0.0)
    with pytest.raises(InvalidInputError, match="jitter=5"):
        agent.replace(jitter=5)
