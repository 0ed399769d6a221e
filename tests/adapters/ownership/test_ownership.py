"""The ownership rules where a result folder or a file output comes from someone else.

Issue 21: a forged manifest (item 1), file outputs (item 2), host writes that meet a storage limit
(item 7), one run at a time per folder (item 13), and a cache entry found changed (item 3). Through
the local runner (the real export path) wherever a run is involved; a user's files are hashed
before and after, so "nothing changed" is checked, not assumed.
"""

from __future__ import annotations

import contextvars
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters import InvalidInputError, InvalidSpecError, StepSpec
from adapters.errors import StorageLimitError
from adapters.local_runner import LocalRunner
from adapters.ownership import (
    LOCK,
    MANIFEST,
    Status,
    check_destination,
    check_output,
    hold,
    inspect,
    output_present,
    receive,
    set_aside,
    write_owned_file,
)

ROOT = Path(__file__).resolve().parents[3]


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: its type and a hash of its bytes (links: their target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = f"link:{path.readlink()}"
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def writes_folder(dest: Path, marker: Path | None = None) -> StepSpec:
    """A step whose output ``/aiop/out`` is a folder holding ``a.txt``."""
    touch = f"open({str(marker)!r}, 'w').close(); " if marker else ""
    return StepSpec(
        name="w",
        image="python:3.12-slim",
        args=[
            "python",
            "-c",
            touch
            + "import os; os.makedirs('/aiop/out'); open('/aiop/out/a.txt', 'w').write('new')",
        ],
        outputs={"/aiop/out": str(dest)},
    )


def writes_file(dest: Path, text: str = "new", marker: Path | None = None) -> StepSpec:
    """A step whose output ``/aiop/res/x.txt`` is a file."""
    touch = f"open({str(marker)!r}, 'w').close(); " if marker else ""
    return StepSpec(
        name="f",
        image="python:3.12-slim",
        args=["python", "-c", touch + f"open('/aiop/res/x.txt', 'w').write({text!r})"],
        outputs={"/aiop/res/x.txt": str(dest)},
    )


def forge(folder: Path, entries: dict[str, Path], section: str = "files") -> None:
    """A manifest in the platform's format listing ``entries`` with their real size and mtime."""
    table = {
        rel: {"size": path.lstat().st_size, "mtime_ns": path.lstat().st_mtime_ns}
        for rel, path in entries.items()
    }
    data: dict[str, object] = {"format": "aiop-output-manifest/1", "files": {}, "dirs": []}
    data[section] = table
    (folder / MANIFEST).write_text(json.dumps(data))


class TestForgedManifests:
    """Item 1: manifest entries are plain relative names inside the folder, resolved without
    following links; anything else makes the manifest untrusted."""

    @pytest.fixture
    def victims(self, tmp_path: Path) -> dict[str, Path]:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "v2.txt").write_text("precious 2")
        (tmp_path / "victim.txt").write_text("precious")
        return {"victim": tmp_path / "victim.txt", "v2": tmp_path / "elsewhere" / "v2.txt"}

    def result(self, tmp_path: Path, victims: dict[str, Path], how: str, section: str) -> Path:
        folder = tmp_path / "R"
        folder.mkdir()
        (folder / "mine.txt").write_text("a user's file")
        if how == "dotdot":
            forge(folder, {"../victim.txt": victims["victim"]}, section)
        elif how == "absolute":
            forge(folder, {str(victims["victim"]): victims["victim"]}, section)
        else:
            (folder / "link").symlink_to(victims["v2"].parent)
            forge(folder, {"link/v2.txt": victims["v2"]}, section)
        return folder

    @pytest.mark.parametrize("section", ["files", "incoming"])
    @pytest.mark.parametrize("how", ["dotdot", "absolute", "through-a-link"])
    async def test_a_run_into_the_folder_deletes_nothing_and_says_why(
        self, tmp_path: Path, victims: dict[str, Path], how: str, section: str
    ) -> None:
        folder = self.result(tmp_path, victims, how, section)
        before = tree(tmp_path)
        marker = tmp_path / "started"
        with pytest.raises(InvalidSpecError) as caught:
            await LocalRunner().run(writes_folder(folder, marker))
        message = str(caught.value)
        assert "cannot prove what the platform wrote" in message and MANIFEST in message
        assert str(folder) in message and "\n" not in message
        assert not marker.exists()  # refused before the step started
        assert tree(tmp_path) == before
        assert inspect(folder).status is Status.UNTRUSTED
        assert not output_present(folder)

    @pytest.mark.parametrize("how", ["dotdot", "absolute", "through-a-link"])
    def test_the_pipeline_check_refuses_it_in_one_paragraph(
        self, tmp_path: Path, victims: dict[str, Path], how: str
    ) -> None:
        folder = self.result(tmp_path, victims, how, "files")
        with pytest.raises(InvalidSpecError, match=r"then move it away and run again") as caught:
            check_destination(folder, label="--output R")
        assert "\n" not in str(caught.value)

    def test_a_listed_folder_outside_is_untrusted_too(self, tmp_path: Path) -> None:
        (tmp_path / "R").mkdir()
        (tmp_path / "R" / MANIFEST).write_text(
            json.dumps({"format": "aiop-output-manifest/1", "files": {}, "dirs": ["../.."]})
        )
        assert inspect(tmp_path / "R").status is Status.UNTRUSTED

    async def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(
        self, tmp_path: Path
    ) -> None:
        """The merge reaches each entry without following links, whatever the folder came to
        hold after it was inspected."""
        from adapters.ownership import _install
        from adapters.ownership._manifest import read_manifest

        dest = tmp_path / "R"
        code = "import os; os.makedirs('/aiop/out/data'); open('/aiop/out/data/p0', 'w').write('0')"
        await LocalRunner().run(
            StepSpec(
                name="w", image="x", args=["python", "-c", code], outputs={"/aiop/out": str(dest)}
            )
        )
        old = read_manifest(dest)
        assert old is not None and "data/p0" in old.files
        (tmp_path / "elsewhere").mkdir()
        victim = tmp_path / "elsewhere" / "p0"
        (dest / "data" / "p0").rename(victim)  # the same file, now outside
        (dest / "data").rmdir()
        (dest / "data").symlink_to(tmp_path / "elsewhere")
        landing = tmp_path / "landing"
        (landing / "other").mkdir(parents=True)
        (landing / "other" / "q").write_text("q")
        with pytest.raises(InvalidSpecError, match="cannot prove"):
            _install.install_folder(landing, dest, old, label="--output R", origin=None)
        assert victim.read_text() == "0"


class TestFileOutputs:
    """Item 2: a file output obeys the folder rules: into a new, empty or owned folder, over
    nothing or over a file the platform wrote; never over a user's file or through a link."""

    async def test_a_new_folder_receives_the_file_and_records_it(self, tmp_path: Path) -> None:
        dest = tmp_path / "res" / "x.txt"
        await LocalRunner().run(writes_file(dest, "one"))
        assert dest.read_text() == "one"
        assert "x.txt" in json.loads((dest.parent / MANIFEST).read_text())["files"]
        assert output_present(dest)
        await LocalRunner().run(writes_file(dest, "two"))  # the platform's: replaced
        assert dest.read_text() == "two"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no staging left

    async def test_a_users_file_is_refused_before_the_step_runs(self, tmp_path: Path) -> None:
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "thesis.tex").write_text("my thesis")
        before = tree(tmp_path)
        marker = tmp_path / "started"
        with pytest.raises(InvalidSpecError, match="is a file the platform did not write"):
            await LocalRunner().run(writes_file(docs / "thesis.tex", marker=marker))
        assert not marker.exists()
        assert tree(tmp_path) == before
        assert not output_present(docs / "thesis.tex")

    async def test_a_symbolic_link_is_neither_replaced_nor_written_through(
        self, tmp_path: Path
    ) -> None:
        write_owned_file(tmp_path / "res", "keep.txt", b"a result")
        (tmp_path / "target.txt").write_text("the link's target")
        (tmp_path / "res" / "x.txt").symlink_to(tmp_path / "target.txt")
        before = tree(tmp_path)
        with pytest.raises(InvalidSpecError, match="is a symbolic link the platform did not"):
            await LocalRunner().run(writes_file(tmp_path / "res" / "x.txt"))
        assert tree(tmp_path) == before

    async def test_a_file_into_a_folder_of_a_users_files_is_refused_on_export(
        self, tmp_path: Path
    ) -> None:
        """Before the step runs, an absent path may become a folder; once the step wrote a file
        there, its folder of a user's files is refused and nothing is written into it."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "main.py").write_text("print('mine')")
        before = tree(tmp_path)
        with pytest.raises(InvalidSpecError, match="a folder of files the platform did not write"):
            await LocalRunner().run(writes_file(project / "x.txt"))
        assert tree(tmp_path) == before

    async def test_a_foreign_file_at_the_path_is_not_a_present_output(self, tmp_path: Path) -> None:
        """An identical later run is not cached because a file of someone else's stands there."""
        dest = tmp_path / "res" / "x.txt"
        await LocalRunner().run(writes_file(dest))
        assert output_present(dest)
        dest.unlink()
        dest.write_text("someone else's")
        assert not output_present(dest)
        (tmp_path / "loose.txt").write_text("no manifest at all")
        assert not output_present(tmp_path / "loose.txt")

    def test_a_file_written_after_a_crashed_replacement_keeps_its_incoming_record(
        self, tmp_path: Path
    ) -> None:
        """A crash mid-replacement leaves ``incoming`` entries; a file output written into the
        folder afterwards must not erase them, or the half-replaced files would look changed."""
        import dataclasses

        from adapters.ownership._manifest import Identity, read_manifest, write_manifest

        write_owned_file(tmp_path / "R", "a.txt", b"old")
        (tmp_path / "R" / "a.txt").write_bytes(b"new, half-way")  # the crash left the new form
        manifest = read_manifest(tmp_path / "R")
        assert manifest is not None
        new = Identity.of(tmp_path / "R" / "a.txt")
        assert new is not None
        write_manifest(tmp_path / "R", dataclasses.replace(manifest, incoming={"a.txt": new}))
        write_owned_file(tmp_path / "R", "summary.json", b"{}")
        after = read_manifest(tmp_path / "R")
        assert after is not None and set(after.incoming) == {"a.txt"}
        assert inspect(tmp_path / "R").changed == () and not output_present(tmp_path / "R")

    def test_the_check_before_a_run_names_what_stands_there(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        with pytest.raises(InvalidSpecError, match="symbolic link"):
            check_output(tmp_path / "link" / "x.txt", "file", label="output 'x'")
        with pytest.raises(InvalidSpecError, match="a file output cannot replace it"):
            check_output(tmp_path / "real", "file", label="output 'x'")
        check_output(tmp_path / "new" / "x.txt", "file", label="output 'x'")  # a new folder
        check_output(tmp_path / "real" / "x.txt", "file", label="output 'x'")  # an empty one


class TestStorageLimits:
    """Item 7: a write that meets a storage limit is one line with the numbers; no raw list of
    errors, no permissions advice."""

    def test_the_file_size_limit_is_named_with_what_was_needed(self, tmp_path: Path) -> None:
        script = textwrap.dedent(
            f"""
            import resource, sys
            from pathlib import Path
            from adapters.ownership import receive
            from adapters.errors import StorageLimitError
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
            try:
                with receive(Path({str(tmp_path / "R")!r}), "directory", what="output 'out'",
                             step="s", needed=lambda: 10_000) as landing:
                    landing.mkdir()
                    (landing / "big.bin").write_bytes(b"x" * 10_000)
            except StorageLimitError as exc:
                print(type(exc).__name__, exc, sep="|")
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        kind, message = done.stdout.strip().split("|")
        assert kind == "StorageLimitError"
        assert message.startswith("step 's': file size limit reached writing output 'out'")
        assert "4.0 KiB" in message and "9.8 KiB needed" in message and "ulimit -f" in message
        assert not (tmp_path / "R").exists() and list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
    def test_a_full_file_system_is_one_line_with_the_numbers(
        self, tmp_path: Path, code: int
    ) -> None:
        with (
            pytest.raises(StorageLimitError) as caught,
            receive(tmp_path / "R", "directory", what="output 'out'", needed=lambda: 3 << 30),
        ):
            raise OSError(code, os.strerror(code), str(tmp_path / "R" / "p0.parquet"))
        message = str(caught.value)
        assert message.startswith(("no space left on /", "your disk quota is used up on /"))
        assert "3.0 GiB needed" in message and " free" in message
        assert "permission" not in message and "shutil" not in message and "\n" not in message
        assert not caught.value.transient


class TestOneRunAtATime:
    """Item 13: a lock file the platform owns, dropped by the kernel when its holder dies."""

    def test_a_second_holder_is_refused_in_one_line_naming_the_first(self, tmp_path: Path) -> None:
        with hold(tmp_path, label="--output out"):
            with pytest.raises(InvalidInputError) as caught:
                contextvars.Context().run(_enter, tmp_path)
            message = str(caught.value)
            assert message.startswith("--output out is in use by another run (pid ")
            assert str(os.getpid()) in message and "\n" not in message
            with hold(tmp_path, label="--output out"):  # the same line of execution: re-entrant
                pass
        assert not (tmp_path / LOCK).exists()
        contextvars.Context().run(_enter_and_leave, tmp_path)  # free again

    def test_a_lock_left_by_a_killed_run_is_taken_by_the_next(self, tmp_path: Path) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys, time
                from pathlib import Path
                from adapters.ownership import hold
                with hold(Path({str(tmp_path)!r}), label="x"):
                    print("held", flush=True)
                    time.sleep(600)
            """)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            with pytest.raises(InvalidInputError, match=f"pid {holder.pid} "):
                contextvars.Context().run(_enter_and_leave, tmp_path)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        assert (tmp_path / LOCK).exists()  # stale: left by the killed holder
        contextvars.Context().run(_enter_and_leave, tmp_path)
        assert not (tmp_path / LOCK).exists()


def _enter(folder: Path) -> None:
    hold(folder, label="--output out").__enter__()


def _enter_and_leave(folder: Path) -> None:
    with hold(folder, label="--output out"):
        pass


class TestCacheEntries:
    """Item 3: a cache entry found changed is set aside (its bytes kept) so the step can run."""

    async def test_a_changed_entry_is_set_aside_and_an_intact_one_left(
        self, tmp_path: Path
    ) -> None:
        entry = tmp_path / "work" / "aggregate-0123"
        await LocalRunner().run(writes_folder(entry))
        assert set_aside(entry) is None and output_present(entry)
        with (entry / "a.txt").open("a") as fh:
            fh.write("TOTAL\n")
        moved = set_aside(entry)
        assert moved is not None and moved.why == "a.txt was changed after the platform wrote it"
        assert moved.path.name.startswith("aggregate-0123.changed-")
        assert (moved.path / "a.txt").read_text() == "newTOTAL\n" and not entry.exists()
        await LocalRunner().run(writes_folder(entry))  # the step's output takes the place again
        assert (entry / "a.txt").read_text() == "new" and output_present(entry)
