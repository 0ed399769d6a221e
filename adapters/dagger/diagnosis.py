"""What a Dagger engine needs on this machine, part by part: runtime, CLI, engine image.

``auto`` decides by opening the run's session (:func:`adapters.selection.engine_for_run`); when
that cannot work, :func:`diagnose_engine` says which part is missing, for ``aiop verify``:

* **runtime**: a container runtime whose ``info`` answers (docker, podman, nerdctl, finch), where
  the CLI starts its engine; or a remote engine (``_EXPERIMENTAL_DAGGER_RUNNER_HOST``), or an
  existing session (``DAGGER_SESSION_PORT``), which need neither of the next two;
* **CLI**: ``_EXPERIMENTAL_DAGGER_CLI_BIN``, or the CLI of the SDK's version in the SDK's cache
  (``$XDG_CACHE_HOME/dagger`` or the platform's cache folder), which the SDK otherwise downloads
  on the first run;
* **engine image**: ``registry.dagger.io/engine:v<version>`` in the runtime's image store (the CLI
  checks with ``image inspect`` and pulls it otherwise; dagger/dagger
  ``engine/client/drivers/docker.go``).

Nothing here imports ``dagger``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from adapters.selection import _HOW_TO_GET_CONTAINERS, _probe_remote, find_runtime, probe_engine

__all__ = ["EngineDiagnosis", "EnginePart", "diagnose_engine"]


@dataclass(frozen=True)
class EnginePart:
    """One thing a Dagger engine needs on this machine.

    Attributes:
        name: ``runtime``, ``CLI``, ``engine image``, ``session`` or ``remote engine``.
        ok: it is there (or can be had without this machine's network, for the CLI).
        detail: what was found, in one sentence.
        fix: what to do when it is missing (empty when ok).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class EngineDiagnosis:
    """Every part checked, in order. ``missing`` names the parts that are not there."""

    parts: tuple[EnginePart, ...]

    @property
    def missing(self) -> list[str]:
        """The names of the parts that are missing."""
        return [part.name for part in self.parts if not part.ok]


#: The engine image the SDK's CLI starts (registry.dagger.io/engine, dagger/dagger engine/consts.go).
_ENGINE_IMAGE_REPO = "registry.dagger.io/engine"


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dagger-io")
    except PackageNotFoundError:
        return "unknown"


def _cli_path(cli_version: str) -> tuple[Path, bool]:
    """Where the SDK finds the CLI, and whether it is the configured one (not the download)."""
    configured = os.environ.get("_EXPERIMENTAL_DAGGER_CLI_BIN", "").strip()
    if configured:
        return Path(configured), True
    import platformdirs

    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache).expanduser() if cache else platformdirs.user_cache_path()
    return base / "dagger" / f"dagger-{cli_version}", False


def diagnose_engine(timeout_s: float = 5.0) -> EngineDiagnosis:
    """Check each part a Dagger engine needs here: runtime, CLI, engine image (or a session).

    Examples:
        >>> from adapters.dagger.diagnosis import diagnose_engine
        >>> diagnosis = diagnose_engine(timeout_s=1.0)
        >>> all(part.name for part in diagnosis.parts)
        True
    """
    port, token = os.environ.get("DAGGER_SESSION_PORT"), os.environ.get("DAGGER_SESSION_TOKEN")
    if port and token:
        probe = probe_engine(timeout_s)
        return EngineDiagnosis(
            (EnginePart("session", probe.reachable, probe.detail, "" if probe.reachable else
                        "start the session again (dagger run ...) or unset DAGGER_SESSION_PORT"),)
        )  # fmt: skip
    parts: list[EnginePart] = []
    remote = os.environ.get("_EXPERIMENTAL_DAGGER_RUNNER_HOST")
    runtime: str | None = None
    if remote:
        probe = _probe_remote(remote, timeout_s)
        parts.append(EnginePart("remote engine", probe.reachable, probe.detail, "" if probe.reachable
                                else "start the remote engine or fix _EXPERIMENTAL_DAGGER_RUNNER_HOST"))  # fmt: skip
    else:
        runtime, reasons = find_runtime(timeout_s)
        if runtime is not None:
            parts.append(EnginePart("runtime", True, f"{Path(runtime).name} is running"))
        else:
            detail = "; ".join(reasons) or "no docker, podman, nerdctl or finch is installed"
            parts.append(EnginePart("runtime", False, detail, _HOW_TO_GET_CONTAINERS))
    cli_version = _sdk_version()
    cli, configured = _cli_path(cli_version)
    if cli.is_file() and os.access(cli, os.X_OK):
        parts.append(EnginePart("CLI", True, f"Dagger CLI at {cli}"))
    elif configured:
        parts.append(EnginePart("CLI", False, f"_EXPERIMENTAL_DAGGER_CLI_BIN={cli} is not an executable file", "fix the path, or unset it to let the SDK download the CLI"))  # fmt: skip
    else:
        parts.append(EnginePart("CLI", False, f"the Dagger CLI v{cli_version} is not in {cli.parent}; the SDK downloads it on the first run (from dl.dagger.io)", "allow the first run to reach dl.dagger.io, or install the CLI and set _EXPERIMENTAL_DAGGER_CLI_BIN"))  # fmt: skip
    if runtime is not None:
        image = f"{_ENGINE_IMAGE_REPO}:v{cli_version}"
        ok, why = _image_present(runtime, image, timeout_s)
        fix = "" if ok else f"pull it once where the registry is reachable ({Path(runtime).name} pull {image}), or allow the first run to reach registry.dagger.io"  # fmt: skip
        parts.append(EnginePart("engine image", ok, why, fix))
    return EngineDiagnosis(tuple(parts))


def _image_present(runtime: str, image: str, timeout_s: float) -> tuple[bool, str]:
    """Whether ``image`` is in the runtime's image store (``image inspect``, as the CLI checks)."""
    try:
        done = subprocess.run(
            [runtime, "image", "inspect", image, "--format", "{{.ID}}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (subprocess.TimeoutExpired, OSError) as exc:
        return False, f"could not ask {Path(runtime).name} for {image} ({exc})"
    if done.returncode == 0:
        return True, f"engine image {image} is present"
    return False, f"engine image {image} is not present; the first run pulls it"
