"""The same StepSpec gives the same result on LocalRunner and on DaggerRunner (stand-in, exec mode).

The stand-in engine in exec mode (tests/fakes/host_exec.py) runs each ``withExec`` on the host, so
the real Dagger SDK, the adapter's pipeline, its exports and its error translation are exercised
end to end against a real command. It has no isolation and no images: these tests compare the two
runners' contract (outputs, stdout, stderr, exit code), not containers.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.contract import Mount, StepResult, StepSpec
from adapters.dagger.runner import DaggerRunner
from adapters.errors import InvalidSpecError
from adapters.local_runner import LocalRunner
from adapters.ownership import MANIFEST
from adapters.runner import Runner
from tests.fakes import FakeDaggerEngine, exec_standin_engine

ROOT = Path(__file__).resolve().parents[3]
SECRET = "tok-5ecr3t-9876"

#: Builds a spec from the shared inputs folder and the runner's own outputs folder.
SpecFactory = Callable[[Path, Path], StepSpec]


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    """A stand-in engine in exec mode, found by the SDK as the current session."""
    for name in ("_EXPERIMENTAL_DAGGER_CLI_BIN", "_EXPERIMENTAL_DAGGER_RUNNER_HOST"):
        monkeypatch.delenv(name, raising=False)
    with exec_standin_engine() as fake:
        yield fake


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "rows.csv").write_text("id,name\n1,ada\n2,grace\n")
    (folder / "config.json").write_text('{"greeting": "hello"}')
    return folder


def _dagger() -> DaggerRunner:
    return DaggerRunner(provision_timeout_s=10, close_timeout_s=10)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (a file or a folder): its bytes, None for a folder.

    The ownership manifest is compared by the files it lists and their sizes (modification times
    differ between two runs by nature).
    """
    if root.is_file():
        return {".": root.read_bytes()}
    return {
        p.relative_to(root).as_posix(): (
            _listed(p) if p.name == MANIFEST else p.read_bytes() if p.is_file() else None
        )
        for p in sorted(root.rglob("*"))
    }


def _listed(manifest: Path) -> bytes:
    files = json.loads(manifest.read_text())["files"]
    return json.dumps({name: entry["size"] for name, entry in files.items()}).encode()


def as_reported(result: StepResult) -> tuple[str, str]:
    """stdout and stderr as the Dagger path reports them: a failed command's output comes from
    the engine's ExecError, trimmed of surrounding whitespace (dagger/dagger core/exec_error.go)."""
    if result.ok:
        return result.stdout, result.stderr
    return result.stdout.strip(), result.stderr.strip()


def outputs_of(result: StepResult, out: Path) -> dict[str, tuple[str, dict[str, bytes | None]]]:
    """Per exported output: its destination relative to ``out``, and what is there."""
    return {
        source: (Path(dest).relative_to(out).as_posix(), tree(Path(dest)))
        for source, dest in result.outputs.items()
    }


async def run_both(
    make: SpecFactory, inputs: Path, tmp_path: Path
) -> tuple[tuple[StepResult, Path], tuple[StepResult, Path]]:
    """Run the spec on each runner, each with its own outputs folder."""
    results = []
    runner: Runner
    for runner in (LocalRunner(cache_dir=tmp_path / "local-caches"), _dagger()):
        out = tmp_path / f"out-{runner.backend}"
        results.append((await runner.run(make(inputs, out)), out))
    return results[0], results[1]


# ---------------------------------------------------------------------------------------------
# Specs run on both runners
# ---------------------------------------------------------------------------------------------

_COPY = """
import json, os, sys
rows = open(os.environ["ROWS"]).read()
os.makedirs("/aiop/out/sub", exist_ok=True)
open("/aiop/out/rows.csv", "w").write(rows)
open("/aiop/out/sub/count.txt", "w").write(str(rows.count(chr(10))))
open("/aiop/summary.txt", "w").write(json.load(open("/etc/aiop/config.json"))["greeting"])
print(os.environ["GREETING"], sorted(os.listdir(".")))
source, out = sys.argv[1].split("=", 1)[1], sys.argv[2]  # rewritten to host paths, which differ
print("args:", open(source).read() == rows, os.path.isdir(out), os.path.basename(out))
"""


def mounts_env_workdir(inputs: Path, out: Path) -> StepSpec:
    return StepSpec(
        name="copy",
        image="python:3.12-slim",
        args=["python", "-c", _COPY, "--input=/aiop/in/data/rows.csv", "/aiop/out"],
        env={"GREETING": "hi", "ROWS": "/aiop/in/data/rows.csv"},
        mounts={
            str(inputs / "data"): Mount(target="/aiop/in/data"),
            str(inputs / "config.json"): Mount(target="/etc/aiop/config.json"),
        },
        outputs={"/aiop/out": str(out / "result"), "/aiop/summary.txt": str(out / "summary.txt")},
        workdir="/aiop/in/data",
        timeout_s=60,
    )


_CACHE = f"""
import json
import os
print("token:", os.environ["API_TOKEN"])
with open("/aiop/cache/seen.txt", "a") as seen:
    seen.write("run\\n")
os.makedirs("/aiop/out", exist_ok=True)
open("/aiop/out/cache.txt", "w").write(open("/aiop/cache/seen.txt").read())
print("token length:", len(os.environ["API_TOKEN"]) == {len(SECRET)})
"""


def secrets_and_caches(inputs: Path, out: Path) -> StepSpec:
    return StepSpec(
        name="cached",
        image="python:3.12-slim",
        args=["python", "-c", _CACHE],
        secrets={"API_TOKEN": SecretStr(SECRET)},
        caches={f"parity-{uuid.uuid4().hex[:8]}": "/aiop/cache"},
        outputs={"/aiop/out": str(out / "cached")},
        timeout_s=60,
    )


_RELATIVE = """
import os, sys
open("notes.txt", "w").write("written in " + os.path.basename(os.getcwd()))
target = sys.argv[1].split("=", 1)[1]
os.makedirs(os.path.dirname(target), exist_ok=True)
open(target, "w").write(open("notes.txt").read())
print(os.getcwd().endswith("/work/here"))
"""


def unmapped_workdir(inputs: Path, out: Path) -> StepSpec:
    return StepSpec(
        name="scratch",
        image="python:3.12-slim",
        args=["python", "-c", _RELATIVE, "--output=/aiop/out/notes.txt"],
        outputs={"/aiop/out": str(out / "notes")},
        workdir="/work/here",
        timeout_s=60,
    )


_FAIL = """
import os, sys
os.makedirs("/aiop/out", exist_ok=True)
open("/aiop/out/partial.txt", "w").write("partial")
print("about to fail")
print("boom: bad row 7", file=sys.stderr)
sys.exit(3)
"""


def failing(inputs: Path, out: Path) -> StepSpec:
    return StepSpec(
        name="fails",
        image="python:3.12-slim",
        args=["python", "-c", _FAIL],
        outputs={"/aiop/out": str(out / "never")},
        timeout_s=60,
    )


SPECS: dict[str, SpecFactory] = {
    "mounts-env-workdir-outputs": mounts_env_workdir,
    "secrets-and-caches": secrets_and_caches,
    "unmapped-workdir-and-args": unmapped_workdir,
    "failing-command": failing,
}


class TestSameResultOnBothRunners:
    @pytest.mark.parametrize("make", SPECS.values(), ids=SPECS.keys())
    async def test_same_exit_code_output_and_exported_files(
        self, engine: FakeDaggerEngine, inputs: Path, tmp_path: Path, make: SpecFactory
    ) -> None:
        (local, local_out), (dagger, dagger_out) = await run_both(make, inputs, tmp_path)
        assert (dagger.backend, local.backend) == ("dagger", "local")
        assert (dagger.exit_code, dagger.stdout, dagger.stderr) == (
            local.exit_code,
            *as_reported(local),
        )
        assert outputs_of(dagger, dagger_out) == outputs_of(local, local_out)
        assert len(engine.exec_requests) == 1  # the Dagger run really went through the stand-in

    async def test_the_specs_do_what_they_say(
        self, engine: FakeDaggerEngine, inputs: Path, tmp_path: Path
    ) -> None:
        """Guards the parity test against two runners agreeing on nothing happening."""
        out = tmp_path / "out"  # new: the file output may go in beside the folder output
        result = await _dagger().run(mounts_env_workdir(inputs, out))
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "hi ['rows.csv']\nargs: True True out\n"
        assert (out / "result" / "rows.csv").read_text() == "id,name\n1,ada\n2,grace\n"
        assert (out / "result" / "sub" / "count.txt").read_text() == "3"
        assert (out / "summary.txt").read_text() == "hello"
        cached = await _dagger().run(secrets_and_caches(inputs, tmp_path))
        assert cached.stdout == "token: ***\ntoken length: True\n"
        failed = await _dagger().run(failing(inputs, tmp_path))
        assert (failed.exit_code, failed.outputs, failed.stderr) == (3, {}, "boom: bad row 7")

    async def test_a_missing_command_is_invalid_spec_on_both(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        spec = StepSpec(name="nope", image="alpine:3.20", args=["aiop-no-such-command-xyz"])
        for runner in (LocalRunner(cache_dir=tmp_path / "local-caches"), _dagger()):
            with pytest.raises(InvalidSpecError, match="aiop-no-such-command-xyz"):
                await runner.run(spec)


# ---------------------------------------------------------------------------------------------
# The pipeline's own step code, when present
# ---------------------------------------------------------------------------------------------

_STEPS_MAIN = ROOT / "flows" / "steps" / "__main__.py"


@pytest.mark.skipif(
    not _STEPS_MAIN.is_file(),
    reason="flows/steps/__main__.py is not there yet (the pipeline's step code)",
)
class TestPipelineStepsOnBothRunners:
    @pytest.mark.parametrize(("rows", "seed"), [(500, 3), (2_000, 11)])
    async def test_ingest_writes_the_same_bytes(
        self, engine: FakeDaggerEngine, inputs: Path, tmp_path: Path, rows: int, seed: int
    ) -> None:
        def ingest(_: Path, out: Path) -> StepSpec:
            return StepSpec(
                name="ingest",
                image="python:3.12-slim",
                args=["python", "-m", "flows.steps", "ingest", "--rows", str(rows),
                      "--seed", str(seed), "--output", "/aiop/out"],
                outputs={"/aiop/out": str(out / "ingested")},
                timeout_s=300,
            )  # fmt: skip

        (local, local_out), (dagger, dagger_out) = await run_both(ingest, inputs, tmp_path)
        assert (local.exit_code, dagger.exit_code) == (0, 0), (local.stderr, dagger.stderr)
        assert tree(dagger_out / "ingested") == tree(local_out / "ingested")
        assert tree(local_out / "ingested"), "ingest wrote nothing"
        assert dagger.stdout == local.stdout


# ---------------------------------------------------------------------------------------------
# The exec mode itself
# ---------------------------------------------------------------------------------------------


class TestExecMode:
    async def test_cache_volumes_persist_for_the_engines_life(
        self, engine: FakeDaggerEngine, inputs: Path, tmp_path: Path
    ) -> None:
        spec = secrets_and_caches(inputs, tmp_path)
        for _ in range(2):
            await _dagger().run(spec)
        assert (tmp_path / "cached" / "cache.txt").read_text() == "run\nrun\n"

    async def test_each_container_has_its_own_scratch_root(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        code = (
            "import os; os.makedirs('/aiop/out', exist_ok=True);"
            "print(sorted(os.listdir('/aiop/out'))); open('/aiop/out/x', 'w').write('x')"
        )
        spec = StepSpec(name="s", image="python:3.12-slim", args=["python", "-c", code])
        first, second = [await _dagger().run(spec) for _ in range(2)]
        assert first.stdout == second.stdout == "[]\n"  # nor the host's /aiop/out, if it has one
        assert not Path("/aiop/out/x").exists()

    async def test_a_one_part_path_inside_a_program_text_is_left_alone(
        self, engine: FakeDaggerEngine
    ) -> None:
        code = "import sys; print(sys.argv[1] + '/raw.csv')"  # '/raw.csv' is a suffix, no folder
        spec = StepSpec(name="s", image="x", args=["python", "-c", code, "/aiop/out"])
        result = await _dagger().run(spec)
        assert result.stdout.endswith("/aiop/out/raw.csv\n")
        assert result.stdout.startswith(tempfile.gettempdir())  # /aiop/out: the scratch root

    def test_session_variables_are_set_inside_and_restored_after(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DAGGER_SESSION_PORT", "1")
        monkeypatch.delenv("DAGGER_SESSION_TOKEN", raising=False)
        with exec_standin_engine() as fake:
            assert os.environ["DAGGER_SESSION_PORT"] == str(fake.port)
            assert os.environ["DAGGER_SESSION_TOKEN"] == fake.token
        assert os.environ["DAGGER_SESSION_PORT"] == "1"
        assert "DAGGER_SESSION_TOKEN" not in os.environ
        assert not fake.alive


# ---------------------------------------------------------------------------------------------
# Symbolic links in a mounted folder (docs/guides/real-dagger-engine.md, "What the Dagger runner
# does for you")
# ---------------------------------------------------------------------------------------------

_LINKS = """
import os
for name in ("inside", "outside"):
    path = os.path.join("/aiop/in/data", name)
    body = open(path).read() if os.path.exists(path) else None
    print(name, os.path.islink(path), body is not None, (body or "").splitlines()[:1])
"""


def links(inputs: Path, out: Path) -> StepSpec:
    return StepSpec(
        name="links",
        image="python:3.12-slim",
        args=["python", "-c", _LINKS],
        mounts={str(inputs / "data"): Mount(target="/aiop/in/data")},
        timeout_s=60,
    )


class TestSymlinksInMounts:
    """A link inside the mounted folder works on both runners; a link out of it resolves on the
    local runner (the host's path) and dangles in a container, as the guide says."""

    async def test_links_inside_work_and_links_out_differ_as_documented(
        self, engine: FakeDaggerEngine, inputs: Path, tmp_path: Path
    ) -> None:
        (inputs / "data" / "inside").symlink_to("rows.csv")
        (inputs / "data" / "outside").symlink_to("../config.json")
        (local, _), (dagger, _) = await run_both(links, inputs, tmp_path)
        assert local.ok and dagger.ok, (local.stderr, dagger.stderr)
        inside = "inside True True ['id,name']"
        assert local.stdout.splitlines() == [
            inside,
            'outside True True [\'{"greeting": "hello"}\']',
        ]
        assert dagger.stdout.splitlines() == [inside, "outside True False []"]
