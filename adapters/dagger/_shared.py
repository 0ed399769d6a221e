"""One engine session per flow run, shared by the steps that run in its event loop (no ``dagger``).

Opening a session costs a ``dagger session`` CLI (or a connection to an existing one) and a full
schema introspection (~450 KB from a real engine). :class:`SharedSession` is opened once, when a
flow run starts (:meth:`adapters.dagger.runner.DaggerRunner.session`), registered for the running
event loop, and used by every :meth:`~adapters.dagger.runner.DaggerRunner.run` in that loop until
the block that opened it ends: that end is its one close point.

* **One event loop, never threads**: the registry is keyed by the loop, so a run in another
  thread (another loop) never sees it and opens a session of its own, as before. The SDK's client
  is safe to share between the tasks of one loop; it is never shared across loops (no global
  ``dag``).
* **Engine death**: a run whose engine broke marks the session broken (:meth:`mark_broken`);
  the next run (a retry) opens a fresh one within the provisioning limit. The broken one is
  closed once the runs still using it have ended (:meth:`lease`), so a step whose request is
  unaffected finishes on it. So an engine that died surfaces at once, typed, in the steps that
  were running, and a retry does not reuse a dead connection.
* **One connection failure fails one step**: the runner opens its sessions without the SDK's
  reconnecting GraphQL session (``dagger.Config(retry=None)``). That session closes the shared
  HTTP client for *every* request in flight as soon as one request's connection fails (gql
  ``ReconnectingAsyncClientSession``: a ``TransportConnectionFailed`` sets its reconnect event,
  whose loop closes the transport), which failed every step running at that moment; the plain
  session leaves the other requests on their own connections.
* **At most 100 requests at once**: the SDK sends a session's requests through one pooled HTTP
  client with httpx's default limits, 100 connections; a step's request beyond them waits for a
  free connection (within its step's ``timeout_s``), it does not fail. A run's session therefore
  runs at most 100 steps (or llm steps' requests) at the same time.
* **Engine log lines**: the CLI's log cannot say which step a line belongs to, so it goes to the
  sink given when the session was opened (the flow run's log), never to a step's; a step's own
  output (its stdout and stderr) reaches that step's sink, from its exec result.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
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
    _users: dict[int, int] = field(default_factory=dict)
    _retired: list[Opened[_C]] = field(default_factory=list)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[_C]:
        """The client for one run: the open session's, or a fresh one's if the engine broke.

        A session replaced meanwhile is closed when its last run ends.
        """
        async with self._lock:
            if self.broken:
                self._retired.append(self.opened)
                self.opened = await self.reopen()
                self.sessions += 1
                self.broken = False
                self.images.clear()  # a new session resolves tags again
                self._close_unused()
            opened = self.opened
            self._users[id(opened)] = self._users.get(id(opened), 0) + 1
            self.runs += 1
        try:
            yield opened.client
        finally:
            self._users[id(opened)] -= 1
            self._close_unused()

    def mark_broken(self, client: _C) -> None:
        """The engine behind ``client`` broke: the next run opens a new session."""
        if client is self.opened.client:
            self.broken = True

    def _close_unused(self) -> None:
        for old in [o for o in self._retired if not self._users.get(id(o))]:
            self._retired.remove(old)
            self._users.pop(id(old), None)
            closing = asyncio.ensure_future(old.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close the session (and any replaced one still open or closing)."""
        await self.opened.close()
        for old in self._retired:
            self._closing.add(asyncio.ensure_future(old.close()))
        self._retired.clear()
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
