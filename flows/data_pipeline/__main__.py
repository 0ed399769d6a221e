"""``python -m flows.data_pipeline``: the main job's command line (:mod:`flows.data_pipeline.cli`)."""

import sys

from flows.data_pipeline.cli import main

sys.exit(main())
