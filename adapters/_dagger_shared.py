"""One engine session per flow run, shared by the steps that run in its event loop (no ``dagger``).

Opening a session costs a ``dagger session`` CLI (or a connection to an existing one) and a full
schema introspection (~450 KB from a real engine). :class:`SharedSession` is opened once, when a
flow run starts (:meth:`adapters.dagger_runner.DaggerRunner.session`), registered for the running
event loop, and used by every :meth:`~adapters.dagger_runner.DaggerRunner.run` in that loop until
the block that opened it ends: that end is its one close point.

* **One event loop, never threads**: the registry is keyed by the loop, so a run in another
  thread (another loop) never sees it and opens a session of its own, as before. The SDK's client
  is safe to share between the tasks of one loop; it is never shared across loops (no global
  ``dag``).
* **Engine death**: a run whose engine broke marks the session broken (:meth:`mark_broken`);
  the next run (a retry) opens a fresh one within the provisioning limit, and the broken one is
  closed in the background. So an engine that died surfaces at once, typed, in the steps that were
  running, and a retry does not reuse a dead connection.
* **Engine log lines**: the CLI's log cannot say which step a line belongs to, so it goes to the
  sink given when the session was opened (the flow run's log), never to a step's; a step's own
  output (its stdout and stderr) reaches that step's sink, from its exec result.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Opened", "SharedSession", "current", "register", "unregister"]

_C = TypeVar("_C")


@dataclass
class Opened(Generic[_C]):
    """An open session: its connection (to close), its client and what closes it properly."""

    connection: AbstractAsyncContextManager[Any]
    client: _C
    close: Callable[[], Awaitable[None]]


@dataclass
class SharedSession(Generic[_C]):
    """The session of one flow run, in one event loop.

    Attributes:
        opened: the session in use.
        reopen: opens a replacement after the engine broke.
        secrets: secret values of the runs served, masked in the engine log's lines.
        sessions: sessions opened for this run (1 unless the engine broke).
        runs: runs (step attempts) served.
        images: image tag -> the reference with digest it resolved to in this session.
        say: writes a line about the session to the sink given when it was opened.
    """

    opened: Opened[_C]
    reopen: Callable[[], Awaitable[Opened[_C]]]
    secrets: list[str] = field(default_factory=list)
    sessions: int = 1
    runs: int = 0
    images: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = lambda line: None
    broken: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    async def client(self) -> _C:
        """The client for one run: the open session's, or a fresh one's if the engine broke."""
        async with self._lock:
            if self.broken:
                old = self.opened
                self.opened = await self.reopen()
                self.sessions += 1
                self.broken = False
                self.images.clear()  # a new session resolves tags again
                closing = asyncio.ensure_future(old.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self.runs += 1
            return self.opened.client

    def mark_broken(self, client: _C) -> None:
        """The engine behind ``client`` broke: the next run opens a new session."""
        if client is self.opened.client:
            self.broken = True

    async def aclose(self) -> None:
        """Close the session (and any replaced one still closing)."""
        await self.opened.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedSession[Any]] = (
    weakref.WeakKeyDictionary()
)


def current() -> SharedSession[Any] | None:
    """The shared session of the running event loop, if a flow run opened one."""
    return _SHARED.get(asyncio.get_running_loop())


def register(shared: SharedSession[Any]) -> None:
    """Make ``shared`` the session of the running event loop."""
    _SHARED[asyncio.get_running_loop()] = shared


def unregister(shared: SharedSession[Any]) -> None:
    """Forget ``shared`` (the block that opened it ended)."""
    loop = asyncio.get_running_loop()
    if _SHARED.get(loop) is shared:
        del _SHARED[loop]
