"""``python -m flows.cli``: the ``aiop`` command without its console script."""

import sys

from flows.cli import main

sys.exit(main())
