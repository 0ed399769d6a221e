"""``python -m flows.data_pipeline``: the main job, the same command as ``aiop run``
(:mod:`flows.cli.run`)."""

import sys

from flows.cli.run import main

sys.exit(main())
