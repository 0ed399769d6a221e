"""The step programs' side of the step environment: the ``AIOP_STEP_*`` and ``AIOP_DUCKDB_THREADS``
variables a step process is started with, read once by ``python -m flows.steps``.

The step programs run inside containers whose image has only Python's standard library (DuckDB is
installed on first use), so they cannot load :class:`adapters.settings.Settings` (pydantic). This
module is therefore the one other place allowed to name ``AIOP_*`` variables: it holds the names,
:func:`read` reads them once at the step program's entry, and the flow that starts a step builds
its environment with :func:`environment` (``tests/test_settings_access.py`` allows exactly these
two modules).

Examples:
    >>> environment(requirements=["duckdb==1.1.0"])
    {'AIOP_STEP_REQUIREMENTS': 'duckdb==1.1.0'}
    >>> read({"AIOP_DUCKDB_THREADS": "2"}).duckdb_threads
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["DEPS_DIR", "DUCKDB_THREADS", "REQUIREMENTS", "StepEnvironment", "environment", "read"]

#: Where a step installs its Python dependencies (a cache volume, e.g. ``/aiop/deps``).
DEPS_DIR = "AIOP_STEP_DEPS_DIR"
#: What it installs there, space-separated (default ``duckdb``).
REQUIREMENTS = "AIOP_STEP_REQUIREMENTS"
#: DuckDB's threads in the step (default: all cores); ``--threads`` overrides it.
DUCKDB_THREADS = "AIOP_DUCKDB_THREADS"


class StepEnvironmentError(ValueError):
    """A step environment variable has a value the step cannot use."""


@dataclass(frozen=True)
class StepEnvironment:
    """What a step process was told through its environment."""

    deps_dir: str | None
    requirements: tuple[str, ...]
    duckdb_threads: int | None


def read(environ: Mapping[str, str]) -> StepEnvironment:
    """The step environment in ``environ`` (the step program passes ``os.environ``).

    Raises:
        StepEnvironmentError: ``AIOP_DUCKDB_THREADS`` is not a whole number >= 1.
    """
    threads = environ.get(DUCKDB_THREADS, "").strip()
    if threads and (not threads.isdigit() or int(threads) < 1):
        raise StepEnvironmentError(f"{DUCKDB_THREADS} must be a whole number >= 1, got {threads!r}")
    return StepEnvironment(
        deps_dir=environ.get(DEPS_DIR) or None,
        requirements=tuple(environ.get(REQUIREMENTS, "duckdb").split()) or ("duckdb",),
        duckdb_threads=int(threads) if threads else None,
    )


def environment(
    *,
    requirements: Sequence[str] = (),
    deps_dir: str | None = None,
    duckdb_threads: int | None = None,
) -> dict[str, str]:
    """The environment variables that tell a step process these values (unset ones left out)."""
    env: dict[str, str] = {}
    if requirements:
        env[REQUIREMENTS] = " ".join(requirements)
    if deps_dir:
        env[DEPS_DIR] = deps_dir
    if duckdb_threads is not None:
        env[DUCKDB_THREADS] = str(duckdb_threads)
    return env
