"""``python -m flows.benchmarks`` is now ``aiop bench`` (:mod:`flows.cli.bench`)."""

import sys

print("python -m flows.benchmarks is now `aiop bench`", file=sys.stderr)
sys.exit(2)
