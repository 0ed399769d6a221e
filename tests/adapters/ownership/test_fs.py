"""Outputs put in place by the runners: only what the platform wrote is ever replaced or deleted.

Through the local runner (the real entry point of an output export) where a run is involved, and
through :mod:`adapters.ownership` for the manifest rules themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import InvalidSpecError, StepSpec
from adapters.local_runner import LocalRunner
from adapters.ownership import (
    MANIFEST,
    Status,
    check_destination,
    claim,
    inspect,
    origin_of,
    output_present,
    write_owned_file,
)
from adapters.ownership._staging import is_stale, staging_path


def writes(files: dict[str, str], dest: Path, marker: Path | None = None) -> StepSpec:
    """A step that writes ``files`` under /aiop/out (and touches ``marker`` when it starts)."""
    code = "import json, os, pathlib, sys\n"
    if marker is not None:
        code += f"pathlib.Path({str(marker)!r}).touch()\n"
    code += (
        "for rel, text in json.loads(sys.argv[1]).items():\n"
        "    p = pathlib.Path('/aiop/out') / rel\n"
        "    p.parent.mkdir(parents=True, exist_ok=True)\n"
        "    p.write_text(text)\n"
    )
    return StepSpec(
        name="w",
        image="python:3.12-slim",
        args=["python", "-c", code, json.dumps(files)],
        outputs={"/aiop/out": str(dest)},
    )


def listing(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text() if p.is_file() else "/"
        for p in sorted(folder.rglob("*"))
        if p.name != MANIFEST
    }


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


class TestResultFolders:
    async def test_a_rerun_replaces_only_what_the_platform_wrote(self, tmp_path: Path) -> None:
        dest = tmp_path / "R"
        await LocalRunner().run(writes({"a.txt": "1", "data/p0": "x", "data/p1": "y"}, dest))
        (dest / "notes.txt").write_text("mine")
        (dest / "data" / "README").write_text("mine too")
        (dest / "work").mkdir()
        (dest / "work" / "cache.bin").write_text("cache")
        await LocalRunner().run(writes({"a.txt": "2", "data/p0": "z"}, dest))
        assert listing(dest) == {
            "a.txt": "2",
            "data": "/",
            "data/README": "mine too",
            "data/p0": "z",
            "notes.txt": "mine",
            "work": "/",
            "work/cache.bin": "cache",
        }
        assert inspect(dest).status is Status.OWNED and output_present(dest)

    async def test_a_folder_left_empty_of_the_platforms_files_is_removed(
        self, tmp_path: Path
    ) -> None:
        dest = tmp_path / "R"
        await LocalRunner().run(writes({"a.txt": "1", "old/x": "x"}, dest))
        await LocalRunner().run(writes({"a.txt": "2"}, dest))
        assert listing(dest) == {"a.txt": "2"}

    async def test_a_foreign_folder_is_refused_before_the_step_starts(self, tmp_path: Path) -> None:
        dest = tmp_path / "project"
        (dest / ".git").mkdir(parents=True)
        (dest / "summary.json").write_text("{}")
        marker = tmp_path / "started"
        with pytest.raises(InvalidSpecError, match="did not write") as caught:
            await LocalRunner().run(writes({"summary.json": "new"}, dest, marker))
        assert caught.value.step == "w" and str(dest) in str(caught.value)
        assert not marker.exists()
        assert listing(dest) == {".git": "/", "summary.json": "{}"}

    async def test_an_empty_folder_is_taken(self, tmp_path: Path) -> None:
        (tmp_path / "R").mkdir()
        await LocalRunner().run(writes({"a.txt": "1"}, tmp_path / "R"))
        assert listing(tmp_path / "R") == {"a.txt": "1"}

    async def test_a_file_the_user_changed_is_not_the_platforms_any_more(
        self, tmp_path: Path
    ) -> None:
        dest = tmp_path / "R"
        await LocalRunner().run(writes({"a.txt": "1", "b.txt": "1"}, dest))
        (dest / "b.txt").write_text("edited by hand")
        await LocalRunner().run(writes({"a.txt": "2"}, dest))  # b.txt is kept, not deleted
        assert listing(dest) == {"a.txt": "2", "b.txt": "edited by hand"}
        with pytest.raises(InvalidSpecError, match=r"b\.txt"):  # nor replaced
            await LocalRunner().run(writes({"a.txt": "3", "b.txt": "3"}, dest))
        assert listing(dest) == {"a.txt": "2", "b.txt": "edited by hand"}
        assert [p.name for p in tmp_path.iterdir()] == ["R"]  # no staging left beside it

    async def test_a_symbolic_link_destination_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        with pytest.raises(InvalidSpecError, match="symbolic link"):
            await LocalRunner().run(writes({"a.txt": "1"}, tmp_path / "link"))
        assert (tmp_path / "link").is_symlink() and list((tmp_path / "real").iterdir()) == []

    async def test_a_crash_mid_replacement_leaves_every_entry_accounted_for(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        dest = tmp_path / "R"
        await LocalRunner().run(writes({"a.txt": "1", "b.txt": "1"}, dest))
        (dest / "notes.txt").write_text("mine")
        import adapters.ownership._install as install

        real_rename = install.rename_in
        calls: list[str] = []

        def crash_on_second_file(source: Path, folder: Path, rel: str) -> None:
            calls.append(rel)
            if len(calls) == 2:
                raise OSError(5, "simulated crash")
            real_rename(source, folder, rel)

        monkeypatch.setattr(install, "rename_in", crash_on_second_file)
        with pytest.raises(InvalidSpecError, match="simulated crash"):
            await LocalRunner().run(writes({"a.txt": "2", "b.txt": "2"}, dest))
        monkeypatch.undo()
        found = inspect(dest)  # a.txt is new, b.txt old: both are recorded as the platform's
        assert found.status is Status.OWNED and found.changed == ()
        assert listing(dest) == {"a.txt": "2", "b.txt": "1", "notes.txt": "mine"}
        assert not output_present(dest)  # a cached result would be refreshed
        await LocalRunner().run(writes({"a.txt": "3", "b.txt": "3"}, dest))
        assert listing(dest) == {"a.txt": "3", "b.txt": "3", "notes.txt": "mine"}

    async def test_a_folder_rewritten_by_another_spec_no_longer_holds_the_first_result(
        self, tmp_path: Path
    ) -> None:
        dest = tmp_path / "R"
        first, second = writes({"a.txt": "A"}, dest), writes({"a.txt": "B"}, dest)
        await LocalRunner().run(first)
        assert output_present(dest, origin_of(first))
        await LocalRunner().run(second)
        assert output_present(dest, origin_of(second))
        assert not output_present(dest, origin_of(first))  # a cached `first` must run again


class TestStaging:
    async def test_stale_staging_of_dead_runs_is_removed_and_nothing_else(
        self, tmp_path: Path
    ) -> None:
        dest = tmp_path / "R"
        mine = staging_path(dest)  # a live process (this one) owns it
        pid = os.getpid()
        stale = mine.with_name(mine.name.replace(f"-{pid}-", f"-{dead_pid()}-"))
        lookalikes = [".R.aiop-tmp-notes", ".R.aiop-old-0123456789ab", "R.aiop-tmp-x"]
        for path in [mine, stale, *(tmp_path / n for n in lookalikes)]:
            path.mkdir()
            (path / "f").write_text("x")
        assert is_stale(stale.name) and not is_stale(mine.name)
        await LocalRunner().run(writes({"a.txt": "1"}, dest))
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["R", mine.name, *lookalikes])

    async def test_a_killed_runs_scratch_folder_is_removed_by_the_next_runner(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import adapters.local_runner as local_runner

        monkeypatch.setenv("TMPDIR", str(tmp_path))
        monkeypatch.setattr("tempfile.tempdir", None)
        monkeypatch.setattr(local_runner, "_SWEPT", set())
        mine = staging_path(tmp_path / "aiop-step")
        stale = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{dead_pid()}-"))
        stale.mkdir()
        await LocalRunner().run(writes({"a.txt": "1"}, tmp_path / "R"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]


class TestOwnership:
    def test_claim_makes_an_empty_owned_folder_that_holds_no_result(self, tmp_path: Path) -> None:
        claim(tmp_path / "R")
        assert inspect(tmp_path / "R").status is Status.OWNED
        assert not output_present(tmp_path / "R")
        write_owned_file(tmp_path / "R", "summary.json", b"{}")
        assert output_present(tmp_path / "R")

    def test_a_folder_the_platform_cannot_prove_it_wrote_is_not_a_present_output(
        self, tmp_path: Path
    ) -> None:
        """A folder without a manifest (a user's, or one of a version before manifests) never
        stands for a cached result: the step runs again (issue 21, item 2)."""
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "x").write_text("x")
        assert not output_present(tmp_path / "old") and not output_present(tmp_path / "nope")

    def test_a_manifest_that_is_not_the_platforms_proves_nothing(self, tmp_path: Path) -> None:
        (tmp_path / MANIFEST).write_text('{"files": {}}')
        assert inspect(tmp_path).status is Status.FOREIGN

    @pytest.mark.parametrize("name", ["--input", "--schema"])
    def test_an_input_among_the_files_a_run_replaces_is_refused(
        self, tmp_path: Path, name: str
    ) -> None:
        write_owned_file(tmp_path / "R", "quarantine.csv", b"line,reason\n")
        with pytest.raises(InvalidSpecError, match=rf"^{name} .*quarantine\.csv"):
            check_destination(
                tmp_path / "R",
                label="--output R",
                protect={name: str(tmp_path / "R" / "quarantine.csv")},
            )
        check_destination(  # a user's file beside the results is not replaced: allowed
            tmp_path / "R", label="--output R", protect={name: str(tmp_path / "R" / "mine.csv")}
        )

    def test_a_users_file_at_a_name_the_result_writes_is_refused(self, tmp_path: Path) -> None:
        claim(tmp_path / "R")
        (tmp_path / "R" / "data").mkdir()
        (tmp_path / "R" / "data" / "part-00000.parquet").write_text("mine")
        with pytest.raises(InvalidSpecError, match=r"data/part-00000\.parquet was not written"):
            check_destination(tmp_path / "R", label="--output R", reserved=["data/part-*.parquet"])

    def test_an_unwritable_place_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "afile").write_text("x")
        with pytest.raises(InvalidSpecError, match="cannot be created"):
            check_destination(tmp_path / "afile" / "R", label="--output afile/R")
