"""How healthy an agent looks: its breaker state and its recent runs in this process.

Examples:
    >>> history = RunHistory(size=3)
    >>> for ok in (True, False, True, True):
    ...     history.record(RunRecord("a", "a", "Completed" if ok else "Failed", ok, 0.0))
    >>> history.success_rate("a"), len(history.runs("a"))
    (0.6666666666666666, 3)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from adapters.breakers.breaker import Breaker, BreakerState

__all__ = ["AgentHealth", "RunHistory", "RunRecord", "effective_state"]

_STATE_RANK: dict[BreakerState, int] = {"closed": 0, "half-open": 1, "open": 2}


@dataclass(frozen=True)
class RunRecord:
    """One finished run of an agent in this process.

    Attributes:
        agent: the agent's name.
        step: the step (task run) name it ran as.
        state: the Prefect state name of the run (Completed, Cached, Failed...).
        ok: whether it succeeded.
        at: when it finished (epoch seconds of the manager's clock).
    """

    agent: str
    step: str
    state: str
    ok: bool
    at: float


@dataclass(frozen=True)
class AgentHealth:
    """How healthy an agent looks right now, and where that puts it in the ranking.

    Attributes:
        name: the agent's name.
        breaker_state: its breaker's state (an open breaker past its probe time: ``half-open``).
        success_rate: the share of its recent runs that succeeded (None: no runs yet).
        runs: how many recent runs the rate is based on.
        priority: its declared priority.
    """

    name: str
    breaker_state: BreakerState
    success_rate: float | None
    runs: int
    priority: int

    def sort_key(self) -> tuple[int, float, int, str]:
        """Smaller sorts first: breaker state, then success rate (none counts as 1.0), then
        priority (higher first), then name."""
        rate = 1.0 if self.success_rate is None else self.success_rate
        return (_STATE_RANK[self.breaker_state], -rate, -self.priority, self.name)


def effective_state(breaker: Breaker, clock: Callable[[], float]) -> BreakerState:
    """The breaker's state for ranking: open counts as half-open once its probe time has come
    (the breaker itself only changes state when the next call asks)."""
    snapshot = breaker.snapshot()
    state: BreakerState = snapshot["state"]
    probe_at = snapshot["probe_at"]
    if state == "open" and probe_at is not None and clock() >= probe_at:
        return "half-open"
    return state


class RunHistory:
    """The last ``size`` runs of each agent, in this process."""

    def __init__(self, size: int = 20) -> None:
        if size < 1:
            raise ValueError("a run history needs room for at least one run")
        self._size = size
        self._runs: dict[str, deque[RunRecord]] = {}

    def record(self, run: RunRecord) -> None:
        """Keep ``run``, forgetting the oldest run of its agent beyond ``size``."""
        self._runs.setdefault(run.agent, deque(maxlen=self._size)).append(run)

    def runs(self, agent: str | None = None) -> list[RunRecord]:
        """The kept runs of ``agent`` (or of every agent), oldest first."""
        if agent is not None:
            return list(self._runs.get(agent, ()))
        return sorted((r for runs in self._runs.values() for r in runs), key=lambda r: r.at)

    def success_rate(self, agent: str) -> float | None:
        """The share of ``agent``'s kept runs that succeeded; None when it has none."""
        runs = self._runs.get(agent)
        return sum(r.ok for r in runs) / len(runs) if runs else None
