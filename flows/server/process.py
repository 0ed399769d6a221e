"""The local Prefect server's own process: ``aiop server process`` (started by
:mod:`flows.server.local_server`, never by hand).

One process, three jobs:

* **Prefect's server**, exactly as ``prefect server start --host 127.0.0.1 --port P`` runs it,
  protected by the auth string kept in ``$PREFECT_HOME`` (read from the file here, so it is set
  inside this process only and never appears in ``/proc/<pid>/environ``);
* **the documentation site** beside it, on its own port (``http://127.0.0.1:D/``): built from this
  checkout's ``docs/`` with ``mkdocs build`` into ``$PREFECT_HOME/aiop-docs-site`` when the sources
  changed, and served read-only, so that the docs links the platform prints and stores land on a
  rendered page (adr/0016-default-run-prefect-server.md). A page that does not exist (a link
  stored before a page moved) redirects to the site's search for its name;
* **a watchdog**: every two seconds it reads the home's record; when the record is gone (the home
  was deleted) or names another server, the process stops itself, so that a server is never left
  running where nothing can find it.

Its environment is the one :func:`flows.server.local_server.server_environment` builds: what a Prefect
server needs, nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from adapters.settings import variable_name
from flows.server._state import read_auth, read_state

__all__ = ["DOCS_SITE", "run_server"]

#: The built documentation site, in ``$PREFECT_HOME``.
DOCS_SITE = "aiop-docs-site"
_FINGERPRINT = ".aiop-sources"
_ROOT = Path(__file__).resolve().parents[2]
_WATCH_EVERY_S = 2.0
_SOURCES = ("docs", "adr", "flows", "agents", "adapters")


def _log(message: str) -> None:
    print(f"aiop-local-server: {message}", flush=True)


# -- the watchdog ------------------------------------------------------------------------


def _watch(home: Path, server_id: str) -> None:
    """Stop this process when ``home``'s record is gone or names another server."""
    misses = 0
    while True:
        time.sleep(_WATCH_EVERY_S)
        state = read_state(home)
        if state is not None and state.get("server_id") == server_id:
            misses = 0
            continue
        misses += 1
        if misses < 2:  # read twice before acting: a record is replaced atomically, but be sure
            continue
        why = "is gone" if state is None else "names another server"
        _log(f"the record {home}/aiop-local-server.json {why}: stopping this server")
        os.kill(os.getpid(), signal.SIGTERM)  # Prefect's server shuts down cleanly on SIGTERM
        time.sleep(30)
        os._exit(0)


# -- the documentation site --------------------------------------------------------------


class _Site:
    """Where the built site is, and why there is none yet."""

    def __init__(self, home: Path) -> None:
        self.path = home / DOCS_SITE
        self.problem: str | None = None if (self.path / "index.html").exists() else "building"

    def ready(self) -> bool:
        return (self.path / "index.html").exists()


def _fingerprint() -> str:
    """Names, sizes and modification times of every source the site is built from."""
    digest = hashlib.sha256()
    files = [_ROOT / "mkdocs.yml"]
    for top in _SOURCES:
        files += sorted(p for p in (_ROOT / top).rglob("*") if p.is_file())
    for path in files:
        if "__pycache__" in path.parts:
            continue
        with contextlib.suppress(OSError):
            info = path.stat()
            digest.update(f"{path.relative_to(_ROOT)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _build(site: _Site, server_id: str) -> None:
    """Build the site into a new folder and swap it in; the old site is served meanwhile."""
    if not (_ROOT / "mkdocs.yml").is_file():
        site.problem = (
            f"this installation has no documentation sources ({_ROOT / 'mkdocs.yml'} is missing)"
        )
        return
    fingerprint = _fingerprint()
    with contextlib.suppress(OSError):
        if (site.path / _FINGERPRINT).read_text(encoding="utf-8") == fingerprint:
            site.problem = None
            return
    new = site.path.with_name(f".{DOCS_SITE}.{server_id}")
    shutil.rmtree(new, ignore_errors=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(new)],
            cwd=_ROOT,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        site.problem = f"`mkdocs build` could not run ({exc})"
        _log(site.problem)
        return
    if done.returncode != 0 or not (new / "index.html").exists():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        site.problem = f"`mkdocs build` failed: {last}"
        _log(f"{site.problem}\n{done.stderr[-4000:]}")
        shutil.rmtree(new, ignore_errors=True)
        return
    (new / _FINGERPRINT).write_text(fingerprint, encoding="utf-8")
    old = site.path.with_name(f".{DOCS_SITE}.old.{server_id}")
    if site.path.exists():
        site.path.rename(old)
    new.rename(site.path)
    shutil.rmtree(old, ignore_errors=True)
    site.problem = None
    _log(f"documentation site built in {time.monotonic() - started:.1f} s: {site.path}")


class _DocsHandler(SimpleHTTPRequestHandler):
    """Serves the built site; a missing page redirects to the site's search for its name."""

    site: _Site

    def __init__(self, *args: Any, site: _Site, **kwargs: Any) -> None:
        self.site = site
        super().__init__(*args, directory=str(site.path), **kwargs)

    def do_GET(self) -> None:
        if self._unavailable() or self._moved():
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if self._unavailable() or self._moved():
            return
        super().do_HEAD()

    def _unavailable(self) -> bool:
        if self.site.ready():
            return False
        if self.site.problem in (None, "building"):
            text = (
                "The documentation is being built; this page reloads in a few seconds.",
                '<meta http-equiv="refresh" content="3">',
            )
        else:
            text = (
                "The documentation site could not be built here: "
                + html.escape(self.site.problem or "")
                + ". Read the Markdown pages in the docs/ folder of the project, or set"
                f" {variable_name('docs_url')} to where the documentation is published.",
                "",
            )
        body = (
            f"<!doctype html><html><head><meta charset='utf-8'>{text[1]}"
            "<title>AI Orchestration Platform docs</title></head>"
            f"<body><h1>AI Orchestration Platform</h1><p>{text[0]}</p></body></html>"
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Retry-After", "3")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return True

    def _moved(self) -> bool:
        """A page that does not exist: to the search, with the words of its path."""
        path = urllib.parse.urlsplit(self.path).path
        if Path(self.translate_path(path)).exists():
            return False
        parts = [p for p in path.split("/") if p and p != "index.html"]
        words = parts[-1].removesuffix(".html").replace("-", " ").replace("_", " ") if parts else ""
        self.send_response(302)
        self.send_header("Location", "/?q=" + urllib.parse.quote(words))
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are not worth a line of the server's log."""


def _serve_docs(site: _Site, port: int) -> None:
    try:
        server = ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(_DocsHandler, site=site)
        )
    except OSError as exc:
        _log(f"the documentation site cannot listen on 127.0.0.1:{port} ({exc.strerror})")
        return
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="aiop-docs", daemon=True).start()
    _log(f"documentation at http://127.0.0.1:{port}/")


# -- the process -------------------------------------------------------------------------


def run_server(home: Path, server_id: str, port: int, docs_port: int) -> int:
    """Run the server until it is stopped (SIGTERM) or its record goes (``aiop server process``,
    which :func:`flows.server._start.spawn` starts)."""
    try:
        auth, _ = read_auth(home)
    except (OSError, ValueError) as exc:
        _log(f"no usable auth string in {home}: {exc}")
        return 2
    # Set here, inside this process: the environment it was started with stays free of it.
    os.environ["PREFECT_SERVER_API_AUTH_STRING"] = auth
    os.environ["PREFECT_SERVER_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    threading.Thread(target=_watch, args=(home, server_id), name="aiop-watch", daemon=True).start()
    site = _Site(home)
    _serve_docs(site, docs_port)
    threading.Thread(
        target=_build, args=(site, server_id), name="aiop-docs-build", daemon=True
    ).start()

    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    app()  # Prefect's own `prefect server start`, in the foreground of this process
    return 0


if __name__ == "__main__":
    print("python -m flows.server.process is now `aiop server process`", file=sys.stderr)
    sys.exit(2)
