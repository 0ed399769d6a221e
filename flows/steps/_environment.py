"""The step programs' side of the step environment: the ``AIOP_DUCKDB_THREADS`` variable a step
process is started with (an agent's ``env:`` sets it), read once by ``python -m flows.steps``.

The step programs run inside containers whose image has only Python's standard library and the
agent's declared requirements (DuckDB), so they cannot load :class:`adapters.settings.Settings`
(pydantic). This module is therefore the one other place allowed to name ``AIOP_*`` variables: it
holds the name and :func:`read` reads it once at the step program's entry
(``tests/test_settings_access.py`` allows exactly these two modules).

Examples:
    >>> read({"AIOP_DUCKDB_THREADS": "2"}).duckdb_threads
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DUCKDB_THREADS", "StepEnvironment", "read"]

#: DuckDB's threads in the step (default: all cores); ``--threads`` overrides it.
DUCKDB_THREADS = "AIOP_DUCKDB_THREADS"


class StepEnvironmentError(ValueError):
    """A step environment variable has a value the step cannot use."""


@dataclass(frozen=True)
class StepEnvironment:
    """What a step process was told through its environment."""

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
        duckdb_threads=int(threads) if threads else None,
    )
