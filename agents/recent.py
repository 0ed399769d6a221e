"""Which agent ran a step, and the recent runs of each agent read from the Prefect server.

A step an agent runs is a ``run_step`` task run named ``<step> [<agent>]``
(:func:`agent_run_name`): the agent's name is in the task run's name, where the Prefect UI's
search and the API's name filter find it. It is deliberately not a tag: Prefect reserves tag
concurrency slots before every tagged task run, and on a SQLite server that request often meets
a locked database and stalls the step for 2 s. Runs recorded before this naming carry the tag
``agent:<name>`` instead; they are still counted.

Recent runs are asked of the Prefect API the caller chose (``aiop agents list`` asks
:func:`flows.server.local_server.prefect_api`: ``PREFECT_API_URL``, else the local server of this
``PREFECT_HOME``), never of a server started just to show a column.

Examples:
    >>> agent_run_name("validate", "validate-duckdb")
    'validate [validate-duckdb]'
    >>> ran_by("validate [validate-duckdb]")
    'validate-duckdb'
    >>> RecentRuns(ok=3, failed=1).text
    '3 ok, 1 failed'
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_SERVER", "RecentRuns", "agent_run_name", "ran_by", "read_recent_runs"]

_FAILED = {"FAILED", "CRASHED", "TIMEDOUT"}


def agent_run_name(step: str, agent: str | None) -> str:
    """The task run name of ``step`` run by ``agent``: ``<step> [<agent>]`` (just ``step``
    when no agent runs it)."""
    return f"{step} [{agent}]" if agent else step


def ran_by(task_run_name: str) -> str | None:
    """The agent named in a task run name made by :func:`agent_run_name`, or None."""
    if not task_run_name.endswith("]") or " [" not in task_run_name:
        return None
    return task_run_name.rsplit(" [", 1)[1][:-1] or None


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


#: Why there are no recent runs when no Prefect server is there to ask.
NO_SERVER = (
    "no Prefect server to ask: PREFECT_API_URL is not set and the local Prefect server of this"
    " PREFECT_HOME is not running (`python -m flows.data_pipeline` starts it)"
)


async def read_recent_runs(
    names: Iterable[str], *, api_url: str | None, limit: int = 20, timeout_s: float = 10.0
) -> tuple[dict[str, RecentRuns], str | None]:
    """The last ``limit`` finished runs of each agent, from the Prefect server at ``api_url``
    (this process's Prefect client must already point there, with its auth string).

    Returns:
        Runs per agent name, and why they could not be read (None when they were).
    """
    if not api_url:
        return {}, NO_SERVER
    try:
        return await asyncio.wait_for(_read(list(names), limit), timeout_s), None
    except Exception as exc:  # the column is informative; the listing must still print
        return {}, f"the Prefect server could not be asked ({type(exc).__name__}: {exc})"


async def _read(names: list[str], limit: int) -> dict[str, RecentRuns]:
    from prefect.client.orchestration import get_client

    found: dict[str, RecentRuns] = {}
    async with get_client() as client:
        for name in names:
            runs = await _runs_of(client, name, limit)
            failed = sum(
                1 for r in runs if r.state_type is not None and r.state_type.name in _FAILED
            )
            found[name] = RecentRuns(ok=len(runs) - failed, failed=failed)
    return found


async def _runs_of(client: Any, name: str, limit: int) -> list[Any]:
    """The last ``limit`` finished task runs of agent ``name``: named for it, or tagged (older)."""
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterState,
        TaskRunFilterStateType,
        TaskRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort

    finished = TaskRunFilterState(
        type=TaskRunFilterStateType(any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED])
    )
    by_name = TaskRunFilter(name=TaskRunFilterName(like_=f"[{name}]"), state=finished)
    by_tag = TaskRunFilter(tags=TaskRunFilterTags(all_=[f"agent:{name}"]), state=finished)
    runs: dict[Any, Any] = {}
    for task_run_filter in (by_name, by_tag):
        page = await client.read_task_runs(
            task_run_filter=task_run_filter,
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=limit * 2 if task_run_filter is by_name else limit,
        )
        for run in page:
            # like_ is a substring match in which '_' matches any character: check exactly.
            if task_run_filter is by_tag or ran_by(run.name) == name:
                runs[run.id] = run
    newest = sorted(
        runs.values(),
        key=lambda r: r.expected_start_time.timestamp() if r.expected_start_time else 0.0,
        reverse=True,
    )
    return newest[:limit]
