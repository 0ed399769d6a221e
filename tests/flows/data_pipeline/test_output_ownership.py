"""Output ownership through the real entry points: the platform replaces or deletes only what it wrote.

Each case of the reported defects runs through the CLI as a subprocess, the flow called from Python,
``aiop agents run`` or ``run_step``. A user's folder is hashed (names, types and every byte)
before and after, so "nothing changed" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters import InvalidInputError, InvalidSpecError, StepSpec
from tests.small_fs import require_small_fs, with_small_fs

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SMALL = ("--rows", "200", "--partitions", "1", "--backend", "local")


def tree_hash(root: Path) -> dict[str, str]:
    """Every entry under ``root``: its type and, for files and links, a hash of its bytes/target."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = f"link:{path.readlink()}"
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def user_folder(path: Path) -> Path:
    """A user's project that happens to hold a file named ``summary.json``."""
    (path / ".git").mkdir(parents=True)
    (path / ".git" / "config").write_text("[core]\n\tbare = false\n")
    (path / "src").mkdir()
    (path / "src" / "main.py").write_text("print('my work')\n")
    (path / "summary.json").write_text('{"mine": true}\n')
    return path


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_paragraph(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def step_outputs(work: Path) -> list[Path]:
    return sorted(work.glob("*-*")) if work.exists() else []


def refused_by_the_cli(project: Path, tmp_path: Path) -> str:
    done = run_cli(*SMALL, "--output", str(project), "--work-dir", "w", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert step_outputs(tmp_path / "w") == []  # refused before any step ran
    return one_paragraph(done)


def refused_by_the_flow(project: Path, tmp_path: Path) -> str:
    """The flow's parameters: the Python API, deployments and UI runs all come through here."""
    from flows.data_pipeline.flow import data_pipeline

    state = asyncio.run(
        data_pipeline(  # type: ignore[call-overload]
            rows=200,
            partitions=1,
            backend="local",
            output=str(project),
            work_dir=str(tmp_path / "w"),
            return_state=True,
        )
    )
    assert state.is_failed()
    error = state.data if isinstance(state.data, BaseException) else state.result(False)
    assert isinstance(error, InvalidInputError), error
    assert step_outputs(tmp_path / "w") == []
    return str(error)


def refused_by_agents_run(project: Path, tmp_path: Path) -> str:
    csv = tmp_path / "in.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    done = subprocess.run(
        [
            sys.executable, "-m", "flows.cli", "agents", "run", "validate-duckdb",
            "--param", "input=/aiop/in/in.csv", "--param", "output=/aiop/out",
            "--mount", f"{csv}=/aiop/in/in.csv", "--output", f"/aiop/out={project}",
            "--backend", "local",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    return one_paragraph(done)


def refused_by_run_step(project: Path, tmp_path: Path) -> str:
    from prefect import flow

    from flows import run_step

    marker = tmp_path / "ran"
    spec = StepSpec(
        name="writes-out",
        image="python:3.12-slim",
        args=[
            "python",
            "-c",
            "import os, pathlib, sys; pathlib.Path(sys.argv[1]).touch();"
            " os.makedirs('/aiop/out'); open('/aiop/out/x.txt', 'w').write('x')",
            str(marker),
        ],
        outputs={"/aiop/out": str(project)},
    )

    @flow
    async def one_step() -> BaseException | None:
        try:
            await run_step(spec, backend="local")
        except Exception as exc:  # the error itself is what the test looks at
            return exc
        return None

    error = asyncio.run(one_step())
    assert isinstance(error, InvalidSpecError), error
    assert not marker.exists()  # refused before the step's process started
    return str(error)


@pytest.mark.parametrize("name", ["summary.json", ".aiop-manifest.json"])
def test_no_entry_point_changes_a_byte_of_a_folder_the_platform_did_not_write(
    prefect_api_url: str, tmp_path: Path, name: str
) -> None:
    """A user's project (with a ``summary.json``, or a look-alike manifest) through every entry point."""
    project = user_folder(tmp_path / "project")
    (project / name).write_text('{"files": {}}\n')
    before = tree_hash(project)
    for entry_point in (
        refused_by_the_cli,
        refused_by_the_flow,
        refused_by_agents_run,
        refused_by_run_step,
    ):
        message = entry_point(project, tmp_path)
        assert str(project) in message and "did not write" in message, entry_point.__name__
        assert tree_hash(project) == before, entry_point.__name__


@pytest.fixture(scope="module")
def previous_result(prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A result folder written by one run (the tests using it only read it)."""
    base = tmp_path_factory.mktemp("previous")
    done = run_cli(*SMALL, "--output", str(base / "R"), "--work-dir", "w", cwd=base)
    assert done.returncode == 0, done.stderr
    return base / "R"


class TestResultFolders:
    def test_user_files_in_a_result_folder_survive_a_changed_input_rerun(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        out = tmp_path / "R"
        first = run_cli(
            "--rows", "200", "--partitions", "2", "--backend", "local",
            "--output", str(out), "--work-dir", "w", cwd=tmp_path,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert len(list((out / "data").glob("*.parquet"))) == 2
        (out / "notes.txt").write_text("my notes\n")
        (out / "data" / "README.md").write_text("what the parts are\n")
        (out / "mine").mkdir()
        (out / "mine" / "plot.py").write_text("plot()\n")
        added = {k: v for k, v in tree_hash(out).items() if k.startswith(("notes", "mine"))}
        second = run_cli(
            "--rows", "300", "--partitions", "1", "--backend", "local",
            "--output", str(out), "--work-dir", "w", cwd=tmp_path,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        after = tree_hash(out)
        assert {k: v for k, v in after.items() if k.startswith(("notes", "mine"))} == added
        assert (out / "data" / "README.md").read_text() == "what the parts are\n"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["input_rows"] == 300
        # the first run's second part is the platform's: gone, since this run wrote one part
        assert len(list((out / "data").glob("*.parquet"))) == 1

    def test_going_back_to_earlier_inputs_rewrites_the_result(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        """Inputs A, then B, then A again into one folder: the third run holds A's result."""
        out = tmp_path / "R"
        runs = {}
        for rows in ("200", "300", "200"):
            done = run_cli(
                "--rows", rows, "--partitions", "1", "--backend", "local",
                "--output", str(out), "--work-dir", "w", cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            runs.setdefault(rows, []).append(tree_hash(out / "data"))
            assert json.loads((out / "summary.json").read_text())["input_rows"] == int(rows)
        assert runs["200"][0] == runs["200"][1] != runs["300"][0]

    def test_input_inside_a_previous_result_folder_survives(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        out = tmp_path / "R"
        assert (
            run_cli(*SMALL, "--output", str(out), "--work-dir", "w", cwd=tmp_path).returncode == 0
        )
        data = out / "mydata.csv"
        data.write_text("id,grp,v\n" + "".join(f"{i},{'ab'[i % 2]},{i}\n" for i in range(50)))
        for _ in range(2):  # the second run used to fail: "no such file"
            done = run_cli(
                "--input", str(data), "--group-by", "grp", "--partitions", "1",
                "--backend", "local", "--output", str(out), "--work-dir", "w", cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert data.is_file()
        assert json.loads((out / "summary.json").read_text())["input_rows"] == 50

    def test_input_that_the_run_would_replace_is_refused(
        self, previous_result: Path, tmp_path: Path
    ) -> None:
        before = tree_hash(previous_result)
        done = run_cli(
            "--input", str(previous_result / "quarantine.csv"), "--partitions", "1",
            "--backend", "local", "--output", str(previous_result), "--work-dir", "w2",
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        message = one_paragraph(done)
        assert "--input" in message and "quarantine.csv" in message
        assert tree_hash(previous_result) == before
        assert step_outputs(tmp_path / "w2") == []

    def test_schema_that_the_run_would_replace_is_refused_by_the_flow(
        self, previous_result: Path, tmp_path: Path
    ) -> None:
        from flows.data_pipeline.flow import data_pipeline

        before = tree_hash(previous_result)
        state = asyncio.run(
            data_pipeline(  # type: ignore[call-overload]
                rows=200,
                partitions=1,
                backend="local",
                schema_file=str(previous_result / "summary.json"),
                output=str(previous_result),
                work_dir=str(tmp_path / "w2"),
                return_state=True,
            )
        )
        error = state.data if isinstance(state.data, BaseException) else state.result(False)
        assert isinstance(error, InvalidInputError) and "--schema" in str(error), error
        assert tree_hash(previous_result) == before
        assert step_outputs(tmp_path / "w2") == []

    def test_a_work_dir_inside_the_output_is_refused_by_the_flow(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        """Issue 21, item 11: step folders would fill the result (the CLI refuses it too)."""
        from flows.data_pipeline.flow import data_pipeline

        out = tmp_path / "R"
        state = asyncio.run(
            data_pipeline(  # type: ignore[call-overload]
                rows=200, partitions=1, backend="local", output=str(out),
                work_dir=str(out / "work"), return_state=True,
            )
        )  # fmt: skip
        error = state.data if isinstance(state.data, BaseException) else state.result(False)
        assert isinstance(error, InvalidInputError) and "inside the output folder" in str(error)
        assert not (out / "work").exists()


class TestOneRunAtATime:
    """Issue 21, item 13: a second run into a folder another run is writing is refused in one
    line, before its flow run is created; a lock left by a killed run is no obstacle."""

    def test_a_second_run_into_the_same_output_is_refused(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        args = [sys.executable, "-m", "flows.data_pipeline", "--rows", "300000",
                "--partitions", "1", "--backend", "local", "--output", "R", "--work-dir", "w"]  # fmt: skip
        with (tmp_path / "first.log").open("w") as log:
            first = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not (tmp_path / "R" / ".aiop-lock").exists() and first.poll() is None:
                assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()
                time.sleep(0.02)
            second = run_cli(*SMALL, "--output", "R", "--work-dir", "w2", cwd=tmp_path)
            assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()
        finally:
            if first.poll() is None:
                first.kill()
        assert second.returncode == 2, second.stdout + second.stderr
        line = one_paragraph(second)
        assert f"--output R is in use by another run (pid {first.pid} " in line
        assert second.stdout == "" and step_outputs(tmp_path / "w2") == []  # no flow run, no step
        assert json.loads((tmp_path / "R" / "summary.json").read_text())["input_rows"] == 300000
        assert not (tmp_path / "R" / ".aiop-lock").exists()

    def test_a_lock_file_left_by_a_killed_run_is_no_obstacle(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        from adapters.ownership import claim

        claim(tmp_path / "R")
        (tmp_path / "R" / ".aiop-lock").write_text('{"pid": 999999, "host": "x", "since": 0}\n')
        done = run_cli(*SMALL, "--output", "R", "--work-dir", "w", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / "R" / ".aiop-lock").exists()


def test_a_foreign_file_at_a_file_outputs_path_is_not_a_cached_result(
    prefect_api_url: str, tmp_path: Path
) -> None:
    """Issue 21, item 2: an identical later run is not Cached because a file of someone else's
    stands where the platform once wrote its output; it is refused, and the file kept."""
    from prefect import flow

    from flows.runtime.step_task import StepOutcome, execute_step

    dest = tmp_path / "res" / "x.txt"
    spec = StepSpec(
        name="file-out",
        image="python:3.12-slim",
        args=["python", "-c", f"open('/aiop/res/x.txt', 'w').write({str(tmp_path)!r})"],
        outputs={"/aiop/res/x.txt": str(dest)},
    )

    @flow
    async def once() -> StepOutcome:
        return await execute_step(spec, "local")

    assert asyncio.run(once()).state == "Completed"
    assert asyncio.run(once()).state == "Cached"  # still the platform's file: reused
    dest.unlink()
    dest.write_text("someone else's")
    third = asyncio.run(once())
    assert third.state != "Cached" and isinstance(third.error, InvalidSpecError), third
    assert "is a file the platform did not write" in str(third.error)
    assert dest.read_text() == "someone else's"


class TestNoSharedStorage:
    """Issue 21, item 3: a result a user receives is theirs alone."""

    def test_an_edit_of_one_result_reaches_no_other_result_nor_the_cache(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        for out in ("out3", "out4"):
            done = run_cli(*SMALL, "--output", out, "--work-dir", "w", cwd=tmp_path)
            assert done.returncode == 0, done.stderr
        original = (tmp_path / "out4" / "aggregates.csv").read_bytes()
        cached = [p.read_bytes() for p in (tmp_path / "w").glob("aggregate-*/aggregates.csv")]
        with (tmp_path / "out3" / "aggregates.csv").open("a") as fh:
            fh.write("TOTAL\n")
        assert (tmp_path / "out4" / "aggregates.csv").read_bytes() == original
        assert [
            p.read_bytes() for p in (tmp_path / "w").glob("aggregate-*/aggregates.csv")
        ] == cached
        for out in ("out5", "out4"):  # a new folder, and the untouched one again
            done = run_cli(*SMALL, "--output", out, "--work-dir", "w", cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            assert (tmp_path / out / "aggregates.csv").read_bytes() == original
        assert (tmp_path / "out3" / "aggregates.csv").read_bytes() == original + b"TOTAL\n"

    def test_a_changed_cache_entry_is_recomputed_with_one_line(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        assert run_cli(*SMALL, "--output", "R1", "--work-dir", "w", cwd=tmp_path).returncode == 0
        [entry] = (tmp_path / "w").glob("aggregate-*")
        with (entry / "aggregates.csv").open("a") as fh:
            fh.write("TOTAL\n")
        done = run_cli(*SMALL, "--output", "R2", "--work-dir", "w", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        said = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if "changed after the platform wrote it" in line
        ]
        assert len(said) == 1 and f"cache entry {entry}" in said[0], said
        assert "aggregates.csv" in said[0] and "recomputed" in said[0]
        [aside] = (tmp_path / "w").glob(f"{entry.name}.changed-*")
        assert (aside / "aggregates.csv").read_bytes().endswith(b"TOTAL\n")  # kept, not deleted
        assert (tmp_path / "R2" / "aggregates.csv").read_bytes() == (
            tmp_path / "R1" / "aggregates.csv"
        ).read_bytes()
        states = {
            s["name"]: s["state"]
            for s in json.loads((tmp_path / "R2" / "summary.json").read_text())["steps"]
        }
        assert states["aggregate"] == "Completed" and states["validate"] == "Cached", states


class TestFullFileSystems:
    """Issue 21, item 7: a full output, work or temporary folder ends the run with one line that
    names the file system; exit 1 (the run failed), no traceback, no raw error list, no
    permissions advice."""

    @pytest.mark.parametrize("full", ["output", "work", "temp"])
    def test_one_line_names_the_full_file_system(
        self, prefect_api_url: str, tmp_path: Path, full: str
    ) -> None:
        require_small_fs()
        small = tmp_path / "small"
        out = small / "R" if full == "output" else tmp_path / "R"
        work = small / "w" if full == "work" else tmp_path / "w"
        env = {**os.environ, "TMPDIR": str(small if full == "temp" else tmp_path)}
        argv = [sys.executable, "-m", "flows.data_pipeline", "--rows", "100000",
                "--partitions", "1", "--backend", "local", "--output", str(out),
                "--work-dir", str(work)]  # fmt: skip
        done = subprocess.run(
            with_small_fs(argv, small, "1m"), cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "shutil.Error" not in done.stderr
        assert "permission" not in done.stderr.lower()
        error = done.stderr[done.stderr.index("\nerror: ") + 1 :]  # the command's own paragraph
        assert error.count(f"no space left on {small}") == 1, error
        if full == "temp":  # the step's own write: its one line, exit 74
            assert "exited with code 74" in error
        else:  # the runner's export: what was needed and what is free
            assert " needed, " in error and " free." in error
            assert str(out if full == "output" else work) in error
        assert error.rstrip().endswith("#storage-limit") or "#step-failed" in error


class TestUnwritableOutput:
    @pytest.mark.parametrize("where", ["under-a-file", "read-only-parent"])
    def test_is_found_before_any_step_runs(
        self, prefect_api_url: str, tmp_path: Path, where: str
    ) -> None:
        if where == "under-a-file":
            (tmp_path / "afile").write_text("x")
            out = tmp_path / "afile" / "out"
        elif os.geteuid() != 0:
            parent = tmp_path / "ro"
            parent.mkdir(mode=0o555)
            out = parent / "out"
        else:  # root writes through permission bits; /sys refuses new folders even to root
            out = Path("/sys") / f"aiop-test-{os.getpid()}"
        done = run_cli(*SMALL, "--output", str(out), "--work-dir", "w", cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        message = one_paragraph(done)
        assert str(out) in message and "cannot" in message
        assert step_outputs(tmp_path / "w") == []


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


SLEEPER = {
    "name": "sleeper",
    "description": "Writes a file, then sleeps.",
    "capabilities": ["sleep"],
    "image": "python:3.12-slim",
    "parameters": {"seconds": {"description": "how long to sleep"}},
    "command": [
        "python",
        "-c",
        "import os, sys, time; os.makedirs('/aiop/out', exist_ok=True);"
        " open('/aiop/out/x.txt', 'w').write('x'); time.sleep(float(sys.argv[1]))",
        "{seconds}",
    ],
    "retry": {"attempts": 1},
}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigkill_of_the_cli_leaves_no_step_running_and_the_next_run_cleans_staging(
    prefect_api_url: str, tmp_path: Path
) -> None:
    from tests.agents.conftest import write_definition

    write_definition(tmp_path / "agents", SLEEPER)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "AIOP_AGENTS_PATH": str(tmp_path / "agents")}

    def agents_run(seconds: str) -> list[str]:
        return [
            sys.executable, "-m", "flows.cli", "agents", "run", "sleeper", "--param", f"seconds={seconds}",
            "--output", f"/aiop/out={tmp_path / 'out'}", "--backend", "local",
        ]  # fmt: skip

    with (tmp_path / "cli.log").open("wb") as log:
        cli = subprocess.Popen(
            agents_run("120"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    steps: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not steps and time.monotonic() < deadline and cli.poll() is None:
            steps = [p for p in _children(cli.pid) if "time.sleep" in _cmdline(p)]
            time.sleep(0.05)
        assert steps, (tmp_path / "cli.log").read_text()
        # The step is registered with the watcher a few event-loop turns after it starts
        # (adapters/_reaper.py says so): kill the leader once the step is well under way, as a
        # real kill would find it, not in the milliseconds of its start.
        time.sleep(2)
        os.kill(cli.pid, signal.SIGKILL)  # the leader only, as an OOM killer would
        cli.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in steps) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [p for p in steps if _alive(p)]
        assert survivors == [], (
            f"step processes still running after the CLI was killed: {survivors}"
        )
    finally:
        for pid in steps:  # leave nothing behind, whatever the outcome
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, signal.SIGKILL)
    stale = sorted(p.name for p in scratch.iterdir())
    assert stale, "the killed run left its staging folder (the case the next run must clean)"
    done = subprocess.run(
        agents_run("0"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p for p in scratch.iterdir() if p.name in stale] == []
    assert (tmp_path / "out" / "x.txt").read_text() == "x"
    assert list(tmp_path.glob(".*aiop-*")) == []


def test_tree_hash_sees_a_changed_byte(tmp_path: Path) -> None:
    project = user_folder(tmp_path / "p")
    before = tree_hash(project)
    (project / "src" / "main.py").write_text("print('my work!')\n")
    assert tree_hash(project) != before
    shutil.rmtree(project / ".git")
    assert ".git/config" not in tree_hash(project)
