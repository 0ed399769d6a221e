"""The step contract: what a StepSpec accepts, what it refuses and how it says so."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import InvalidSpecError, Mount, StepSpec, mask_secrets
from adapters.contract import MASK, tail

BASE: dict[str, Any] = {"name": "step", "image": "python:3.12-slim", "args": ["python", "-V"]}


class TestStepSpecAccepts:
    def test_minimal_spec_has_safe_defaults(self) -> None:
        spec = StepSpec(**BASE)
        assert spec.env == {} and spec.secrets == {} and spec.mounts == {}
        assert spec.timeout_s == 3600 and spec.workdir is None

    def test_mount_shorthand_is_read_only(self) -> None:
        spec = StepSpec(**BASE, mounts={"/data": "/in", "/w": {"target": "/out", "writable": True}})
        assert spec.mounts["/data"] == Mount(target="/in", writable=False)
        assert spec.mounts["/w"].writable is True

    def test_container_paths_are_normalised(self) -> None:
        spec = StepSpec(**BASE, workdir="/work/", outputs={"/out/": "/host/out"})
        assert spec.workdir == "/work" and spec.outputs == {"/out": "/host/out"}

    def test_spec_is_frozen(self) -> None:
        spec = StepSpec(**BASE)
        with pytest.raises(Exception, match="frozen"):
            spec.name = "other"  # type: ignore[misc]


class TestStepSpecRefuses:
    @pytest.mark.parametrize(
        ("change", "field", "hint"),
        [
            ({"args": "python -V"}, "args", "list of strings"),
            ({"args": []}, "args", "give the command"),
            ({"name": "Bad Name"}, "name", "lower-case"),
            ({"image": "two words"}, "image", "name[:tag]"),
            ({"env": {"1X": "v"}}, "env", "environment variable name"),
            ({"workdir": "relative/path"}, "workdir", "absolute container path"),
            ({"mounts": {"/h": "rel"}}, "mounts", "absolute container path"),
            ({"outputs": {"out": "/h"}}, "outputs", "absolute container path"),
            ({"caches": {"bad name": "/c"}}, "caches", "cache name"),
            ({"timeout_s": 0}, "timeout_s", "greater than 0"),
            ({"env": {"A": "1"}, "secrets": {"A": "2"}}, "(top level)", "both env and secrets"),
            ({"mounts": {"/a": "/x"}, "caches": {"c": "/x"}}, "(top level)", "share a container"),
            ({"unknown": 1}, "unknown", "Extra inputs"),
        ],
    )
    def test_error_names_field_and_fix(self, change: dict[str, Any], field: str, hint: str) -> None:
        with pytest.raises(InvalidSpecError) as info:
            StepSpec.parse({**BASE, **change}, source="agents/x.yaml")
        message = str(info.value)
        assert message.startswith("agents/x.yaml: ")
        assert f"field '{field}" in message or (field == "(top level)" and "field" in message)
        assert hint in message

    def test_error_never_echoes_secret_values(self) -> None:
        with pytest.raises(InvalidSpecError) as info:
            StepSpec.parse({**BASE, "secrets": {"TOKEN": "s3cr3t-value", "1bad": "s3cr3t-value"}})
        assert "s3cr3t-value" not in str(info.value)


class TestSecrets:
    def test_secret_values_hidden_in_repr_and_dump(self) -> None:
        spec = StepSpec(**BASE, secrets={"TOKEN": "hunter2"})
        assert "hunter2" not in repr(spec)
        assert "hunter2" not in spec.model_dump_json()

    def test_redacted_command_masks_secret_values(self) -> None:
        spec = StepSpec(
            **{**BASE, "args": ["curl", "-H", "token hunter2"]}, secrets={"T": "hunter2"}
        )
        assert "hunter2" not in spec.redacted_command()
        assert MASK in spec.redacted_command()

    def test_mask_longest_secret_first(self) -> None:
        assert mask_secrets("abc abcdef", ["abcdef", "abc"]) == f"{MASK} {MASK}"


class TestTail:
    def test_short_text_is_kept_whole(self) -> None:
        assert tail("a\nb\n", 100) == "a\nb\n"

    def test_long_text_keeps_the_end_from_a_line_start(self) -> None:
        text = "".join(f"line {i}\n" for i in range(1000))
        kept = tail(text, 100)
        assert len(kept) <= 100 and kept.endswith("line 999\n") and kept.startswith("line ")
