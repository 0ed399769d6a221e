"""The local runner: same contract as the Dagger runner, as a host subprocess."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from adapters import InvalidSpecError, StepSpec, StepTimeoutError
from adapters.local_runner import LocalRunner
from adapters.runner import Runner, Stream


def spec_of(code: str, **fields: object) -> StepSpec:
    return StepSpec(name="t", image="python:3.12-slim", args=["python", "-c", code], **fields)  # type: ignore[arg-type]


async def run(spec: StepSpec, lines: list[tuple[Stream, str]] | None = None) -> object:
    sink = (lambda s, line: lines.append((s, line))) if lines is not None else None
    return await LocalRunner().run(spec, attempt=2, on_line=sink)


class TestResults:
    def test_is_a_runner(self) -> None:
        assert isinstance(LocalRunner(), Runner)

    async def test_success_returns_output_and_metadata(self) -> None:
        result = await LocalRunner().run(spec_of("print('hello')"), attempt=2)
        assert (result.exit_code, result.stdout, result.backend, result.attempt) == (
            0,
            "hello\n",
            "local",
            2,
        )
        assert result.duration_s > 0

    async def test_non_zero_exit_is_a_result_not_an_exception(self) -> None:
        result = await LocalRunner().run(
            spec_of("import sys; print('boom', file=sys.stderr); sys.exit(7)")
        )
        assert result.exit_code == 7 and result.stderr == "boom\n" and not result.ok

    async def test_python_means_the_flow_interpreter(self) -> None:
        result = await LocalRunner().run(spec_of("import sys; print(sys.executable)"))
        assert result.stdout.strip() == sys.executable

    async def test_lines_are_streamed_as_they_arrive(self) -> None:
        lines: list[tuple[Stream, str]] = []
        code = "import sys; print('a', flush=True); print('b', file=sys.stderr, flush=True)"
        await LocalRunner().run(spec_of(code), on_line=lambda s, line: lines.append((s, line)))
        assert sorted(lines) == [("stderr", "b"), ("stdout", "a")]


class TestEnvironmentAndSecrets:
    async def test_env_is_the_spec_env_over_a_minimal_base(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIOP_SHOULD_NOT_LEAK", "x")
        code = "import os; print(os.environ.get('A'), os.environ.get('AIOP_SHOULD_NOT_LEAK'))"
        result = await LocalRunner().run(spec_of(code, env={"A": "1"}))
        assert result.stdout == "1 None\n"

    async def test_secret_values_are_masked_in_results_and_lines(self) -> None:
        lines: list[tuple[Stream, str]] = []
        code = "import os, sys; v = os.environ['TOKEN']; print('t=' + v); print(v, file=sys.stderr)"
        result = await LocalRunner().run(
            spec_of(code, secrets={"TOKEN": "hunter2"}),
            on_line=lambda s, line: lines.append((s, line)),
        )
        assert result.stdout == "t=***\n" and result.stderr == "***\n"
        assert all("hunter2" not in line for _, line in lines)


class TestPaths:
    async def test_mounts_outputs_and_workdir_map_to_host_paths(self, tmp_path: Path) -> None:
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "data.txt").write_text("payload")
        code = (
            "import os; os.makedirs('/aiop/out'); "
            "open('/aiop/out/copy.txt', 'w').write(open('/aiop/in/data.txt').read()); "
            "print(os.getcwd())"
        )
        spec = spec_of(
            code,
            mounts={str(tmp_path / "in"): "/aiop/in"},
            outputs={"/aiop/out": str(tmp_path / "result")},
            workdir="/aiop/in",
        )
        result = await LocalRunner().run(spec)
        assert result.ok, result.stderr
        assert (tmp_path / "result" / "copy.txt").read_text() == "payload"
        assert result.outputs == {"/aiop/out": str(tmp_path / "result")}
        assert result.stdout.strip() == str((tmp_path / "in").resolve())

    async def test_outputs_replace_what_an_earlier_output_wrote(self, tmp_path: Path) -> None:
        dest = tmp_path / "result"
        old = "import os; os.makedirs('/aiop/out'); open('/aiop/out/stale.txt', 'w').write('o')"
        await LocalRunner().run(spec_of(old, outputs={"/aiop/out": str(dest)}))
        code = "import os; os.makedirs('/aiop/out'); open('/aiop/out/new.txt', 'w').write('n')"
        await LocalRunner().run(spec_of(code, outputs={"/aiop/out": str(dest)}))
        assert sorted(p.name for p in dest.iterdir()) == [".aiop-manifest.json", "new.txt"]

    async def test_outputs_are_not_exported_after_a_failure(self, tmp_path: Path) -> None:
        code = "import os, sys; os.makedirs('/aiop/out'); sys.exit(1)"
        result = await LocalRunner().run(spec_of(code, outputs={"/aiop/out": str(tmp_path / "r")}))
        assert result.exit_code == 1 and result.outputs == {} and not (tmp_path / "r").exists()

    async def test_missing_output_after_success_is_an_invalid_spec(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidSpecError, match="wrote nothing"):
            await LocalRunner().run(spec_of("pass", outputs={"/aiop/out": str(tmp_path / "r")}))

    async def test_caches_persist_between_runs(self, tmp_path: Path) -> None:
        code = "import os; p = '/c/n'; n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1)); print(n)"
        spec = spec_of(code, caches={"counter": "/c"})
        runner = LocalRunner(cache_dir=tmp_path / "caches")
        first, second = (
            await runner.run(spec),
            await LocalRunner(cache_dir=tmp_path / "caches").run(spec),
        )
        assert (first.stdout, second.stdout) == ("0\n", "1\n")
        assert (tmp_path / "caches" / "counter" / "n").read_text() == "2"

    async def test_missing_mount_source_is_an_invalid_spec(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidSpecError, match="does not exist"):
            await LocalRunner().run(spec_of("pass", mounts={str(tmp_path / "nope"): "/in"}))


class TestFailures:
    async def test_unknown_command_is_an_invalid_spec(self) -> None:
        spec = StepSpec(name="t", image="x", args=["aiop-no-such-command-xyz"])
        with pytest.raises(InvalidSpecError, match="cannot start"):
            await LocalRunner().run(spec)

    async def test_timeout_kills_the_process_group(self, tmp_path: Path) -> None:
        marker = tmp_path / "child-alive"
        child = f"import time; time.sleep(1.5); open({str(marker)!r}, 'w')"
        code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(30)"
        started = time.monotonic()
        with pytest.raises(StepTimeoutError) as info:
            await LocalRunner(kill_grace_s=0.2).run(spec_of(code, timeout_s=0.3))
        assert time.monotonic() - started < 3
        assert info.value.timeout_s == 0.3 and info.value.transient
        await asyncio.sleep(1.6)  # the grandchild would have written the marker by now
        assert not marker.exists()

    async def test_cancellation_kills_the_process(self) -> None:
        task = asyncio.create_task(
            LocalRunner(kill_grace_s=0.2).run(spec_of("import time; time.sleep(30)"))
        )
        await asyncio.sleep(0.3)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2


class TestVirtualParents:
    async def test_parent_of_several_mounts_lists_them_like_a_container(
        self, tmp_path: Path
    ) -> None:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "part.txt").write_text(name)
        code = (
            "import glob; "
            "print(sorted(open(p).read() for p in glob.glob('/aiop/in/parts/*/part.txt')))"
        )
        spec = spec_of(
            code,
            mounts={
                str(tmp_path / "a"): "/aiop/in/parts/p0",
                str(tmp_path / "b"): "/aiop/in/parts/p1",
            },
        )
        result = await LocalRunner().run(spec)
        assert result.stdout == "['a', 'b']\n", result.stderr

    async def test_existing_host_folders_are_never_shadowed(self, tmp_path: Path) -> None:
        (tmp_path / "x").mkdir()
        spec = spec_of(
            "import os; print(os.path.isdir('/usr/bin'))",
            mounts={str(tmp_path / "x"): "/usr/aiop-x"},
        )
        assert (await LocalRunner().run(spec)).stdout == "True\n"
