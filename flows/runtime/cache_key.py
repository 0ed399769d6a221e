"""A step's cache key, computed once per step run.

The key hashes the spec (secret values only as HMACs under the installation key,
:mod:`flows.runtime.installation_key`) and a fingerprint of every mounted host path: the name, size
and modification time of each file below it (bytecode left out). Walking the mounts is the costly
part, so it happens once per step run, when a :class:`StepKey` is made; the key of the spec that
runs is then computed once from it and handed to the task run and to the cache lookup. A caller
that shapes the spec before it runs (the pipeline names its output folder after the key,
``prepare`` in :func:`flows.runtime.agent_run.run_agent`) asks the same :class:`StepKey` for the key
of the spec as it was and as it became, without walking again.

Examples:
    >>> from adapters import StepSpec
    >>> spec = StepSpec(name="hello", image="python:3.12-slim", args=["echo", "hi"])
    >>> StepKey(spec).of(spec).startswith("hello-")
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from adapters.contract import StepSpec
from flows.runtime.installation_key import keyed_digest

__all__ = ["CACHE_VERSION", "StepKey", "fingerprint", "step_cache_key"]

#: Bump when the meaning of a cached StepResult changes, to invalidate every cached step.
CACHE_VERSION = "1"


class StepKey:
    """What a step's cache key is made of, gathered once: its mounts' fingerprint and the HMACs of
    its secret values.

    Args:
        spec: the step (its mounts are walked and its secrets keyed now).
        key_file: the installation key file (the ``installation_key_file`` setting; None: the
            default place).
    """

    def __init__(self, spec: StepSpec, key_file: Path | None = None) -> None:
        self._mounts = sorted(spec.mounts)
        inputs = hashlib.sha256()
        for host in self._mounts:
            inputs.update(host.encode())
            for entry in fingerprint(Path(host)):
                inputs.update(entry.encode())
        self._inputs = inputs.hexdigest()
        self._secrets = {
            name: keyed_digest(name, value.get_secret_value(), key_file)
            for name, value in sorted(spec.secrets.items())
        }
        self._key_file = key_file

    def of(self, spec: StepSpec) -> str:
        """The cache key of ``spec``: ``<name>-<32 hex digits>``.

        ``spec`` may differ from the one gathered in anything but its mounts and secret values
        (its outputs, environment, requirements); a spec with other mounts or secrets is gathered
        anew.
        """
        if sorted(spec.mounts) != self._mounts or set(spec.secrets) != set(self._secrets):
            return StepKey(spec, self._key_file).of(spec)
        data = spec.model_dump(mode="json", exclude={"secrets"})
        data["secrets"] = self._secrets
        digest = hashlib.sha256(CACHE_VERSION.encode())
        digest.update(json.dumps(data, sort_keys=True).encode())
        digest.update(self._inputs.encode())
        return f"{spec.name}-{digest.hexdigest()[:32]}"


def step_cache_key(spec: StepSpec, key_file: Path | None = None) -> str:
    """The cache key of ``spec`` (a :class:`StepKey` made and asked once).

    A secret value enters the key only as an HMAC under the installation key, so the key (stored
    on the Prefect server) cannot be used to test guesses of it without that key file. The
    settings are not part of the key.
    """
    return StepKey(spec, key_file).of(spec)


def fingerprint(path: Path) -> Iterator[str]:
    """Name, size and modification time of ``path`` and everything below it (bytecode ignored)."""
    if path.is_file():
        st = path.stat()
        yield f"{path.name}:{st.st_size}:{st.st_mtime_ns}"
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = Path(root, name)
            st = full.stat()
            yield f"{full.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}"
