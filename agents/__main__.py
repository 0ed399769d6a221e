"""``python -m agents``: see :mod:`agents.cli`."""

import sys

from agents.cli import main

sys.exit(main())
