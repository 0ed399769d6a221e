"""The two DuckDB names the step programs use, ``connect`` and ``Error``, without the start-up cost
of DuckDB's Python layer.

The ``duckdb`` package re-exports its C++ extension, the top-level module ``_duckdb`` (the package's
own docstring says so: ``duckdb.connect is _duckdb.connect``), and adds a Python layer: the relation
API and the version read from the package's metadata. Importing that layer was most of a step's
start: 86 ms against 13 ms for the extension alone (``python -X importtime``, duckdb 2.0.1, on this
project's 2-core machine), paid by ``validate``, ``transform``, ``aggregate`` and a generating
``ingest`` in every run. The steps only run SQL and fetch rows, the extension's own API, so they
take the two names from it; a DuckDB release without that module gives them from the package.
Both come from the one distribution the agents declare (``requirements: [duckdb]``).

Imported where a step's work starts, never at module level: the command line checks its input
without loading DuckDB.
"""

from __future__ import annotations

try:
    from _duckdb import Error, connect
except ImportError:  # a DuckDB release whose extension is not a top-level module
    from duckdb import Error, connect

__all__ = ["Error", "connect"]
