"""Runs whose process died end as ``Crashed``: each run records its process, the next one checks.

A flow run killed with SIGKILL (``kill -9``, the kernel's OOM killer, a closed container) cannot
report a final state, so Prefect keeps it ``Running`` forever: in the API, in the UI, in
``aiop history`` and in the history chart. Prefect 3.9 itself only sends heartbeat
events (``prefect.flow-run.heartbeat``, every 180 s by default); turning their absence into a
state takes a proactive automation on a server that outlives the run
(adr/0023-killed-runs-end-crashed.md says why the platform does this instead):

* :func:`record_process` labels the running flow run with the process that runs it,
  ``aiop.process = "<host>:<pid>:<process start time>"`` (the start time tells a re-used pid apart);
* :func:`mark_dead_runs_crashed`, called when a pipeline run starts and by ``flows.ui.history``, reads
  the ``Running`` flow runs, and each one labelled with a process of this host that no longer
  runs is set ``Crashed`` (with its unfinished task runs), with a message naming the process.

Runs of other hosts are left alone (their processes cannot be checked from here): the next run on
their host marks them.

Examples:
    >>> process = this_process()
    >>> process.is_running()
    True
    >>> ProcessId.parse(process.label()) == process
    True
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import psutil

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

__all__ = [
    "LABEL",
    "CrashedRun",
    "ProcessId",
    "check_at_start",
    "mark_dead_runs_crashed",
    "record_process",
    "this_process",
]

#: The flow-run label that names the process running the run.
LABEL = "aiop.process"
#: How far two readings of one process's start time may differ (they are rounded to 10 ms).
_START_TOLERANCE_S = 0.05
#: Running flow runs read per check (the newest first).
_LIMIT = 200


@dataclass(frozen=True)
class ProcessId:
    """One process on one host, told apart from a later process that re-uses its pid."""

    host: str
    pid: int
    started: float  # seconds since the epoch, as psutil reads it

    def label(self) -> str:
        """The label value, ``<host>:<pid>:<start time>``."""
        return f"{self.host}:{self.pid}:{self.started:.2f}"

    @classmethod
    def parse(cls, text: object) -> ProcessId | None:
        """The process a label names, or None for a label this module did not write."""
        if not isinstance(text, str):
            return None
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), float(rest)) if host else None
        except ValueError:
            return None

    def is_running(self) -> bool:
        """Whether this very process still runs (a zombie, or another process with its pid, is
        not it). Only meaningful on its own host."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(process.create_time() - self.started) <= _START_TOLERANCE_S
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:  # another user's live process: it exists
            return True


def this_process() -> ProcessId:
    """The process calling this, on this host."""
    import os

    pid = os.getpid()
    return ProcessId(socket.gethostname(), pid, round(psutil.Process(pid).create_time(), 2))


async def record_process(client: PrefectClient, flow_run_id: UUID) -> None:
    """Label ``flow_run_id`` with the process running it (:data:`LABEL`)."""
    await client.update_flow_run_labels(flow_run_id, {LABEL: this_process().label()})


@dataclass(frozen=True)
class CrashedRun:
    """A flow run found dead and set ``Crashed``."""

    id: UUID
    name: str
    process: ProcessId
    task_runs: int  # its unfinished task runs, set Crashed with it

    def line(self) -> str:
        """One line for a log or a console."""
        return (
            f"flow run '{self.name}' was still Running although its process (pid"
            f" {self.process.pid} on {self.process.host}) had ended, killed without a chance to"
            " report (SIGKILL, out of memory); it is now Crashed"
        )


def _message(process: ProcessId) -> str:
    return (
        f"The process running this flow run (pid {process.pid} on {process.host}) ended without"
        " reporting a final state: it was killed (SIGKILL, the out-of-memory killer) or its"
        " machine stopped. Found by a later run on the same host."
    )


async def mark_dead_runs_crashed(client: PrefectClient) -> list[CrashedRun]:
    """Set ``Crashed`` every ``Running`` flow run of this host whose recorded process has ended.

    Its task runs that were still running or pending are set ``Crashed`` too. Runs without the
    :data:`LABEL` label, or labelled with a process of another host, are left as they are.

    Returns:
        The runs marked, oldest first.
    """
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Crashed

    host = socket.gethostname()
    running = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
        ),
        sort=FlowRunSort.START_TIME_DESC,
        limit=_LIMIT,
    )
    marked: list[CrashedRun] = []
    for run in reversed(running):
        process = ProcessId.parse((run.labels or {}).get(LABEL))
        if process is None or process.host != host or process.is_running():
            continue
        message = _message(process)
        tasks = await client.read_task_runs(
            task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]),
                state=TaskRunFilterState(
                    type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                ),
            )
        )
        for task in tasks:
            await client.set_task_run_state(task.id, Crashed(message=message), force=True)
        await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        marked.append(CrashedRun(run.id, run.name, process, len(tasks)))
    return marked


async def check_at_start(logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    """At the start of a flow run: record its process, and mark the dead runs of this host.

    One warning line per run marked. A failure to check is logged and never fails the run.
    """
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    try:
        async with get_client() as client:
            if flow_run.id:
                await record_process(client, UUID(str(flow_run.id)))
            crashed = await mark_dead_runs_crashed(client)
    except Exception as exc:  # the API is the run's own: a real outage fails the run soon anyway
        logger.warning("could not check for runs killed earlier: %s: %s", type(exc).__name__, exc)
        return
    for run in crashed:
        logger.warning("%s", run.line())
