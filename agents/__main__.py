"""``python -m agents`` is now ``aiop agents`` (:mod:`flows.cli.agents`)."""

import sys

print("python -m agents is now `aiop agents` (see aiop agents --help)", file=sys.stderr)
sys.exit(2)
