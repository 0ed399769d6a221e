"""The docs' console blocks show what their commands print today: a rename fails here, not a reader.

A console block whose output the docs promise is marked by an HTML comment on the line before its
fence (invisible on the site), naming what to run::

    <!-- drift: python -m flows.data_pipeline --rows 10000 --output output/first | excerpt -->
    ```text
    Pipeline finished: 10000 rows in, ...
    ```

* ``drift: COMMAND`` runs COMMAND with bash; ``drift: above`` runs the nearest ``bash`` block
  above the marker; ``drift: same`` compares with the output of the previous marker's command
  (one run shown in two blocks).
* ``| excerpt``: the block shows some of the lines, in order; the command may print others
  before, between and after them (a log excerpt, the end of a run). A line ``...`` in the block
  stands for lines left out and is not compared. Without ``excerpt`` the block must be the whole
  output, line for line: an added, removed or renamed line fails.
* ``| cwd=PATH``: run in PATH (relative to the project folder) instead of the project folder.

The pages run in the order of :data:`PAGES`, as a new user would follow them, in one project
folder (``<tmp>/home/aiop``, holding a copy of ``docs/examples``) with an empty home
(``HOME=<tmp>/home``, ``PREFECT_HOME=<tmp>/home/.prefect``) and nothing configured: the first
pipeline run starts the local Prefect server (on a free port), later commands use it, and the
test stops it at the end. Output is stdout and stderr as a terminal shows them.

Before comparing, both sides are masked the same way, so that what varies from run to run does
not count: ``<tmp>/home`` in the output reads ``/home/you`` (the docs' home) and this checkout
reads ``/home/you/aiop`` (the docs' clone, where the step code is mounted from), then UUIDs, hex
keys of 8 digits or more, times of day, Prefect's generated run names (``Flow run 'brave-otter'``,
the first column of a history row), every number, and runs of spaces (column widths follow the
numbers) are replaced by placeholders. Words, names of steps, agents, task runs, files and the
order of lines are compared as they are.

Runs about 2 minutes (three pipeline runs, the agents and word-count examples, a history), hence
``slow``; CI runs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: The pages whose marked blocks are checked, in the order a new user reads them.
PAGES = (
    "tutorial/first-pipeline.md",
    "guides/data-pipeline.md",
    "guides/agents.md",
    "guides/dagger-workflow.md",
    "guides/prefect-ui.md",
)

_MARKER = re.compile(r"^<!-- drift: (?P<what>.+?) -->$")
_FENCE = re.compile(r"^```")
_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One marked console block of a page."""

    page: str
    line: int  # of the marker, 1-based
    command: str | None  # None: the same run as the previous block
    excerpt: bool
    cwd: str
    shown: list[str]

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    """The marked blocks of ``page``, in order."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    for index, text in enumerate(lines):
        marker = _MARKER.match(text.strip())
        if not marker:
            continue
        what, *options = [part.strip() for part in marker["what"].split(" | ")]
        cwd = next((o.split("=", 1)[1] for o in options if o.startswith("cwd=")), ".")
        unknown = [o for o in options if o != "excerpt" and not o.startswith("cwd=")]
        assert not unknown, f"docs/{page}:{index + 1}: unknown drift options {unknown}"
        assert _FENCE.match(lines[index + 1]), f"docs/{page}:{index + 1}: no fence after marker"
        end = next(i for i in range(index + 2, len(lines)) if _FENCE.match(lines[i]))
        command: str | None = what
        if what == "same":
            command = None
        elif what == "above":
            command = _bash_block_above(lines, index, page)
        found.append(
            Block(page, index + 1, command, "excerpt" in options, cwd, lines[index + 2 : end])
        )
    return found


def _bash_block_above(lines: list[str], marker: int, page: str) -> str:
    for close in range(marker - 1, -1, -1):
        if lines[close].strip() == "```":
            opening = max(i for i in range(close) if _FENCE.match(lines[i]) and i < close)
            assert lines[opening].strip().startswith("```bash"), (
                f"docs/{page}:{marker + 1}: the block above is not a bash block"
            )
            return "\n".join(lines[opening + 1 : close])
    raise AssertionError(f"docs/{page}:{marker + 1}: no bash block above the marker")


# -- masking ---------------------------------------------------------------------------------

_MASKS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<id>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<time>"),
    (re.compile(r"(?i)(?<![0-9a-z])(?=[0-9a-f]*\d)[0-9a-f]{8,}\b"), "<hex>"),
    (re.compile(r"(?i)\b(flow run|subflow run) '[a-z]+-[a-z]+'"), r"\1 '<run>'"),
    # a history row's name column
    (
        re.compile(r"^[a-z]+-[a-z]+(?= +(?:Completed|Failed|Crashed|Running|Cancelled|Pending)\b)"),
        "<run>",
    ),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
    (re.compile(r" {2,}"), " "),
)


def mask(line: str) -> str:
    """``line`` with what varies between runs replaced by placeholders."""
    line = line.rstrip()
    for pattern, placeholder in _MASKS:
        line = pattern.sub(placeholder, line)
    return line


def differences(block: Block, printed: list[str]) -> str | None:
    """Why ``printed`` does not match what ``block`` shows (None when it does)."""
    shown = [mask(x) for x in block.shown if x.strip() != "..."]
    got = [mask(x) for x in printed if x.strip()]
    shown = [x for x in shown if x]
    if not block.excerpt:
        if shown == got:
            return None
        first = next(
            (i for i, (a, b) in enumerate(zip(shown, got, strict=False)) if a != b),
            min(len(shown), len(got)),
        )
        return (
            f"line {first + 1} of the block differs:\n  docs: {_at(block.shown, first)}\n"
            f"  now:  {_at(printed, first)}"
        )
    position = 0
    for line in shown:
        try:
            position = got.index(line, position) + 1
        except ValueError:
            return f"the docs show a line the command no longer prints:\n  {line}"
    return None


def _at(lines: list[str], index: int) -> str:
    kept = [x for x in lines if x.strip() and x.strip() != "..."]
    return kept[index] if index < len(kept) else "(nothing)"


# -- running ---------------------------------------------------------------------------------


@dataclass
class Project:
    """An empty home with a project folder, as a new user has after cloning."""

    home: Path
    folder: Path
    env: dict[str, str]

    def run(self, command: str, cwd: str) -> list[str]:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.folder / cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        text = done.stdout.replace(str(ROOT), "/home/you/aiop")  # the clone is the project
        return text.replace(str(self.home), "/home/you").splitlines()


@contextlib.contextmanager
def new_project(base: Path) -> Iterator[Project]:
    """A project folder in an empty home under ``base``; stops the local server it started."""
    home = base / "home"
    folder = home / "aiop"
    shutil.copytree(DOCS / "examples", folder / "docs" / "examples")
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "TZ", "NO_MKDOCS_2_WARNING")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        PREFECT_HOME=str(home / ".prefect"),
        PREFECT_SERVER_API_PORT=str(free_port()),  # not a server someone runs on 4200
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    try:
        yield Project(home, folder, env)
    finally:
        _stop_local_server(home / ".prefect", env)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with new_project(tmp_path) as made:
        yield made


def _stop_local_server(prefect_home: Path, env: dict[str, str]) -> None:
    """Stop the server the first run started, as the docs say (`aiop server stop`: the local
    server writes no ``server.pid``, so Prefect's own `prefect server stop` cannot find it)."""
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "server", "stop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_marked_blocks_are_found() -> None:
    found = {page: blocks(page) for page in PAGES}
    assert all(found.values()), {page: len(b) for page, b in found.items()}
    assert sum(not b.excerpt for bs in found.values() for b in bs) >= 3  # some are whole outputs


@pytest.mark.parametrize(
    ("shown", "printed", "excerpt", "ok"),
    [
        (
            ["Task run 'ingest' - done in 1.2 s"],
            ["Task run 'ingest [ingest-duckdb]' - done"],
            False,
            False,
        ),
        (["a 10 rows", "..."], ["x", "a 12 rows", "y"], True, True),
        (["b", "a"], ["a", "b"], True, False),
        (["a"], ["a", "b"], False, False),
        (
            ["Flow run 'brave-otter' at 09:16:10.325"],
            ["Flow run 'calm-fox' at 11:02:03.001"],
            False,
            True,
        ),
    ],
)
def test_the_comparison(shown: list[str], printed: list[str], excerpt: bool, ok: bool) -> None:
    block = Block("x.md", 1, "true", excerpt, ".", shown)
    assert (differences(block, printed) is None) == ok


def test_the_docs_commands_print_what_the_docs_show(project: Project) -> None:
    problems: list[str] = []
    printed: list[str] = []
    for page in PAGES:
        for block in blocks(page):
            if block.command is not None:
                printed = project.run(block.command, block.cwd)
            why = differences(block, printed)
            if why:
                problems.append(
                    f"{block.where} ({block.command or 'same run'}): {why}\n"
                    "  the command printed:\n" + "\n".join(f"    {x}" for x in printed[-40:])
                )
    assert not problems, "\n\n".join(problems)
