"""The settings every benchmark gets: mode, sizes, and where it may write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchContext", "log"]


@dataclass(frozen=True, kw_only=True)
class BenchContext:
    """What a benchmark needs to know about this run.

    Attributes:
        quick: the ``--quick`` mode (fewer samples, smaller inputs).
        base: a scratch folder of this run (deleted at the end unless ``--keep``).
        server_pid: the Prefect server's pid, left out of process-tree memory (None: no server).
        api_url: the server's API URL (None: no server).
        rows: input sizes of the throughput benchmark instead of the mode's (``--rows``).
        data_dir: where the real tables are cached (``--data-dir``; None: the default folder of
            :func:`flows.benchmarks.real_data.cache_dir`).
    """

    quick: bool
    base: Path
    server_pid: int | None = None
    api_url: str | None = None
    rows: tuple[int, ...] | None = None
    data_dir: Path | None = None

    @property
    def samples(self) -> int:
        """Timed calls per kind in the per-call benchmarks (at least 100; 20 when quick)."""
        return 20 if self.quick else 100

    @property
    def warmup(self) -> int:
        """Untimed rounds before the per-call benchmarks."""
        return 2 if self.quick else 5

    @property
    def repeats(self) -> int:
        """Repetitions of the few-second measurements (their median is reported)."""
        return 1 if self.quick else 3

    @property
    def reruns(self) -> int:
        """Cached re-runs (their median is reported: a re-run that meets a busy SQLite server
        waits ~2 s for a retry, so single re-runs vary)."""
        return 3 if self.quick else 5

    @property
    def row_counts(self) -> tuple[int, ...]:
        """Input sizes of the throughput benchmark."""
        if self.rows:
            return self.rows
        return (100_000,) if self.quick else (1_000_000, 10_000_000)

    def throughput_repeats(self, rows: int) -> int:
        """Pipeline and baseline runs at ``rows`` (their medians are compared)."""
        if self.quick:
            return 1
        return 3 if rows <= 1_000_000 else 2

    @property
    def rerun_rows(self) -> int:
        """Input size of the cached re-run benchmark (the largest throughput size)."""
        return max(self.row_counts)

    def folder(self, name: str) -> Path:
        """A fresh sub-folder of :attr:`base`."""
        path = self.base / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def log(message: str) -> None:
    """A progress line on the terminal (flushed: the full run takes minutes)."""
    print(f"  {message}", flush=True)
