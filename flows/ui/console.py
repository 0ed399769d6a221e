"""What the main job prints, and the Prefect defaults that keep a first run's console clean."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.settings import DEFAULT_DOCS_URL, Settings, variable_name
from flows.steps.pipeline import RESULTS

if TYPE_CHECKING:
    from flows.server.local_server import LocalServer, PrefectApi

__all__ = [
    "describe_infrastructure_error",
    "docs_url",
    "flow_run_ui_url",
    "print_summary",
    "quiet_prefect_defaults",
    "run_flow_quietly",
]

T = TypeVar("T")

_docs_base = DEFAULT_DOCS_URL


def use_docs_url(base: str | None) -> None:
    """Make :func:`docs_url` link under ``base`` in this process; None keeps the base chosen.

    The entry point calls it once with the ``docs_url`` setting, or, when that is unset, with the
    docs address of the local Prefect server it uses (:func:`quiet_prefect_defaults`): every
    message and artifact it then prints links there.
    """
    global _docs_base
    if base:
        _docs_base = base


def docs_url(page: str = "") -> str:
    """The URL of a docs page under the base the entry point chose (:func:`use_docs_url`; default:
    the local ``mkdocs serve``)."""
    return _docs_base.rstrip("/") + "/" + page.lstrip("/")


def flow_run_ui_url(ui_base: str, flow_run_id: object) -> str:
    """A flow run's page in the Prefect UI's V2 front end, where its artifacts' charts render.

    Prefect's own links (``/runs/flow-run/<id>``, ``/flow-runs/flow-run/<id>``) open the V1 front
    end, which shows mermaid charts as code.

    Examples:
        >>> flow_run_ui_url("http://127.0.0.1:4200/", "0f3c")
        'http://127.0.0.1:4200/v2/runs/flow-run/0f3c'
    """
    return f"{ui_base.rstrip('/')}/v2/runs/flow-run/{flow_run_id}"


def quiet_prefect_defaults(settings: Settings | None = None, *, start: bool = False) -> PrefectApi:
    """Point this process at its Prefect API and keep Prefect quiet and fast; call it before
    importing Prefect. Returns the API :func:`flows.server.local_server.prefect_api` chose.

    Telemetry racing the first database migration causes ``database is locked`` errors; it is off
    unless the user turned it on. Links printed from now on use ``settings.docs_url``, or, when
    that is unset and the local server is in use, the docs it serves.

    Args:
        settings: the platform settings (default: the defaults).
        start: start the local server when none runs (the main job only).
    """
    settings = settings if settings is not None else Settings.model_construct()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first start creates and migrates the embedded server's database: on a busy machine that
    # took longer than Prefect's 20 s default, and the run died before it began.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from flows.server.local_server import prefect_api

    api = prefect_api(mode=settings.prefect_server, start=start)
    use_docs_url(settings.docs_url or api.docs_url)
    return api


class _DropShutdownNoise(logging.Filter):
    """Drops the embedded server's shutdown chatter that says nothing about the user's run.

    A short flow on the embedded server ends before Prefect's heartbeat thread sends its first
    heartbeat, which then fails against the stopped events worker and logs an ERROR with a
    traceback; the run itself is unaffected (heartbeats only detect crashed runs).
    """

    _NOISE = (
        "Error flushing",
        "Stopping temporary server",
        "Starting temporary server",
        "Error emitting event: prefect.flow-run.heartbeat",
        "Still processing items",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self._NOISE)


_V1_RUN_LINK = re.compile(r"^View at (\S+?)/(?:flow-runs|runs)/flow-run/([0-9a-f-]+)$")
_FINISHED = re.compile(r"^Finished in state (\w+)\(.*\)$", re.DOTALL)


class _OneLinkOneError(logging.Filter):
    """What the console shows of a run: one link to its V2 page, and its error once, at the end.

    Installed on the console handler only, so the run's logs in the UI keep every message.

    * Prefect's ``View at .../runs/flow-run/<id>`` (printed twice, opening the V1 pages where
      charts show as code) becomes one ``View at .../v2/runs/flow-run/<id>`` line.
    * ``Finished in state Failed('<the error>')`` keeps the state and drops the error, and the
      flow's own log of an :class:`~adapters.AiopError` is not shown: the command prints that error
      once, as its last paragraph, with where to read more.
    """

    def __init__(self) -> None:
        super().__init__()
        self._links: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        link = _V1_RUN_LINK.match(message)
        if link:
            url = flow_run_ui_url(link[1], link[2])
            if url in self._links:
                return False
            self._links.add(url)
            record.msg, record.args = f"View at {url}", ()
            return True
        finished = _FINISHED.match(message)
        if finished and finished[1] not in ("Completed", "Cached"):
            record.msg, record.args = f"Finished in state {finished[1]}", ()
            return True
        if record.levelno >= logging.ERROR and record.name == "prefect.flow_runs":
            from adapters import AiopError

            args = record.args if isinstance(record.args, tuple) else ()
            return not any(isinstance(arg, AiopError) for arg in args)
        return True


def _filter_console(console_filter: logging.Filter) -> None:
    """Add ``console_filter`` to Prefect's console handler(s), on the root logger."""
    import prefect.main  # noqa: F401 - configures Prefect's logging: its handlers exist from here
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and console_filter not in handler.filters:
            handler.addFilter(console_filter)


_CONSOLE_FILTER = _OneLinkOneError()


def run_flow_quietly(
    start: Callable[[], Awaitable[T]], server: LocalServer | None = None, *, debug: bool = False
) -> T:
    """Run an async flow to completion with the embedded server's noise filtered out.

    Args:
        start: makes the flow's coroutine.
        server: the local Prefect server to run against (the one :func:`flows.server.local_server.prefect_api` chose);
            waited for first. When it does not come up, the run uses Prefect's temporary embedded
            server instead and says so in one line.
        debug: re-raise an unexpected error with its traceback (the ``debug`` setting) instead
            of printing one paragraph.

    The filter stays for the rest of the process: the noise comes at interpreter exit, after the
    flow has returned.
    """
    noise = _DropShutdownNoise()
    for name in (
        "prefect",
        "prefect.events.clients",
        "prefect.events.utilities",
        "prefect.events.worker",
        "prefect.server",
        "EventsWorker",
    ):
        logging.getLogger(name).addFilter(noise)
    _filter_console(_CONSOLE_FILTER)

    async def main() -> T:
        return await start()

    try:
        with _against(server):
            return asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        if debug:
            raise
        print(f"error: {describe_infrastructure_error(exc)}", file=sys.stderr)
        raise SystemExit(1) from None


def _api_url() -> str:
    return os.environ.get("PREFECT_API_URL", "")


@contextlib.contextmanager
def _against(server: LocalServer | None) -> Iterator[None]:
    """Prefect's settings pointed at ``server`` once it answers (its embedded server otherwise)."""
    if server is None:
        yield
        return
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    if server.wait_ready():
        os.environ["PREFECT_API_URL"] = server.api_url
        os.environ["PREFECT_API_AUTH_STRING"] = server.auth_string
        updates = {PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: server.auth_string}
        with temporary_settings(updates=updates):
            yield
        return
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_API_AUTH_STRING", None)
    print(
        f"note: the local Prefect server at {server.ui_url} did not come up (its log:"
        f" {server.log}); this run uses a temporary embedded server instead.",
        file=sys.stderr,
        flush=True,
    )
    with temporary_settings(restore_defaults={PREFECT_API_URL, PREFECT_API_AUTH_STRING}):
        yield


def describe_infrastructure_error(exc: BaseException) -> str:
    """One paragraph for an error raised by Prefect's machinery rather than by a step."""
    from adapters.redaction import redact_urls

    text = redact_urls(str(exc).split(" stdout:", 1)[0].strip(), _api_url())
    if "ephemeral Prefect API server" in text:
        limit = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
        return (
            f"Prefect's embedded server did not start within {limit} s (its first start creates"
            " a database, which is slow on a busy machine). Start a server once with"
            " `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api, or raise"
            " PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS. Read more:"
            f" {docs_url('troubleshooting/')}#prefect-embedded-server-slow"
        )
    if "PREFECT_API_URL" in text or "connect" in text.lower():
        return (
            f"{type(exc).__name__}: {text}. Is the Prefect server in PREFECT_API_URL running? Start"
            " it with `prefect server start`, or unset PREFECT_API_URL to use the embedded server."
            f" Set {variable_name('debug')}=1 to see the traceback."
        )
    return (
        f"{type(exc).__name__}: {text}. This is not an error of your input or of a step; set"
        f" {variable_name('debug')}=1 to see the traceback and report it. Read more: {docs_url('troubleshooting/')}"
    )


def print_summary(summary: dict[str, Any]) -> None:
    """Print the run's summary as a short table."""
    steps = summary.get("steps", [])
    width = max((len(s["name"]) for s in steps), default=4)
    print()
    print(
        f"Pipeline finished: {summary['input_rows']} rows in, {summary['valid_rows']} valid,"
        f" {summary['quarantined_rows']} quarantined (backend: {summary['backend']},"
        f" grouped by {summary['group_by']})."
    )
    print(f"  {'step':<{width}}  {'state':<9}  {'attempts':>8}  {'seconds':>8}")
    for s in steps:
        print(
            f"  {s['name']:<{width}}  {s['state']:<9}  {s['attempts']:>8}  {s['duration_s']:>8.2f}"
        )
    print(f"Summary:    {summary['aggregates'].rsplit('/', 1)[0]}/summary.json")
    for key in RESULTS:
        print(f"{key.capitalize() + ':':<11} {summary[key]}")
    summarized = summary.get("summarize")  # --summarize: summary.md written, or why not
    if summarized:
        shown = (
            summarized["path"] if summarized["written"] else f"not written: {summarized['reason']}"
        )
        print(f"Summary.md: {shown}")
    for item in summary.get("fallbacks") or []:  # columns that fell back to string, and the fix
        print(f"Note:       column {item['column']!r} is text: {item['why']}.")
        print(f"            To type it, add to --schema: {item['schema']}")
    if summary.get("flow_run_url"):
        print(f"Flow run:   {summary['flow_run_url']}")
    else:
        print(f"Flow run:   {flow_run_ui_url(DEFAULT_UI_URL, summary['flow_run_id'])}")
        print(f"            (kept in {_embedded_database()}: open it after `prefect server start`)")


#: Where ``prefect server start`` serves the UI when no port is given.
DEFAULT_UI_URL = "http://127.0.0.1:4200"


def _embedded_database() -> str:
    """Where the embedded server keeps runs (the same database ``prefect server start`` reads)."""
    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().server.database.connection_url
        text = url.get_secret_value() if url is not None else ""
    except Exception:  # settings that fail to load: name the default place
        text = ""
    if text and not text.startswith("sqlite"):
        return "Prefect's database"
    path = text.split(":///", 1)[1] if ":///" in text else "~/.prefect/prefect.db"
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + "/") else path
