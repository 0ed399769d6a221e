"""Measuring helpers: medians, and the peak resident memory of a process tree.

Peak memory is sampled from ``/proc`` (Linux): every ``interval_s`` the resident set sizes of the
root process and all its descendants are summed, leaving out the trees of the processes named in
``exclude`` (the Prefect server, a child of the benchmark process, is not part of a pipeline run).
Sampling can miss a spike shorter than the interval; for a single child process
``os.wait4``'s ``ru_maxrss`` is exact, and :mod:`flows.benchmarks.throughput` reports it too.
"""

from __future__ import annotations

import os
import statistics
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["PeakTreeMemory", "median_ms", "tree_rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def median_ms(seconds: Sequence[float]) -> float:
    """The median of ``seconds``, in milliseconds (0.0 for no samples)."""
    return statistics.median(seconds) * 1000.0 if seconds else 0.0


def _children(pid: int) -> list[int]:
    """The child pids of ``pid`` (from every thread's ``children`` file; [] once it exited)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def _rss(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * _PAGE


def tree_rss_bytes(root: int, exclude: Iterable[int] = ()) -> int:
    """Resident bytes of ``root`` and its descendants, without the subtrees in ``exclude``."""
    skip = set(exclude)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        total += _rss(pid)
        todo.extend(_children(pid))
    return total


class PeakTreeMemory:
    """``with PeakTreeMemory(pid) as peak: ...`` then ``peak.bytes``: the sampled peak.

    Args:
        root: the process whose tree is measured (default: this process).
        exclude: pids whose subtrees are left out.
        interval_s: sampling period.

    Example:
        >>> with PeakTreeMemory() as peak:
        ...     data = bytearray(50_000_000)
        >>> peak.bytes > 50_000_000
        True
    """

    def __init__(
        self, root: int | None = None, *, exclude: Iterable[int] = (), interval_s: float = 0.1
    ) -> None:
        self.root = os.getpid() if root is None else root
        self.exclude = tuple(exclude)
        self.interval_s = interval_s
        self.bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        self.bytes = max(self.bytes, tree_rss_bytes(self.root, self.exclude))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakTreeMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
