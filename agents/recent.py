"""Recent runs of each agent, read from the Prefect server (task runs tagged ``agent:<name>``).

Only asked when a Prefect API is configured (``PREFECT_API_URL``): ``python -m agents list`` must
not start an embedded server just to show a column.

Examples:
    >>> RecentRuns(ok=3, failed=1).text
    '3 ok, 1 failed'
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["RecentRuns", "read_recent_runs"]

_FAILED = {"FAILED", "CRASHED", "TIMEDOUT"}


@dataclass(frozen=True)
class RecentRuns:
    """How an agent's recent finished runs ended."""

    ok: int
    failed: int

    @property
    def text(self) -> str:
        """``'3 ok, 1 failed'``, or ``'none'``."""
        if not self.ok and not self.failed:
            return "none"
        return f"{self.ok} ok, {self.failed} failed"


async def read_recent_runs(
    names: Iterable[str], *, limit: int = 20, timeout_s: float = 10.0
) -> tuple[dict[str, RecentRuns], str | None]:
    """The last ``limit`` finished runs of each agent, from the Prefect server.

    Returns:
        Runs per agent name, and why they could not be read (None when they were).
    """
    if not os.environ.get("PREFECT_API_URL"):
        return {}, "set PREFECT_API_URL to read recent runs from the Prefect server"
    try:
        return await asyncio.wait_for(_read(list(names), limit), timeout_s), None
    except Exception as exc:  # the column is informative; the listing must still print
        return {}, f"the Prefect server could not be asked ({type(exc).__name__}: {exc})"


async def _read(names: list[str], limit: int) -> dict[str, RecentRuns]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
        TaskRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort

    finished = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]
    found: dict[str, RecentRuns] = {}
    async with get_client() as client:
        for name in names:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    tags=TaskRunFilterTags(all_=[f"agent:{name}"]),
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=finished)),
                ),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=limit,
            )
            failed = sum(
                1 for r in runs if r.state_type is not None and r.state_type.name in _FAILED
            )
            found[name] = RecentRuns(ok=len(runs) - failed, failed=failed)
    return found
