"""What the platform's policies share: one frozen model per policy, its bounds declared on its fields.

A policy (:class:`~adapters.retry_policy.RetryPolicy`, :class:`~adapters.breakers.policy.BreakerPolicy`)
is a :class:`Policy`: a frozen, keyword-only pydantic model whose fields carry their default, their
bounds and their description, once. The same model is

* built in code (``RetryPolicy(attempts=2)``): a bad value is an
  :class:`~adapters.errors.InvalidInputError`;
* a field of the settings object (``Settings.retry``, read from ``AIOP_RETRY_<FIELD>``,
  :mod:`adapters.settings`);
* a section of an agent definition (``retry:``, ``breaker:``, :mod:`agents.spec`).

All three validate through the model, so a value is refused the same way wherever it comes from:
:func:`problem` words one refused value (what is wrong and the bounds, from the field itself), and
each source adds only where the value came from (the variable, the file and field, the class).

Examples:
    >>> from adapters.retry_policy import RetryPolicy
    >>> RetryPolicy(attempts=2).replace(jitter=0).jitter
    0.0
    >>> RetryPolicy(attempts=0)
    Traceback (most recent call last):
    ...
    adapters.errors.InvalidInputError: RetryPolicy.attempts=0 is not valid (input should be greater than or equal to 1); set a value from 1 to 51 (default 3)
"""

from __future__ import annotations

from typing import Any, Self, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from adapters.errors import InvalidInputError

__all__ = ["Policy", "bounds_text", "default_text", "number_text", "problem"]


class Policy(BaseModel):
    """The base of a policy: frozen, keyword-only, unknown fields refused.

    Built in code, a bad value raises :class:`~adapters.errors.InvalidInputError` (one paragraph:
    the field, the value, what is wrong and the bounds). Inside another model (the settings, an
    agent definition) the model validates as usual, and that model's reader words the error with
    :func:`problem`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            name = type(self).__name__
            raise InvalidInputError(
                "; ".join(
                    f"{name}.{_dotted(e['loc'])}={e.get('input')!r} {problem(type(self), e)}"
                    for e in exc.errors(include_url=False)
                )
            ) from None

    # Marked like pydantic's own ``__init__`` (as ``RootModel`` does): a policy inside another
    # model (the settings, an agent definition) is then validated without this ``__init__``, so its
    # errors stay part of that model's ValidationError, which the model's reader words.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"{type(self).__name__} is frozen; make a changed copy with .replace({name}=...)"
        )

    @field_validator("*", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic reads True as 1: a knob is a number, never a flag
            raise ValueError("a number is needed, not true or false")
        return value

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` (field=value); the fields set here stay set.

        Raises:
            InvalidInputError: a change has a bad value.
        """
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self)(**{**given, **changes})

    def over(self, base: Self) -> Self:
        """``base`` with the fields set in this policy applied over it (an operator's settings
        over an agent's defaults: what was set wins, what was not keeps ``base``'s value).

        Examples:
            >>> from adapters.retry_policy import RetryPolicy
            >>> RetryPolicy(attempts=5).over(RetryPolicy(attempts=2, jitter=0)).jitter
            0.0
        """
        return base.replace(**{name: getattr(self, name) for name in self.model_fields_set})


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def problem(model: type[BaseModel], error: ErrorDetails) -> str:
    """What is wrong with one refused value of ``model``, and the fix: ``is not valid (input
    should be greater than or equal to 1); set a value from 1 to 51 (default 3)``.

    The caller names the value first (``AIOP_RETRY_ATTEMPTS='0'``, ``field 'retry.attempts'``).
    """
    if error["type"] == "extra_forbidden":
        return f"is not a field of {model.__name__}; its fields are {', '.join(model.model_fields)}"
    info = _field(model, error["loc"])
    text = f"is not valid ({str(error['msg']).removeprefix('Value error, ').lower()})"
    if info is None:
        return text
    bounds = bounds_text(info)
    default = "" if info.is_required() else f" (default {default_text(info.default)})"
    return f"{text}; set {f'a value {bounds}' if bounds else 'a valid value'}{default}"


def _field(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The field ``loc`` names inside ``model`` (nested models followed), or None."""
    info: FieldInfo | None = None
    current: Any = model
    for part in loc:
        # A field typed ``Model | None`` leads into the model.
        current = next((m for m in (current, *get_args(current)) if _is_model(m)), current)
        fields = getattr(current, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return info
        info = fields[part]
        current = info.annotation
    return info


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def bounds_text(info: FieldInfo) -> str:
    """The bounds of a numeric field in words: ``from 1 to 51``, ``above 0, at most 86400``.

    Examples:
        >>> from adapters.retry_policy import RetryPolicy
        >>> bounds_text(RetryPolicy.model_fields["budget_s"])
        'above 0, at most 604800'
    """
    low: tuple[str, object] | None = None
    high: tuple[str, object] | None = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = ("from", item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = ("above", item.gt)
        elif isinstance(item, annotated_types.Le):
            high = ("to", item.le)
        elif isinstance(item, annotated_types.Lt):
            high = ("below", item.lt)
    if low and high and low[0] == "from" and high[0] == "to":
        return f"from {number_text(low[1])} to {number_text(high[1])}"
    words = []
    if low:
        words.append(f"{'at least' if low[0] == 'from' else 'above'} {number_text(low[1])}")
    if high:
        words.append(f"{'at most' if high[0] == 'to' else 'below'} {number_text(high[1])}")
    return ", ".join(words)


def number_text(value: object) -> str:
    """A bound as written in messages and docs: ``51``, ``0.5``, ``86400``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return str(int(number)) if number.is_integer() else str(number)
    return str(value)


def default_text(value: object) -> str:
    """A default as an environment variable would write it: ``none``, ``1``, ``30``, ``0.5``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
