"""``python -m flows.benchmarks``: see :mod:`flows.benchmarks.cli`."""

from __future__ import annotations

import sys

from flows.benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
