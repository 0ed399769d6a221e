"""Two chained steps: count the words, then a step that reads the count from the first's output.

Run it from this folder: ``python two_steps.py text.txt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flow import count_words_spec
from prefect import flow

from adapters import StepSpec
from flows import quiet_prefect_defaults, run_flow_quietly, run_step


@flow
async def two_steps(text_file: str) -> None:
    counted = await run_step(count_words_spec(Path(text_file), Path("output/count")))
    report = StepSpec(
        name="report",
        image="python:3.12-slim",
        args=["python", "-c", "print(open('/in/count/count.txt').read())"],
        mounts={counted.outputs["/out"]: "/in/count"},
    )
    await run_step(report)


if __name__ == "__main__":
    quiet_prefect_defaults()
    run_flow_quietly(lambda: two_steps(sys.argv[1]))
