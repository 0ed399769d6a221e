"""The local runner's log lines name the user's own paths, not its scratch folders."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters import StepSpec
from adapters.local_runner import LocalRunner
from adapters.runner import Stream


def test_log_lines_name_the_host_output_and_the_mounts(tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    source.write_text("a\n1\n", encoding="utf-8")
    out = tmp_path / "result"
    script = (
        "import sys, pathlib; out = pathlib.Path(sys.argv[2]); out.mkdir(exist_ok=True);"
        " (out / 'x.txt').write_text('x'); print('read', sys.argv[1]); print('wrote into', out)"
    )
    spec = StepSpec(
        name="report",
        image="python:3.12-slim",
        args=["python", "-c", script, "/aiop/in/data.csv", "/aiop/out"],
        mounts={str(source): "/aiop/in/data.csv"},
        outputs={"/aiop/out": str(out)},
    )
    lines: list[tuple[Stream, str]] = []
    result = asyncio.run(LocalRunner().run(spec, on_line=lambda s, t: lines.append((s, t))))
    assert result.ok, result.stderr
    text = "\n".join(t for _, t in lines)
    assert f"wrote into {out}" in text, text
    assert "aiop-report-" not in text, text  # the scratch folder never shows
    assert f"read {source}" in text, text
    engine = [t for s, t in lines if s == "engine"]
    assert engine == [f"local paths: /aiop/in/data.csv = {source}, /aiop/out = {out}"], engine
    assert (out / "x.txt").read_text(encoding="utf-8") == "x"
