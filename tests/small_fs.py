"""A small file system for a command: a fresh tmpfs mounted in a private mount namespace.

``unshare --user --map-root-user --mount`` gives the command (and only it) a mount table of its own,
where a tmpfs of a few MiB is mounted over an empty folder; nothing outside the command sees it,
and it goes away with the command. Where user namespaces are not allowed, the tests that need it
skip with the reason (and fail in CI, ``AIOP_REQUIRE_SERVICES=1``, like a missing service).

Example:
    >>> from tests.small_fs import with_small_fs
    >>> argv = with_small_fs(["df", "-h", "/tmp/x"], Path("/tmp/x"), "2m")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.services import REQUIRE_SERVICES_ENV, services_required

__all__ = ["require_small_fs", "with_small_fs"]


def with_small_fs(argv: Sequence[str], mountpoint: Path, size: str) -> list[str]:
    """``argv`` run with a tmpfs of ``size`` (``"2m"``) mounted at ``mountpoint`` (created)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t tmpfs -o size={shlex.quote(size)} aiop-test {shlex.quote(str(mountpoint))}"
        ' && exec "$@"'
    )
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *argv]


@functools.cache
def _problem() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            with_small_fs(["true"], Path(tmp) / "m", "1m"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    if done.returncode != 0:
        return f"a private mount namespace cannot be made here ({done.stderr.strip()})"
    return None


def require_small_fs() -> None:
    """Skip (or, in CI, fail) the calling test when a small file system cannot be made."""
    problem = _problem()
    if problem is None:
        return
    message = f"needs a small tmpfs in a private mount namespace: {problem}"
    if services_required():
        pytest.fail(f"{message}. {REQUIRE_SERVICES_ENV}=1 makes this a failure.", pytrace=False)
    pytest.skip(f"{message}; set {REQUIRE_SERVICES_ENV}=1 to fail instead of skipping.")
