"""The local runner's output reading: long lines, multi-line secrets, secrets across split points."""

from __future__ import annotations

import random
import string

import pytest

from adapters import StepSpec
from adapters.local_runner import LINE_SPLIT_MARKER, MAX_LINE_CHARS, LocalRunner
from adapters.runner import Stream


def spec_of(code: str, **fields: object) -> StepSpec:
    return StepSpec(name="t", image="python:3.12-slim", args=["python", "-c", code], **fields)  # type: ignore[arg-type]


class Lines:
    """An ``on_line`` sink that keeps what it was given."""

    def __init__(self) -> None:
        self.got: list[tuple[Stream, str]] = []

    def __call__(self, stream: Stream, line: str) -> None:
        self.got.append((stream, line))

    def of(self, stream: Stream) -> list[str]:
        return [line for s, line in self.got if s == stream]


class TestLongLines:
    async def test_a_200_kib_line_keeps_exit_0_and_is_split_with_a_marker(self) -> None:
        lines = Lines()
        code = "import sys; sys.stdout.write('x' * (200 * 1024) + '\\n'); print('done')"
        result = await LocalRunner().run(spec_of(code), on_line=lines)
        assert result.exit_code == 0
        out = lines.of("stdout")
        assert out[-1] == "done"
        pieces = out[:-1]
        assert len(pieces) >= 2
        assert all(p.endswith(LINE_SPLIT_MARKER) for p in pieces[:-1])
        assert not pieces[-1].endswith(LINE_SPLIT_MARKER)
        assert all(len(p) <= MAX_LINE_CHARS + len(LINE_SPLIT_MARKER) for p in pieces)
        assert "".join(p.removesuffix(LINE_SPLIT_MARKER) for p in pieces) == "x" * (200 * 1024)
        assert result.stdout.endswith("x" * 100 + "\ndone\n")

    async def test_a_long_line_on_stderr_without_newline_at_exit(self) -> None:
        lines = Lines()
        code = "import sys; sys.stderr.write('é' * (150 * 1024)); sys.exit(3)"
        result = await LocalRunner().run(spec_of(code), on_line=lines)
        assert result.exit_code == 3
        joined = "".join(p.removesuffix(LINE_SPLIT_MARKER) for p in lines.of("stderr"))
        assert joined == "é" * (150 * 1024)


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


class TestSecretsInOutput:
    async def test_multi_line_secret_lines_are_masked_in_lines_and_result(self) -> None:
        rng = random.Random(7)
        body = [_token(rng, 64) for _ in range(14)]
        key = "\n".join(["-----BEGIN PRIVATE KEY-----", *body, "-----END PRIVATE KEY-----"])
        lines = Lines()
        code = (
            "import os, sys; k = os.environ['KEY']; print(k); print(k.replace('\\n', '\\r\\n'));"
            " [print('x', l, 'y', file=sys.stderr) for l in k.splitlines()]"
        )
        result = await LocalRunner().run(spec_of(code, secrets={"KEY": key}), on_line=lines)
        shown = [line for _, line in lines.got] + [result.stdout, result.stderr]
        assert not [b for b in body for text in shown if b in text]
        assert "x *** y" in result.stderr

    @pytest.mark.parametrize("offset", [-40, -17, -1, 0, 1, 23])
    async def test_a_secret_across_a_split_point_is_still_masked(self, offset: int) -> None:
        secret = _token(random.Random(offset), 48)
        lines = Lines()
        before = MAX_LINE_CHARS + offset
        code = (
            "import os, sys; s = os.environ['S'];"
            f" sys.stdout.write('a' * {before} + s + 'b' * {MAX_LINE_CHARS * 2} + '\\n')"
        )
        result = await LocalRunner().run(spec_of(code, secrets={"S": secret}), on_line=lines)
        assert result.exit_code == 0
        for _, line in lines.got:
            for size in (12, 24, 48):  # no fragment of it either
                assert not any(secret[i : i + size] in line for i in range(0, 48 - size + 1))
        assert (
            "".join(p.removesuffix(LINE_SPLIT_MARKER) for p in lines.of("stdout")).count("***") == 1
        )
