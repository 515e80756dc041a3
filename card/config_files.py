"""Reading the configuration's files (DESIGN §8): which file is in use, the TOML in it, and the
key files it names. Every read is bounded and never blocks on a FIFO or a device."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from card.atomic import mode_kind
from card.config_errors import ConfigError
from card.secret import Secret

MAX_KEY_FILE_BYTES = 4096
"""The most bytes a key file may hold (a 32-byte AES-256 key in hex with separators is ~100)."""


_KIND_WORDS = {"directory": "a directory", "fifo": "a FIFO, a named pipe", "socket": "a socket", "device": "a device"}


def _file_kind(mode: int) -> str:
    return _KIND_WORDS.get(mode_kind(mode), "an unknown kind of file")


def read_small_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, which must be (or be a symlink to) a regular file of at most
    ``limit`` bytes. Never blocks on a FIFO and never reads more than ``limit + 1`` bytes
    (``/dev/zero`` is refused by its type, a growing file by the cap).

    Raises:
        ConfigError: (without a path) "not found", "is not a regular file (a FIFO …)", "larger
            than N bytes" or "cannot be read (<strerror>)".
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as exc:
        raise ConfigError("not found") from exc
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"is not a regular file ({_file_kind(st.st_mode)})")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(limit + 1 - total, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ConfigError(f"is larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from exc
    finally:
        os.close(fd)


def read_hex_key_file(path: Path, what: str) -> Secret:
    """A key file's hex digits (``:`` and white space allowed between them) as a Secret.

    The file must be (or be a symlink to) a regular file of at most :data:`MAX_KEY_FILE_BYTES`.

    Raises:
        ConfigError: unreadable, not a regular file, too large, or not hex (the message names
            the file, never its content).
    """
    try:
        raw = bytearray(read_small_regular_file(path, MAX_KEY_FILE_BYTES))
    except ConfigError as exc:
        raise ConfigError(f"cannot read the {what} {path}: it {exc.detail}"
                          .replace("it not found", "not found")) from exc
    digits = bytearray(b for b in raw if b not in b": \t\r\n")
    raw[:] = bytes(len(raw))
    try:
        if len(digits) % 2 or any(b not in b"0123456789abcdefABCDEF" for b in digits):
            raise ConfigError(f"cannot read the {what} {path}: ValueError (not hex digits)")
        key = bytearray(int(digits[i : i + 2], 16) for i in range(0, len(digits), 2))
        try:
            return Secret(key)
        finally:
            key[:] = bytes(len(key))
    finally:
        digits[:] = bytes(len(digits))


MAX_CONFIG_BYTES = 1 << 20
"""A configuration file larger than this (1 MiB) is refused unread."""


def read_toml(path: Path) -> dict[str, Any]:
    """The file parsed as TOML (at most :data:`MAX_CONFIG_BYTES`).

    Raises:
        ConfigError: unreadable, too large, not UTF-8, not TOML, or nested too deeply (naming the file).
    """
    try:
        data = read_small_regular_file(path, MAX_CONFIG_BYTES)
    except ConfigError as exc:
        if exc.detail.startswith("is larger"):
            raise ConfigError(f"larger than {MAX_CONFIG_BYTES // 1024} KiB; this is not a cardrenew configuration",
                              path=path) from exc
        raise ConfigError(exc.detail.removeprefix("is "), path=path) from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark (Windows editors write one); TOML does not allow it
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); {exc.reason}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
    except RecursionError as exc:  # tomllib recurses once per nested array or inline table
        raise ConfigError("not valid TOML: arrays or inline tables nested too deeply", path=path) from exc


def find_config(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The configuration file to read, or None for built-in defaults.

    Raises:
        ConfigError: an explicitly named file does not exist.
    """
    if explicit:
        path = Path(explicit)
        try:
            mode = os.stat(path).st_mode  # follows a symlink; never opens (a FIFO does not block)
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"configuration file {path} cannot be read ({exc.strerror or exc})") from exc
        if not stat.S_ISREG(mode):
            raise ConfigError(f"configuration file {path} is not a regular file ({_file_kind(mode)})")
        return path
    env = os.environ.get("CARDRENEW_CONFIG")
    if env:
        return find_config(env)
    for candidate in (Path(platformdirs.user_config_dir("cardrenew")) / "config.toml", Path("/etc/cardrenew/config.toml")):
        if candidate.is_file():
            return candidate
        if candidate.exists():  # a FIFO, directory, device …: say so rather than silently use the defaults
            return find_config(candidate)
    return None
