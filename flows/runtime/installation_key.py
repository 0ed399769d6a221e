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

What is read is checked, never trusted: the file must be a regular file (a FIFO, a device or a
folder is refused without reading it, so ``/dev/zero`` or a pipe cannot hang or fill memory), at
most :data:`MAX_KEY_FILE_BYTES`, and hold a key of the kind the platform writes: at least 64 hex
digits, not a run of one digit. A key other users may read is repaired to 0600 when this user owns
it (said in one line) and refused otherwise. Nothing here ever deletes or rewrites a key file.

Entry points that will run steps with secrets call :func:`check_installation_key` before any
work, so a bad key stops the command with one paragraph instead of Prefect's "Error encountered
when computing cache key" and a silently uncached step.

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
import logging
import os
import secrets
import stat
import string
import threading
from pathlib import Path

from adapters.errors import InvalidInputError
from adapters.settings import variable_name

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "check_installation_key",
    "installation_key",
    "installation_key_path",
    "keyed_digest",
]

#: The fewest hex digits a key holds (32 bytes of randomness, what the platform writes).
MIN_KEY_DIGITS = 64
#: The largest key file read; a longer file is refused without reading it whole.
MAX_KEY_FILE_BYTES = 4096
#: A random 64-digit key has about 16 distinct digits; fewer than this is not a random key.
_MIN_DISTINCT_DIGITS = 8
_HEX = frozenset(string.hexdigits.encode())

#: Keys read in this process, by the file they were read from.
_loaded: dict[Path, bytes] = {}
_lock = threading.Lock()
_log = logging.getLogger(__name__)


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
        InvalidInputError: the key file cannot be used as it is (see the module docstring); one
            paragraph says what is wrong with it and how to fix it.
    """
    return _load(installation_key_path(configured))[0]


def check_installation_key(configured: Path | None = None) -> str | None:
    """Make sure the installation key can be used, before steps with secrets run.

    Returns:
        One line to show when the key was repaired (its permissions tightened), else None.

    Raises:
        InvalidInputError: the key file cannot be used (one paragraph: what, where, the fix).
    """
    return _load(installation_key_path(configured))[1]


def keyed_digest(name: str, value: str, key_file: Path | None = None) -> str:
    """HMAC-SHA256 of the secret ``value`` of variable ``name`` under the installation key
    (in ``key_file``, the ``installation_key_file`` setting; else the default file)."""
    message = name.encode() + b"\0" + value.encode()
    return hmac.new(installation_key(key_file), message, hashlib.sha256).hexdigest()


def _load(path: Path) -> tuple[bytes, str | None]:
    with _lock:
        key = _loaded.get(path)
        if key is not None:
            return key, None
        try:
            key, note = _read(path)
        except FileNotFoundError:
            key, note = _create(path), None
        _loaded[path] = key
    if note:
        _log.warning("%s", note)
    return key, note


_FIX = (
    "delete it (a new one is made on the next run; steps with secrets then run once more instead"
    " of coming from the cache) or copy a complete key file there"
)


def _read(path: Path) -> tuple[bytes, str | None]:
    """The key in ``path`` and a note when its permissions were repaired.

    Opened without blocking and checked with ``fstat`` before a byte is read: a FIFO, a device or
    a folder is refused at once.

    Raises:
        FileNotFoundError: there is no key yet.
        InvalidInputError: the file cannot be used.
    """
    setting = variable_name("installation_key_file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InvalidInputError(
            f"the installation key {path} cannot be read ({exc.strerror}); make it readable by"
            f" this user, or point {setting} at another file"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _kind(info.st_mode)
            raise InvalidInputError(
                f"the installation key {path} is {kind}, not a regular file; it was not read."
                f" Point {setting} at a key file, or move the {kind.split()[-1]} away so that a"
                " new key is made there on the next run"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise InvalidInputError(
                f"the installation key {path} is {info.st_size:,} bytes, more than a key file"
                f" holds (at most {MAX_KEY_FILE_BYTES:,}); it was not read. Point {setting} at"
                f" the key file, or {_FIX}"
            )
        note = _tighten(path, fd, info) if os.name != "nt" and info.st_mode & 0o077 else None
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    return _parse(path, data), note


def _tighten(path: Path, fd: int, info: os.stat_result) -> str:
    """Repair a key that other users may read (when this user owns it); refuse otherwise."""
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        raise InvalidInputError(
            f"the installation key {path} has permissions {mode:04o}: other users may read it, and"
            " it belongs to another user, so they must change it (chmod 600), or point"
            f" {variable_name('installation_key_file')} at a copy of your own with permissions 0600"
        )
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        raise InvalidInputError(
            f"the installation key {path} has permissions {mode:04o} (other users may read it) and"
            f" they cannot be changed ({exc.strerror}); run chmod 600 on it"
        ) from None
    return (
        f"note: the installation key {path} had permissions {mode:04o} (other users could read"
        " it); they are now 0600. If someone may have read it, delete it: a new key is made and"
        " steps with secrets run once more."
    )


def _parse(path: Path, data: bytes) -> bytes:
    key = data.strip(b" \t\r\n")
    if len(key) < MIN_KEY_DIGITS:
        raise InvalidInputError(
            f"the installation key {path} holds {len(key)} bytes, fewer than a key"
            f" ({MIN_KEY_DIGITS} hex digits, as the platform writes); {_FIX}"
        )
    if not set(key) <= _HEX:
        bad = next(b for b in key if b not in _HEX)
        raise InvalidInputError(
            f"the installation key {path} is not a key: it holds the byte {bytes([bad])!r} where"
            f" a key has only hex digits (0-9, a-f, {MIN_KEY_DIGITS} or more); {_FIX}"
        )
    if len(set(key.lower())) < _MIN_DISTINCT_DIGITS:
        raise InvalidInputError(
            f"the installation key {path} uses only {len(set(key.lower()))} distinct digits: it is"
            f" not a random key and anyone could guess it; {_FIX}"
        )
    return key


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _create(path: Path) -> bytes:
    """Write a new key next to ``path`` and link it into place, unless another process won."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(MIN_KEY_DIGITS // 2) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # atomic, and never replaces a key another process made
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create the installation key {path} ({exc.strerror}); make its folder"
            f" writable, or point {variable_name('installation_key_file')} at a writable place"
        ) from None
    key, _ = _read(path)  # the one that won, checked like any other
    return key
