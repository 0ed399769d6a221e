"""The hard limits around one run: session start, close, step time.

The SDK's connection is an async context manager whose start cannot be cancelled (it waits for the
CLI in a thread). :func:`open_session` therefore waits for it at most ``limit`` seconds and then
*abandons* it: the attempt is cancelled, the run's CLI is killed, and a session that opens anyway
is closed in the background. :func:`close_session` bounds closing the same way, and
:func:`step_deadline` bounds the command and the reads of its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, cast

from adapters.contract import StepSpec
from adapters.dagger.engine_process import EngineLog, ProgressConsole, engine_said
from adapters.dagger.errors import ENGINE_HINT, FOREIGN_ERRORS, describe, scrub, translate_error
from adapters.errors import InvalidInputError, ProvisioningTimeoutError, StepTimeoutError
from adapters.settings import variable_name

__all__ = ["check_limits", "close_session", "open_session", "step_deadline"]

# The runner's logger: these messages are about its runs.
logger = logging.getLogger("adapters.dagger.runner")

_T = TypeVar("_T")

#: Abandoned tasks still closing a session (kept referenced until they end).
_BACKGROUND: set[asyncio.Task[Any]] = set()


def check_limits(**limits: float | None) -> None:
    """Raise InvalidInputError unless each limit is None or a positive number of seconds."""
    for name, value in limits.items():
        if value is not None and not value > 0:
            raise InvalidInputError(f"{name} must be a positive number of seconds, not {value!r}")


async def open_session(
    connection: AbstractAsyncContextManager[_T],
    *,
    limit: float,
    engine_log: EngineLog,
    console: ProgressConsole,
    spec: StepSpec | None,
) -> _T:
    """Enter ``connection`` within ``limit`` seconds.

    Raises:
        ProvisioningTimeoutError: it did not open in time (the attempt was abandoned).
        AiopError: entering it raised a foreign error, translated
            (:func:`adapters.dagger.errors.translate_error`; secret values scrubbed, the engine's
            last words appended).
    """
    task = asyncio.ensure_future(connection.__aenter__())
    task.add_done_callback(lambda _: engine_log.spawn_over())
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        _abandon(task, connection, engine_log)
        console.stop_displays()
        raise
    if not done:
        _abandon(task, connection, engine_log)
        console.stop_displays()
        raise ProvisioningTimeoutError(
            f"the Dagger engine was not ready within provision_timeout_s={limit:g} s; the attempt"
            f" was abandoned{engine_said(engine_log, spec)}. If the engine is starting for the"
            f" first time, raise the limit ({variable_name('dagger_provision_timeout_s')}, or"
            f" {variable_name('dagger_first_run_timeout_s')} for a flow run's session); else {ENGINE_HINT}",
            step=spec.name if spec else None,
        )
    try:
        return task.result()
    except FOREIGN_ERRORS as exc:
        console.stop_displays()
        scrub(exc, spec.secret_values() if spec else [])
        error = translate_error(exc, connected=False, spec=spec)
        error.message += engine_said(engine_log, spec)
        error.args = (error.message,)
        raise error from exc


async def close_session(
    connection: AbstractAsyncContextManager[Any], *, limit: float, engine_log: EngineLog
) -> None:
    """Exit ``connection`` within ``limit`` seconds, else kill the CLI; a failure is only logged."""
    task = asyncio.ensure_future(connection.__aexit__(None, None, None))
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        engine_log.kill_session_processes()
        task.add_done_callback(_retrieve)
        raise
    if not done:
        logger.warning("closing the Dagger session took longer than %g s; killing its CLI", limit)
        engine_log.kill_session_processes()
        task.add_done_callback(_retrieve)
        return
    error = task.exception()
    if error is not None:
        # The step's outcome is already known; a session that closes badly does not change it.
        logger.warning("closing the Dagger session failed: %s", describe(error))


@contextlib.asynccontextmanager
async def step_deadline(spec: StepSpec) -> AsyncIterator[None]:
    """Cancel the block past ``spec.timeout_s``.

    Raises:
        StepTimeoutError: the block ran longer (a TimeoutError from inside it passes through).
    """
    scope = asyncio.timeout(spec.timeout_s)
    try:
        async with scope:
            yield
    except TimeoutError as exc:
        if not scope.expired():
            raise
        raise StepTimeoutError(
            f"the command ran longer than timeout_s={spec.timeout_s:g} s and was stopped",
            step=spec.name,
            timeout_s=spec.timeout_s,
        ) from exc


def _abandon(
    task: asyncio.Task[Any], connection: AbstractAsyncContextManager[Any], engine_log: EngineLog
) -> None:
    """Stop waiting for a connection attempt: cancel it, kill its CLI, close it if it still opens."""
    task.cancel()
    engine_log.kill_session_processes()

    def finished(done: asyncio.Task[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        closing = asyncio.ensure_future(connection.__aexit__(None, None, None))
        _BACKGROUND.add(closing)
        closing.add_done_callback(_retrieve)

    task.add_done_callback(finished)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Consume an abandoned task's outcome (so asyncio does not log it as never retrieved)."""
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.debug(
            "abandoned Dagger task ended with %s", describe(cast(BaseException, task.exception()))
        )
