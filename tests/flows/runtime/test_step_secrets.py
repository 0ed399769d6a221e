"""Secrets through ``run_step``: multi-line values masked everywhere, no secret in the cache key.

Every test goes through the real entry points: a flow running :func:`flows.runtime.step_task.execute_step`
with the local runner on the Prefect test server, or :func:`flows.runtime.step_task.step_cache_key` as
Prefect calls it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import string
from pathlib import Path

import pytest
from prefect import flow

from adapters import StepFailedError, StepSpec
from flows.runtime.cache_key import step_cache_key
from flows.runtime.step_task import StepOutcome, execute_step
from flows.ui.artifacts import render_failure

_B64 = string.ascii_letters + string.digits + "+/"


def pem_key(seed: int, lines: int = 14) -> str:
    """A PEM-shaped private key: random base64 body lines of 64 characters."""
    rng = random.Random(seed)
    body = ["".join(rng.choice(_B64) for _ in range(64)) for _ in range(lines)]
    return "\n".join(["-----BEGIN PRIVATE KEY-----", *body, "-----END PRIVATE KEY-----"])


def body_lines(key: str) -> list[str]:
    return key.splitlines()[1:-1]


#: A step that shows its secret in every way a careless step could: whole, with CRLF line ends,
#: line by line between other words, on stderr, then exits with ``EXIT``.
_LEAKY_STEP = """\
import os, sys
key = os.environ["KEY"]
print(key)
print(key.replace("\\n", "\\r\\n"))
for line in key.splitlines():
    print("got", line, "ok")
print(key, file=sys.stderr)
for line in key.splitlines():
    print("[", line, "]", file=sys.stderr)
sys.exit(EXIT)
"""


def leaky_spec(key: str, exit_code: int, where: Path) -> StepSpec:
    code = _LEAKY_STEP.replace("EXIT", str(exit_code)) + f"# {where}\n"
    return StepSpec(
        name="pem", image="python:3.12-slim", args=["python", "-c", code], secrets={"KEY": key}
    )


def assert_no_key_line(key: str, texts: dict[str, str]) -> None:
    for where, text in texts.items():
        leaked = [line for line in body_lines(key) if line in text]
        assert not leaked, f"{len(leaked)} key lines in clear in {where}"


@pytest.mark.prefect
class TestMultiLineSecrets:
    @pytest.mark.parametrize("exit_code", [0, 1])
    async def test_no_key_line_in_any_log_record_result_error_or_artifact(
        self,
        prefect_api_url: str,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        exit_code: int,
    ) -> None:
        key = pem_key(exit_code)
        spec = leaky_spec(key, exit_code, tmp_path)

        @flow
        async def once() -> StepOutcome:
            return await execute_step(spec, "local")

        with caplog.at_level(logging.DEBUG):
            outcome = await once()
        texts = {f"log record {i}": r.getMessage() for i, r in enumerate(caplog.records)}
        texts["formatted log"] = caplog.text
        if exit_code == 0:
            assert outcome.state == "Completed" and outcome.result is not None
            texts["result"] = outcome.result.model_dump_json()
            assert "got *** ok" in outcome.result.stdout
        else:
            assert isinstance(outcome.error, StepFailedError)
            texts["error"] = str(outcome.error)
            texts["error args"] = repr(outcome.error.args)
            texts["failure artifact"] = render_failure("pem", outcome.error, "run")
            assert "***" in str(outcome.error)
        assert "got *** ok" in caplog.text
        assert_no_key_line(key, texts)


class TestCacheKey:
    """The cache key of a step with a secret cannot be brute-forced without the installation key."""

    def spec_with(self, token: str) -> StepSpec:
        return StepSpec(
            name="s",
            image="python:3.12-slim",
            args=["python", "-c", "pass"],
            secrets={"TOKEN": token},
        )

    def key_of(self, spec: StepSpec, key_file: Path) -> str | None:
        """The cache key of ``spec`` for a run whose settings name ``key_file``."""
        return step_cache_key(spec, key_file)

    @pytest.mark.slow
    def test_a_five_digit_token_cannot_be_recovered_from_the_key(self, tmp_path: Path) -> None:
        victim, attacker = tmp_path / "victim.key", tmp_path / "attacker.key"
        token = "48213"
        key = self.key_of(self.spec_with(token), victim)
        assert key is not None
        # The attacker knows the spec (image, args, names) and the algorithm, but has another
        # installation key: trying every 5-digit token finds nothing.
        spec = self.spec_with("00000")
        found = [
            candidate
            for candidate in (f"{n:05d}" for n in range(100_000))
            if step_cache_key(
                spec.model_copy(update={"secrets": {"TOKEN": _secret(candidate)}}), attacker
            )
            == key
        ]
        assert found == []
        # With the victim's installation key the same search does find it: the test can fail.
        assert self.key_of(self.spec_with(token), victim) == key

    def test_the_key_holds_no_plain_hash_and_depends_on_the_installation_key(
        self, tmp_path: Path
    ) -> None:
        spec = self.spec_with("48213")
        one = self.key_of(spec, tmp_path / "one.key")
        two = self.key_of(spec, tmp_path / "two.key")
        assert one is not None and two is not None and one != two
        plain = hashlib.sha256(b"48213").hexdigest()
        assert plain[:16] not in one and plain[:16] not in two

    def test_the_installation_key_file_is_private_and_kept(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "installation.key"
        spec = self.spec_with("48213")
        first = self.key_of(spec, path)
        assert path.stat().st_mode & 0o777 == 0o600
        content = path.read_bytes()
        assert self.key_of(spec, path) == first
        assert path.read_bytes() == content


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)
