"""Container paths seen from the host: how the local runner honours a spec's paths.

A :class:`PathMap` knows, for each container path a spec names (mount targets, output sources, cache
targets, the workdir), the host path that stands in for it, and rewrites any argument or environment
value that refers to one of them. A container path is matched only at a path boundary, longest first:

* ``/aiop/out`` and ``/aiop/out/x.csv`` are rewritten; ``/aiop/output`` is not;
* it may stand after ``=`` (``--output=/aiop/out``), inside a ``:``-separated list (``PYTHONPATH``),
  or inside quotes or brackets (``open('/aiop/in/x.csv')`` in a ``python -c`` script).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PathMap"]


@dataclass(frozen=True)
class PathMap:
    """Container path prefix -> host path, applied longest prefix first.

    Examples:
        >>> pm = PathMap({"/aiop/in": "/data/in", "/aiop/out": "/tmp/s/out"})
        >>> pm.rewrite("--output=/aiop/out/x.csv")
        '--output=/tmp/s/out/x.csv'
        >>> pm.rewrite("/aiop/output")
        '/aiop/output'
    """

    prefixes: Mapping[str, str]
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.prefixes:
            ordered = sorted(self.prefixes, key=len, reverse=True)
            alternatives = "|".join(re.escape(p.rstrip("/") or "/") for p in ordered)
            pattern = re.compile(rf"(?:^|(?<=[=:,;\s\"'(\[]))({alternatives})(?=/|$|[:,;\s\"')\]])")
            object.__setattr__(self, "_pattern", pattern)

    def rewrite(self, value: str) -> str:
        """Replace each container path in ``value`` with its host path."""
        if self._pattern is None:
            return value
        return self._pattern.sub(lambda m: self.prefixes[m.group(1)], value)

    def host_path(self, container_path: str) -> str | None:
        """The host path for ``container_path``, or None when it lies under no mapped prefix."""
        rewritten = self.rewrite(container_path)
        return rewritten if rewritten != container_path else None
