"""``python -m agents`` is now ``aiop agents`` (:mod:`flows.cli.agents`)."""

import sys

print("python -m agents is now `aiop agents`", file=sys.stderr)
sys.exit(2)
