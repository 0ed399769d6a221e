"""``StepOutcome``: how one step went in a flow run (re-exported by :mod:`flows.runtime.step_task`), and
``StepFacts``: what a step's task runs learn on the way besides their result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters import StepResult
from adapters.llm_contract import LlmResult

__all__ = ["StepFacts", "StepOutcome"]


@dataclass
class StepFacts:
    """What the task runs of one step learn besides their result, handed back as a value.

    :func:`flows.runtime.step_task.execute_step` creates one per step and passes it to every attempt of
    ``run_step`` (a parameter outside the cache key); the attempts add to it and the outcome
    reads it. A direct ``run_step`` call needs none.

    Attributes:
        breaker_wait_s: seconds the step's attempts waited for an open circuit's probe time.
    """

    breaker_wait_s: float = 0.0

    def add_breaker_wait(self, seconds: float) -> None:
        """Add ``seconds`` of waiting on an open circuit."""
        self.breaker_wait_s += seconds


@dataclass(frozen=True)
class StepOutcome:
    """How one step went in this flow run.

    Attributes:
        name: the step name.
        state: the Prefect state name (Completed, Cached, Failed...).
        attempts: attempts made in this run (0 when the result came from the cache).
        duration_s: wall time in this run, Prefect overhead included.
        result: the StepResult, when the step succeeded.
        error: the exception, when it failed.
        started_at: when the step was submitted (epoch seconds).
        breaker_wait_s: seconds spent waiting for an open circuit's probe time.
        llm: for an llm step that succeeded, its model, calls and token usage.
    """

    name: str
    state: str
    attempts: int
    duration_s: float
    result: StepResult | None = None
    error: BaseException | None = None
    started_at: float = 0.0
    breaker_wait_s: float = 0.0
    llm: LlmResult | None = None

    @property
    def run_s(self) -> float | None:
        """The step's own run time in this run (its command, as the runner timed it): 0.0 when the
        result came from the cache, None when there is no result.

        ``duration_s - run_s`` is what orchestration added to this step.
        """
        if self.result is None:
            return None
        return 0.0 if self.state == "Cached" else self.result.duration_s

    def as_summary(self) -> dict[str, Any]:
        """The ``{name, state, attempts, duration_s, run_s, breaker_wait_s}`` entry of
        ``summary.json`` (``run_s`` is None when the step has no result)."""
        return {
            "name": self.name,
            "state": self.state,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 3),
            "run_s": None if self.run_s is None else round(self.run_s, 3),
            "breaker_wait_s": round(self.breaker_wait_s, 3),
        }
