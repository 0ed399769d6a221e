"""The platform's performance claims, measured: ``aiop bench [--quick] [--json PATH]``.

Each claim is a ratio measured within one run on the same machine (a shared 2-core machine is
noisy; ratios of interleaved or back-to-back runs hold up where absolute numbers do not):

1. :mod:`~flows.benchmarks.orchestration`: the 5,000-row pipeline through the agent manager, its
   wall time against its steps' own run times, and how long a step waits to start;
2. :mod:`~flows.benchmarks.step_overhead`: what ``run_step`` adds to a trivial command;
3. :mod:`~flows.benchmarks.concurrency`: 8 concurrent 0.5 s steps through one breaker against 1;
4. :mod:`~flows.benchmarks.fast_failure`: time to open the breaker when the engine dies, and per
   rejected call and step;
5. :mod:`~flows.benchmarks.throughput`: the data pipeline against a single-process DuckDB script
   (:mod:`~flows.benchmarks.duckdb_baseline`) on 1M and 10M rows, with peak memory;
6. :mod:`~flows.benchmarks.cached_rerun`: an unchanged re-run against the first run;
7. :mod:`~flows.benchmarks.cold_start`: the default run with nothing configured: a first
   ``python -m flows.data_pipeline`` on a fresh machine, and repeat runs against runs with
   ``PREFECT_API_URL`` set;
8. :mod:`~flows.benchmarks.scaling`: per-step overhead and throughput against rows and against
   fan-out (no target);
9. :mod:`~flows.benchmarks.result_copies`: what giving each result a copy of its own costs
   against the hard links it replaced, at 10M rows (no target).

Why here and not in a top-level ``benchmarks/`` package: the repository's top-level layout is fixed
(``flows/``, ``adapters/``, ``agents/``, ``tests/``, ``docs/``, ``adr/``); the benchmarks drive
flows, so they live with them, and ``aiop bench`` is the command. Nothing in this
package is imported by the platform itself; timing assertions never go into the test suite.

Example:
    $ aiop bench --quick --json bench.json
    $ aiop bench --only orchestration,fast_failure
"""

from __future__ import annotations

from flows.benchmarks.cli import BENCHMARKS, main

__all__ = ["BENCHMARKS", "main"]
