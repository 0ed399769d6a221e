"""``aiop bench [--quick] [--json PATH]``: run every benchmark, print the table.

Order: a Prefect server is started (fresh ``PREFECT_HOME``, analytics off, small task-run recorder
batches) and this process pointed at it; then orchestration share, step overhead, tracing overhead,
concurrency, fast failure, pipeline throughput, the plain-script comparison on real data, cached
re-run and scaling run against it; the server is stopped and the
default-run benchmark (which starts and stops its own local server) runs alone. ``--only`` runs a
subset (the JSON then holds only those keys). ``--api-url`` measures against a running server
instead of starting one; ``--rows`` sets the throughput sizes.
This process gets its own ``PREFECT_HOME`` and local caches in a scratch folder, and no
``AIOP_*`` setting from the caller's environment (no chaos plan, no engine limit, no Redis
breakers): the defaults are measured. Everything is restored and the scratch folder deleted at the
end (``--keep`` keeps it).

Exit status: 0 when every benchmark ran (a missed target is a result, not an error), 1 when one
failed (its error is in the table and the JSON), 2 when the Prefect server did not start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from adapters.settings import Settings, settings_in_environment
from flows.benchmarks._context import BenchContext
from flows.benchmarks._report import Outcome, Row, format_table
from flows.benchmarks._server import prefect_server

__all__ = ["BENCHMARKS", "main"]

#: The benchmark keys, in the order they run (also the keys of the JSON's ``benchmarks``).
BENCHMARKS = (
    "orchestration",
    "step_overhead",
    "tracing",
    "concurrency",
    "fast_failure",
    "throughput",
    "real_data",
    "cached_rerun",
    "scaling",
    "result_copies",
    "cold_start",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiop bench",
        description="Measure the platform's performance claims as ratios within one run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer samples and 100k rows only, no default-run benchmark (about a minute)",
    )
    parser.add_argument(
        "--json", metavar="PATH", type=Path, help="also write every raw number here"
    )
    parser.add_argument(
        "--rows",
        metavar="N[,N]",
        type=_sizes,
        default=None,
        help="input sizes of the throughput benchmark (default: 1000000,10000000; 100000 quick)",
    )
    parser.add_argument(
        "--api-url",
        metavar="URL",
        default=None,
        help="measure against this running Prefect server instead of starting a fresh one",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="where the real tables of the real_data benchmark are cached"
        " (default ~/.cache/aiop/bench-data)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (printed)")
    parser.add_argument("--verbose", action="store_true", help="let Prefect log to the console")
    parser.add_argument(
        "--only",
        metavar="KEYS",
        type=_keys,
        default=BENCHMARKS,
        help=f"run only these benchmarks, comma-separated (of {', '.join(BENCHMARKS)})",
    )
    return parser


def _keys(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in BENCHMARKS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'} is not a benchmark; choose among"
            f" {', '.join(BENCHMARKS)}"
        )
    return keys


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of row counts such as 1000000")
    return sizes


@contextlib.contextmanager
def _server(base: Path, api_url: str | None) -> Iterator[_Server]:
    """The benchmark's own fresh server, or the running one at ``api_url``."""
    if api_url is None:
        with prefect_server(base) as server:
            yield server
        return
    yield _Running(api_url)


class _Server(Protocol):
    @property
    def api_url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def wait_healthy(self) -> float: ...


class _Running:
    """A server someone else runs (``--api-url``): checked, never started or stopped."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.pid: int | None = None

    def wait_healthy(self) -> float:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=10) as answer:
                answer.read()
        except OSError as exc:
            raise RuntimeError(f"no Prefect server answers at {self.api_url} ({exc})") from None
        return time.monotonic() - started


def _isolate(base: Path, verbose: bool) -> dict[str, str | None]:
    """Set this process's Prefect environment for the run; return what it was (for
    :func:`_restore`). The platform's own settings are set by :func:`_platform_settings`."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
    for key in saved:
        del os.environ[key]
    settings = {
        "PREFECT_HOME": str(base / "client-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if not verbose:  # records still go to the server; only the console stays quiet
        settings["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ.update(settings)
    return {**dict.fromkeys(settings), **saved}


def _platform_settings(base: Path) -> Settings:
    """The defaults, with the local runner's cache volumes in the scratch folder."""
    return Settings.model_construct().with_changes(cache_dir=base / "caches")


def _restore(saved: dict[str, str | None]) -> None:
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    os.environ.update({k: v for k, v in saved.items() if v is not None})


def _drain() -> None:
    """Send Prefect's queued logs and events before the server stops (else they error at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=30)
        except Exception as exc:  # best effort: the numbers are already taken
            print(f"  (could not flush Prefect's {worker.__name__}: {exc})", file=sys.stderr)


def _attempt(key: str, fn: Callable[[], Outcome], failures: list[str]) -> Outcome:
    try:
        return fn()
    except Exception as exc:
        failures.append(key)
        message = f"{type(exc).__name__}: {exc}"
        print(f"  {key} failed: {message}", file=sys.stderr, flush=True)
        return Outcome({"error": message, "met": None}, [Row(key, f"ERROR: {message[:120]}")])


def _run_with_server(
    ctx: BenchContext, only: Sequence[str], failures: list[str]
) -> dict[str, Outcome]:
    from flows.benchmarks import (
        cached_rerun,
        concurrency,
        fast_failure,
        orchestration,
        real_data_bench,
        result_copies,
        scaling,
        step_overhead,
        throughput,
        tracing,
    )

    firsts: dict[int, Any] = {}

    def measure_throughput() -> Outcome:
        outcome, found = throughput.measure(ctx)
        firsts.update(found)
        return outcome

    steps: dict[str, Callable[[], Outcome]] = {
        "orchestration": lambda: orchestration.run(ctx),
        "step_overhead": lambda: step_overhead.run(ctx),
        "tracing": lambda: tracing.run(ctx),
        "concurrency": lambda: concurrency.run(ctx),
        "fast_failure": lambda: fast_failure.run(ctx),
        "throughput": measure_throughput,
        "real_data": lambda: real_data_bench.run(ctx),
        "cached_rerun": lambda: cached_rerun.run(ctx, firsts.get(ctx.rerun_rows)),
    }
    results: dict[str, Outcome] = {}
    for key, fn in steps.items():
        if key in only:
            results[key] = _attempt(key, fn, failures)
    if "scaling" in only:
        results["scaling"] = _attempt(
            "scaling",
            lambda: scaling.run(
                ctx,
                results["orchestration"].data if "orchestration" in results else None,
                results["throughput"].data if "throughput" in results else None,
            ),
            failures,
        )
    if "result_copies" in only:
        results["result_copies"] = _attempt(
            "result_copies", lambda: result_copies.run(ctx), failures
        )
    _drain()
    return results


def _meta(args: argparse.Namespace, started: float, server_s: float | None) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["aiop bench", *args.argv]),
        "mode": "quick" if args.quick else "full",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("prefect", "duckdb", "pybreaker")},
        "load_average_at_end": list(os.getloadavg()),
        "server_startup_s": server_s,
        "total_s": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; see the module docstring."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="aiop-bench-"))
    saved = _isolate(base, args.verbose)
    platform_settings = settings_in_environment(_platform_settings(base))
    platform_settings.__enter__()
    failures: list[str] = []
    results: dict[str, Outcome] = {}
    server_s: float | None = None
    mode = "quick" if args.quick else "full"
    print(f"aiop bench ({mode} mode, {os.cpu_count()} cores); scratch: {base}")
    try:
        where = (
            f"using the Prefect server at {args.api_url}"
            if args.api_url
            else "starting a Prefect server"
        )
        print(f"  {where}", flush=True)
        try:
            with _server(base, args.api_url) as server:
                # Set before Prefect is imported; the imports overlap the server's start-up.
                os.environ["PREFECT_API_URL"] = server.api_url
                import flows.benchmarks.cached_rerun
                import flows.benchmarks.concurrency
                import flows.benchmarks.fast_failure
                import flows.benchmarks.orchestration
                import flows.benchmarks.real_data_bench
                import flows.benchmarks.result_copies
                import flows.benchmarks.scaling
                import flows.benchmarks.step_overhead
                import flows.benchmarks.throughput
                import flows.benchmarks.tracing  # noqa: F401

                server_s = server.wait_healthy()
                print(f"  server healthy after {server_s:.1f} s at {server.api_url}", flush=True)
                ctx = BenchContext(
                    quick=args.quick,
                    base=base,
                    server_pid=server.pid,
                    api_url=server.api_url,
                    rows=args.rows,
                    data_dir=args.data_dir,
                )
                results.update(_run_with_server(ctx, args.only, failures))
        except (RuntimeError, TimeoutError) as exc:
            if results:
                raise
            print(f"error: the Prefect server did not start: {exc}", file=sys.stderr)
            return 2
        os.environ.pop("PREFECT_API_URL", None)
        from flows.benchmarks import cold_start

        ctx = BenchContext(quick=args.quick, base=base, rows=args.rows)
        if "cold_start" in args.only and args.quick:
            results["cold_start"] = cold_start.skipped("keeps --quick under a minute")
        elif "cold_start" in args.only:
            results["cold_start"] = _attempt("cold_start", lambda: cold_start.run(ctx), failures)
    finally:
        platform_settings.__exit__(None, None, None)
        _restore(saved)
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    ran = [key for key in BENCHMARKS if key in results]
    rows = [row for key in ran for row in results[key].rows]
    print()
    print(format_table(rows))
    meta = _meta(args, started, server_s)
    print(f"\n{mode} run: {meta['total_s']:.0f} s in total")
    if args.json is not None:
        report = {
            "meta": meta,
            "benchmarks": {key: results[key].as_json() for key in ran},
            "failures": failures,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"raw numbers: {args.json}")
    return 1 if failures else 0
