"""The installation key file: read without trusting it, refused clearly or repaired in one line.

Every bad key the issue lists (5 bytes, a folder, an unwritable place, 0644 permissions, 64 NUL
bytes, 64 '0', a FIFO, /dev/zero) is refused with one paragraph naming the file and the fix, or
repaired with one line; none makes steps with secrets silently stop caching.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adapters.errors import InvalidInputError
from flows.runtime import installation_key as module
from flows.runtime.installation_key import installation_key, keyed_digest

GOOD = b"0123456789abcdef" * 4 + b"\n"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Each test reads its key files anew (the module keeps keys it read, per file)."""
    module._loaded.clear()


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(InvalidInputError) as info:
        installation_key(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


class TestRefused:
    def test_a_five_byte_key(self, tmp_path: Path) -> None:
        message = refusal(write_key(tmp_path / "k", b"abcde"))
        assert "holds 5 bytes" in message and "delete it" in message

    def test_sixty_four_nul_bytes(self, tmp_path: Path) -> None:
        message = refusal(write_key(tmp_path / "k", b"\0" * 64))
        assert "is not a key" in message and "hex digits" in message

    def test_sixty_four_zeros(self, tmp_path: Path) -> None:
        message = refusal(write_key(tmp_path / "k", b"0" * 64))
        assert "only 1 distinct digits" in message and "not a random key" in message

    def test_a_folder(self, tmp_path: Path) -> None:
        (tmp_path / "k").mkdir()
        message = refusal(tmp_path / "k")
        assert "is a folder, not a regular file" in message
        assert (tmp_path / "k").is_dir()  # never removed

    def test_an_unwritable_place_for_a_new_key(self, tmp_path: Path) -> None:
        if os.geteuid() != 0:
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o500)
            try:
                message = refusal(locked / "k")
            finally:
                locked.chmod(0o700)
        elif Path("/proc/self").is_dir():  # root may write anywhere but in /proc
            message = refusal(Path("/proc/aiop-test/installation.key"))
        else:
            pytest.skip("root writes everywhere and there is no /proc")
        assert "cannot create the installation key" in message and "writable" in message

    def test_an_unwritable_place_for_a_new_key_under_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x", encoding="utf-8")
        message = refusal(tmp_path / "file" / "k")
        assert "cannot be read (Not a directory)" in message

    def test_a_huge_file_is_not_read(self, tmp_path: Path) -> None:
        path = tmp_path / "k"
        with path.open("wb") as handle:
            handle.truncate(64 << 20)  # 64 MiB, sparse: /dev/zero would be endless
        path.chmod(0o600)
        message = refusal(path)
        assert "67,108,864 bytes" in message and "it was not read" in message

    def test_dev_zero_is_refused_without_reading_it(self) -> None:
        message = refusal(Path("/dev/zero"))
        assert "is a device, not a regular file" in message

    def test_a_fifo_is_refused_at_once_instead_of_hanging(self, tmp_path: Path) -> None:
        fifo = tmp_path / "k"
        os.mkfifo(fifo, 0o600)
        outcome: list[BaseException | None] = []

        def read() -> None:
            try:
                installation_key(fifo)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=30)  # a guard against a hang, not a measurement
        if reader.is_alive():  # unblock the reader so the test process can end
            with open(fifo, "wb"):  # noqa: PTH123
                pass
            pytest.fail("reading a FIFO as the installation key hung")
        assert isinstance(outcome[0], InvalidInputError)
        assert "is a named pipe (FIFO), not a regular file" in str(outcome[0])


class TestRepairedOrAccepted:
    def test_a_key_others_may_read_is_made_private_with_one_line(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = write_key(tmp_path / "k", GOOD, mode=0o644)
        note = module.check_installation_key(path)
        assert note is not None and "had permissions 0644" in note and "now 0600" in note
        assert "\n" not in note
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == GOOD  # the key itself is kept
        assert installation_key(path) == GOOD.strip()

    def test_a_good_key_through_a_symlink_is_used_as_it_is(self, tmp_path: Path) -> None:
        real = write_key(tmp_path / "real.key", GOOD)
        link = tmp_path / "k"
        link.symlink_to(real)
        assert module.check_installation_key(link) is None
        assert installation_key(link) == GOOD.strip()

    def test_a_new_key_is_made_private_and_is_a_valid_key(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "installation.key"
        assert module.check_installation_key(path) is None
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        module._loaded.clear()
        assert installation_key(path) == path.read_bytes().strip()
        assert len(keyed_digest("T", "v", path)) == 64


def _agent_with_a_secret(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "needs-token.yaml"
    path.write_text(
        "name: needs-token\n"
        "description: Prints its argument; needs a token.\n"
        "capabilities: [echo]\n"
        "image: python:3.12-slim\n"
        "parameters: {text: {description: what to echo}}\n"
        "command: [python, -c, 'import sys; print(sys.argv[1])', '{text}']\n"
        "secrets: [TOKEN]\n",
        encoding="utf-8",
    )
    return folder


def test_agents_run_with_a_bad_key_stops_before_any_flow_run(tmp_path: Path) -> None:
    """Before: the run went ahead and its step with a secret silently stopped caching."""
    key = write_key(tmp_path / "bad.key", b"abcde")
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "AIOP_AGENTS_PATH": str(_agent_with_a_secret(tmp_path / "agents")),
        "AIOP_INSTALLATION_KEY_FILE": str(key),
        "TOKEN": "s3cret",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "agents", "run", "needs-token", "--param", "text=hi",
         "--backend", "local"],
        cwd=Path(__file__).resolve().parents[3], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: the installation key {key} holds 5 bytes")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()  # no flow run was made


@pytest.mark.prefect
async def test_a_step_with_a_secret_fails_clearly_on_a_bad_key_instead_of_running_uncached(
    prefect_api_url: str, tmp_path: Path
) -> None:
    """Before: Prefect logged "Error encountered when computing cache key", the step ran and
    completed, and its result was never cached."""
    from prefect import flow

    from adapters import StepSpec
    from adapters.settings import Settings
    from flows.runtime.step_task import StepOutcome, execute_step

    key = write_key(tmp_path / "bad.key", b"\0" * 64)
    spec = StepSpec(
        name="with-secret",
        image="python:3.12-slim",
        args=["python", "-c", "print('ran')"],
        secrets={"TOKEN": "s3cret"},
    )

    @flow
    async def once() -> StepOutcome:
        return await execute_step(spec, "local", settings=Settings(installation_key_file=key))

    outcome = await once()
    assert outcome.state != "Completed"
    assert isinstance(outcome.error, InvalidInputError)
    assert f"the installation key {key} is not a key" in str(outcome.error)
    assert outcome.attempts == 1  # bad input is never retried
