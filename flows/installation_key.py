"""The installation key: a random key, private to this installation, that keys secret hashes.

A step's cache key must change when one of its secret values changes, yet must not let anyone
who reads it (it is stored on the Prefect server with every task run) test guesses of the value.
So secret values enter the cache key only as HMAC-SHA256 under this key, never as plain hashes.

The key lives in the file the ``installation_key_file`` setting names, by default
``$XDG_CONFIG_HOME/aiop/installation.key`` (``~/.config/aiop/installation.key``). It is created on
first use (64 random hex digits, permissions 0600, its folder 0700) and never written to results,
logs or artifacts. Deleting it is safe: the next run makes a new one, and steps with secrets run
again instead of coming from the cache. Workers that should share cached results of steps with
secrets need the same key file.

Examples:
    >>> installation_key_path().name  # without a configured file
    'installation.key'
    >>> len(keyed_digest("TOKEN", "hunter2"))  # doctest: +SKIP
    64
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from adapters.errors import InvalidInputError
from adapters.settings import variable_name

__all__ = ["installation_key", "installation_key_path", "keyed_digest"]

_MIN_KEY_BYTES = 32
#: Keys read in this process, by the file they were read from.
_loaded: dict[Path, bytes] = {}
_lock = threading.Lock()


def installation_key_path(configured: Path | None = None) -> Path:
    """Where the installation key is kept: ``configured`` (the ``installation_key_file``
    setting) or the default under ``XDG_CONFIG_HOME``."""
    if configured is not None and str(configured).strip():
        return Path(configured).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "aiop" / "installation.key"


def installation_key(configured: Path | None = None) -> bytes:
    """The installation key in ``configured`` (else the default file), created (0600) on first use.

    Raises:
        InvalidInputError: the key file exists but is unreadable or too short to be a key.
    """
    path = installation_key_path(configured)
    with _lock:
        key = _loaded.get(path)
        if key is None:
            key = _read_or_create(path)
            _loaded[path] = key
        return key


def keyed_digest(name: str, value: str, key_file: Path | None = None) -> str:
    """HMAC-SHA256 of the secret ``value`` of variable ``name`` under the installation key
    (in ``key_file``, the ``installation_key_file`` setting; else the default file)."""
    message = name.encode() + b"\0" + value.encode()
    return hmac.new(installation_key(key_file), message, hashlib.sha256).hexdigest()


def _read_or_create(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = _create(path)
    except OSError as exc:
        raise InvalidInputError(
            f"the installation key {path} cannot be read ({exc.strerror}); make it readable by"
            f" this user, or point {variable_name('installation_key_file')} at another file"
        ) from None
    if len(key) < _MIN_KEY_BYTES:
        raise InvalidInputError(
            f"the installation key {path} holds {len(key)} bytes, fewer than {_MIN_KEY_BYTES};"
            " delete it (a new one is made on the next run) or copy a complete key file there"
        )
    return key


def _create(path: Path) -> bytes:
    """Write a new key next to ``path`` and link it into place, unless another process won."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # atomic, and never replaces a key another process made
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_bytes().strip()
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create the installation key {path} ({exc.strerror}); make its folder"
            f" writable, or point {variable_name('installation_key_file')} at a writable place"
        ) from None
