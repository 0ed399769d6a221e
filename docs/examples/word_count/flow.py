"""A one-step workflow: count the words of a text file in a container.

Run it from this folder: ``python flow.py text.txt`` (add ``AIOP_BACKEND=local`` to skip Dagger).
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from adapters import StepSpec
from flows import quiet_prefect_defaults, run_flow_quietly, run_step

HERE = Path(__file__).resolve().parent


def count_words_spec(text_file: Path, output_dir: Path) -> StepSpec:
    """The step: the code and the input mounted read-only, the result folder exported."""
    return StepSpec(
        name="count-words",
        image="python:3.12-slim",
        args=["python", "/src/count_words.py", "/in/text.txt", "/out"],
        mounts={
            str(HERE / "count_words.py"): "/src/count_words.py",  # (1)!
            str(text_file.resolve()): "/in/text.txt",
        },
        outputs={"/out": str(output_dir.resolve())},  # (2)!
        timeout_s=120,  # (3)!
    )


@flow(name="word-count")
async def word_count(text_file: str, output_dir: str = "output/word-count") -> int:
    """Count the words of ``text_file``; the count is also written to ``<output_dir>/count.txt``."""
    spec = count_words_spec(Path(text_file), Path(output_dir))
    result = await run_step(spec)  # (4)!
    print(result.stdout.strip(), f"(backend: {result.backend})")
    return int((Path(output_dir) / "count.txt").read_text(encoding="utf-8"))


if __name__ == "__main__":
    # The CLI's set-up: no telemetry racing the embedded server's first start, no shutdown noise.
    quiet_prefect_defaults()
    print(run_flow_quietly(lambda: word_count(sys.argv[1])))
