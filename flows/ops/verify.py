"""``aiop verify``: the integration check users run first.

Prints one row per check (PASS, FAIL, WARN or SKIP) with what it found and, when it did not pass, the
fix. Exits 1 only when a required check fails; a missing Dagger engine is reported, not required.

Examples:
    $ aiop verify
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from adapters import AiopError, StepSpec, choose_backend
from adapters.dagger.diagnosis import diagnose_engine
from adapters.local_runner import LocalRunner
from adapters.redaction import redact_url, redact_urls
from adapters.settings import Settings, variable_name
from flows.server.local_server import PrefectApi
from flows.ui.console import quiet_prefect_defaults

__all__ = ["Check", "render", "run_checks"]

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]

#: (distribution, lowest version, first version not supported)
REQUIREMENTS = (
    ("prefect", "3.9.1", "3.10"),
    ("dagger-io", "0.21.11", "0.22"),
    ("pydantic", "2.7", "3"),
    ("pybreaker", "1.4.1", "1.5"),
    ("duckdb", "1.1", "3"),
)
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = True


def _vtuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_python() -> Check:
    """Python 3.11 or newer."""
    current = ".".join(map(str, sys.version_info[:3]))
    return Check("Python", "PASS", f"{current} at {sys.executable}")
    return Check("Python", "FAIL", current, "install Python 3.11 or newer")


def check_packages() -> list[Check]:
    """The chosen dependencies, installed in supported versions."""
    checks = []
    for dist, low, high in REQUIREMENTS:
        try:
            found = version(dist)
        except PackageNotFoundError:
            checks.append(Check(dist, "FAIL", "not installed", 'run: pip install -e ".[dev]"'))
            continue
        ok = _vtuple(low) <= _vtuple(found) < _vtuple(high)
        checks.append(
            Check(
                dist,
                "PASS" if ok else "FAIL",
                f"{found} (supported: >={low},<{high})",
                "" if ok else f'run: pip install "{dist}>={low},<{high}"',
            )
        )
    return checks


def check_prefect_api(api: PrefectApi, timeout_s: float = 3.0) -> Check:
    """The Prefect API the platform's commands use (:func:`flows.server.local_server.prefect_api`)
    answers, or the main job will start its local server."""
    if api.local is not None:
        return Check(
            "Prefect API",
            "PASS",
            f"{api.describe()} answers (pid {api.local.pid}, auth string required)",
            'use it from your own shell: eval "$(aiop server env)"',
        )
    url = api.url
    if not url:
        port = _suggested_port()
        return Check(
            "Prefect API",
            "PASS",
            "not configured: the main job starts a local Prefect server on first use and keeps it"
            f" between runs ({variable_name('prefect_server')}=embedded: a temporary server per"
            " run)",
            f"to use a server of your own: `prefect server start --port {port}`, then"
            f" export PREFECT_API_URL=http://127.0.0.1:{port}/api",
        )
    shown = redact_url(url)
    try:
        with urllib.request.urlopen(_health_request(url), timeout=timeout_s) as reply:
            ok = reply.status == 200
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return Check(
            "Prefect API",
            "FAIL",
            f"{shown} does not answer ({redact_urls(str(exc), url)})",
            "start it with `prefect server start`, or unset PREFECT_API_URL to use the local server",
        )
    return Check("Prefect API", "PASS" if ok else "FAIL", f"{shown} answers", "")


def _suggested_port() -> int:
    """Prefect's default port when it is free, else a free one (a port in use cannot serve)."""
    import socket

    for port in (4200, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    return 4200


def _health_request(url: str, path: str = "/health") -> urllib.request.Request:
    """A GET of ``<url><path>``; credentials in the URL become a basic-auth header (urllib
    cannot take them in the URL)."""
    parts = urllib.parse.urlsplit(url.rstrip("/") + path)
    userinfo, at, host = parts.netloc.rpartition("@")
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=host)))
    if at:
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    return request


def check_prefect_ui(api_choice: PrefectApi, timeout_s: float = 3.0) -> Check:
    """The server's UI calls the same API as the one the commands use (else its pages stay blank).

    ``prefect server start --port P`` serves a UI that still calls ``http://127.0.0.1:4200/api``
    unless ``PREFECT_SERVER_UI_API_URL`` is set; the UI's ``/ui-settings`` says which API it calls.
    Reported, not required: runs work either way.
    """
    api = (api_choice.url or "").rstrip("/")
    if not api:
        return Check(
            "Prefect UI",
            "SKIP",
            "no Prefect server runs yet: the main job's first run starts the local one",
            "",
            False,
        )
    secret_base = api.removesuffix("/api")
    base = redact_url(secret_base)  # what is shown: never the URL's credentials
    try:
        request = _health_request(secret_base, "/ui-settings")
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            settings = json.load(reply)
    except (OSError, ValueError) as exc:
        why = redact_urls(str(exc), secret_base)
        return Check("Prefect UI", "SKIP", f"{base}/ui-settings did not answer ({why})", "", False)
    ui_api = redact_url(str(settings.get("api_url") or "").rstrip("/"))
    shown_api = redact_url(api)
    if _same_api(ui_api, api):
        return Check("Prefect UI", "PASS", f"{base}/v2 calls {ui_api}", required=False)
    return Check(
        "Prefect UI",
        "FAIL",
        f"the UI at {base} calls the API at {ui_api or '(none)'}, not {shown_api}: its pages stay"
        " blank",
        f"restart the server with PREFECT_SERVER_UI_API_URL={shown_api} (read"
        f" {_docs('troubleshooting/')}#prefect-ui-blank)",
        required=False,
    )


def _same_api(ui_api: str, api: str) -> bool:
    """Whether two API URLs name the same server (credentials and localhost spelling aside)."""

    def plain(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2].replace("localhost", "127.0.0.1")
        return urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/")

    return plain(ui_api) == plain(api)


def _docs(page: str) -> str:
    from flows.ui.console import docs_url

    return docs_url(page)


def check_engine() -> Check:
    """Which Dagger engine would run steps, or which part is missing (reported, not required).

    The parts: the container runtime (or a session, or a remote engine), the Dagger CLI and the
    engine image. A missing CLI or image is fetched by the first run when the network allows.
    """
    diagnosis = diagnose_engine()
    found = "; ".join(part.detail for part in diagnosis.parts)
    if not diagnosis.missing:
        return Check("Dagger engine", "PASS", found, required=False)
    missing = [part for part in diagnosis.parts if not part.ok]
    return Check(
        "Dagger engine",
        "WARN",
        f"missing: {', '.join(diagnosis.missing)} ({found}); a run that cannot open an engine"
        " session uses the local runner",
        "; ".join(part.fix for part in missing),
        required=False,
    )


def _smoke_spec() -> StepSpec:
    return StepSpec(
        name="verify-smoke",
        image="python:3.12-slim",
        args=["python", "-c", "import os; print('smoke ok', os.environ['VERIFY_SMOKE'])"],
        env={"VERIFY_SMOKE": "1"},
        timeout_s=120,
    )


def check_runner(backend: Literal["local", "dagger"], settings: Settings | None = None) -> Check:
    """A one-line step through the runner, end to end (its limits and folders from ``settings``)."""
    settings = settings if settings is not None else Settings.model_construct()
    name = f"Smoke step ({backend})"
    if backend == "dagger" and choose_backend("auto").backend != "dagger":
        return Check(name, "SKIP", "no Dagger engine reachable", required=False)
    try:
        if backend == "local":
            runner = LocalRunner(cache_dir=settings.cache_dir)
            result = asyncio.run(runner.run(_smoke_spec()))
        else:
            from adapters.dagger.runner import DaggerRunner

            runner_ = DaggerRunner(provision_timeout_s=settings.dagger_provision_timeout_s)
            result = asyncio.run(runner_.run(_smoke_spec()))
    except AiopError as exc:
        return Check(
            name, "FAIL", f"{type(exc).__name__}: {exc}", _fix_for(exc), backend == "local"
        )
    if result.ok and "smoke ok 1" in result.stdout:
        return Check(
            name, "PASS", f"exit 0 in {result.duration_s:.2f} s", required=backend == "local"
        )
    return Check(
        name,
        "FAIL",
        f"exit {result.exit_code}: {result.stderr.strip()[-200:]}",
        "see the troubleshooting page",
        required=backend == "local",
    )


def _fix_for(exc: AiopError) -> str:
    from flows.ui.console import docs_url

    return f"read {docs_url('troubleshooting/')}#{exc.docs_anchor}"


def check_docs(timeout_s: float = 300.0) -> Check:
    """The documentation site builds (strict), when the docs tools are installed."""
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    if not Path(mkdocs).exists() or not (_ROOT / "mkdocs.yml").exists():
        return Check(
            "Docs build", "SKIP", "mkdocs or mkdocs.yml not found", 'pip install -e ".[dev]"', False
        )
    with tempfile.TemporaryDirectory() as site:
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        done = subprocess.run(
            [mkdocs, "build", "--strict", "--quiet", "--site-dir", site],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
        )
    if done.returncode == 0:
        return Check(
            "Docs build", "PASS", "mkdocs build --strict succeeded; `mkdocs serve` to read"
        )
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return Check(
        "Docs build", "FAIL", last[:200], "run `mkdocs build --strict` and fix what it names"
    )


def run_checks(
    *,
    include_docs: bool = True,
    settings: Settings | None = None,
    api: PrefectApi | None = None,
) -> list[Check]:
    """Every check, in report order, against ``api`` (default: :func:`quiet_prefect_defaults`)."""
    chosen = api if api is not None else quiet_prefect_defaults(settings)
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python,
        check_packages,
        lambda: check_prefect_api(chosen),
        lambda: check_prefect_ui(chosen),
        check_engine,
        lambda: check_runner("local", settings),
        lambda: check_runner("dagger", settings),
    ]
    if include_docs:
        steps.append(check_docs)
    checks: list[Check] = []
    for step in steps:
        found = step()
        checks.extend(found if isinstance(found, list) else [found])
    return checks


def render(checks: Sequence[Check]) -> str:
    """The report as a plain-text table."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
        if c.fix:
            label = "tip" if c.status in ("PASS", "SKIP") else "fix"
            lines.append(f"{'':<{width}}          {label}: {c.fix}")
    return "\n".join(lines)


if __name__ == "__main__":
    print("python -m flows.ops.verify is now `aiop verify`", file=sys.stderr)
    sys.exit(2)
