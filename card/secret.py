"""Secrets as a type: the PIN, the PUK, the card management key and the SCEP challenge password.

A :class:`Secret` holds its value in a ``bytearray`` that only :meth:`Secret.reveal` (the APDU
encoders of VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and GENERAL AUTHENTICATE with the
management key) and :meth:`Secret.reveal_text` (the SCEP challengePassword encoder) hand out.
Everything else a program does with a value by accident shows nothing:

- ``repr``, ``str`` and every ``format`` spec give ``Secret(****)`` (so do tracebacks that show
  locals, log records and f-strings);
- ``pickle``, ``copy``, ``json.dumps`` and ``bytes(secret)`` raise ``TypeError``;
- ``==`` compares in constant time (:func:`hmac.compare_digest`); a Secret is not hashable.

:meth:`Secret.wipe` zeroes the bytes (best effort: CPython cannot promise that no copy of an
immutable ``str``/``bytes`` a caller made is left in memory; this module keeps none of its own).

:func:`harden_process` keeps secrets out of core dumps: ``RLIMIT_CORE`` 0 and, on Linux,
``prctl(PR_SET_DUMPABLE, 0)`` (prctl(2)), which also stops other processes of the same user from
reading this one's memory through ``/proc/PID/mem`` or ptrace.
"""

from __future__ import annotations

import hmac
import sys
from types import TracebackType
from typing import Any, NoReturn

_MASK = "Secret(****)"

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
"""prctl(2) options (linux/prctl.h)."""


class SecretWipedError(ValueError):
    """A :class:`Secret` was used after :meth:`Secret.wipe`: a programming error, never the card's."""


class Secret:
    """A secret value (PIN, PUK, management key, SCEP challenge password).

    Args:
        value: ``str`` (stored UTF-8 encoded; a string with lone surrogates, e.g. undecodable bytes
            read from a pipe, is kept as its ``surrogatepass`` bytes and :attr:`is_text` is False),
            or ``bytes``/``bytearray``/``memoryview`` (copied; :attr:`is_text` says whether they
            are valid UTF-8; a ``bytearray`` given here is not zeroed: its owner wipes it).

    Raises:
        TypeError: any other type (in particular another Secret: there is one holder per value).
    """

    __slots__ = ("_value", "_is_text", "_wiped", "__weakref__")

    def __init__(self, value: str | bytes | bytearray | memoryview) -> None:
        self._is_text = True
        if isinstance(value, str):
            try:
                self._value = bytearray(value, "utf-8")
            except UnicodeEncodeError:
                self._value = bytearray(value, "utf-8", "surrogatepass")
                self._is_text = False
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._value = bytearray(value)
            self._is_text = _valid_utf8(self._value)
        else:
            raise TypeError(f"a Secret is made from str or bytes, not {type(value).__name__}")
        self._wiped = False

    # -- the only ways out ---------------------------------------------------------------------
    def reveal(self) -> bytes:
        """The value as bytes, for the APDU encoder (and a cipher key). Raises SecretWipedError."""
        self._check()
        return bytes(self._value)

    def reveal_text(self) -> str:
        """The value as text (UTF-8), for the SCEP challengePassword encoder (RFC 8894 §3.2.1.4.1).

        Raises:
            SecretWipedError: after :meth:`wipe`; UnicodeDecodeError: not valid UTF-8.
        """
        self._check()
        return self._value.decode("utf-8")

    @property
    def is_text(self) -> bool:
        """False when it was made from a ``str`` that is not valid Unicode text (lone surrogates)."""
        return self._is_text

    def __len__(self) -> int:
        """Length in bytes (UTF-8 for text)."""
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def consists_of(self, characters: str) -> bool:
        """True when every character of the value is one of ``characters`` (e.g. ``ui.pin_characters``);
        an ASCII set is checked byte by byte, without a copy of the value. Raises SecretWipedError."""
        self._check()
        allowed = characters.encode("utf-8")
        if allowed.isascii():
            return all(byte in allowed for byte in self._value)
        try:
            return all(ch in characters for ch in self._value.decode("utf-8"))
        except UnicodeDecodeError:
            return False

    # -- lifetime --------------------------------------------------------------------------------
    def wipe(self) -> None:
        """Overwrite the value with zeros and forget it (idempotent)."""
        value = getattr(self, "_value", None)
        if value is not None:
            for i in range(len(value)):
                value[i] = 0
            value.clear()
        self._wiped = True

    @property
    def wiped(self) -> bool:
        return self._wiped

    def __enter__(self) -> Secret:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.wipe()

    def __del__(self) -> None:
        try:
            self.wipe()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _check(self) -> None:
        if self._wiped:
            raise SecretWipedError("this secret was already used and wiped")

    # -- nothing leaks by accident ---------------------------------------------------------------
    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)  # bytearrays: no immutable copies

    __hash__ = None  # type: ignore[assignment]  # unhashable on purpose; typeshed declares object.__hash__ a method

    def _refuse(self, *args: Any) -> NoReturn:
        raise TypeError("a Secret cannot be copied, pickled or serialised")

    __reduce__ = __reduce_ex__ = __getstate__ = __copy__ = __deepcopy__ = _refuse


def _valid_utf8(data: bytearray) -> bool:
    """Whether ``data`` is well-formed UTF-8 (RFC 3629 §4), checked in place: decoding would leave
    an immutable copy of the secret behind."""
    i, n = 0, len(data)
    while i < n:
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        if 0xC2 <= lead <= 0xDF:
            follow, low, high = 1, 0x80, 0xBF
        elif 0xE0 <= lead <= 0xEF:
            follow = 2
            low, high = (0xA0, 0xBF) if lead == 0xE0 else (0x80, 0x9F) if lead == 0xED else (0x80, 0xBF)
        elif 0xF0 <= lead <= 0xF4:
            follow = 3
            low, high = (0x90, 0xBF) if lead == 0xF0 else (0x80, 0x8F) if lead == 0xF4 else (0x80, 0xBF)
        else:
            return False
        if i + follow >= n:  # truncated sequence
            return False
        if not low <= data[i + 1] <= high or any(not 0x80 <= data[i + k] <= 0xBF for k in range(2, follow + 1)):
            return False
        i += follow + 1
    return True


def read_secret_line(fd: int) -> Secret:
    """One line from the file descriptor ``fd`` (e.g. standard input) as a Secret, read a byte at a
    time so that no buffer or string holds a copy of it; the line end (``\n`` or ``\r\n``) is
    dropped. At end of input without a newline, what was read is the line.

    Raises:
        OSError: ``fd`` cannot be read.
    """
    import os

    line = bytearray()
    try:
        while True:
            byte = os.read(fd, 1)  # 1-byte bytes objects are shared singletons in CPython: no copy
            if not byte or byte == b"\n":
                break
            line += byte
        if line.endswith(b"\r"):
            del line[-1]
        return Secret(line)
    finally:
        line[:] = bytes(len(line))


def require_secret(value: object, what: str) -> Secret:
    """``value`` when it is a :class:`Secret`; raises TypeError naming ``what`` otherwise (a plain
    ``str`` PIN reaching the card layer is a programming error)."""
    if not isinstance(value, Secret):
        raise TypeError(f"the {what} must be a card.secret.Secret, not {type(value).__name__}")
    return value


def harden_process() -> dict[str, bool]:
    """Keep secrets out of core dumps and other processes' reach, for the whole process.

    Sets ``RLIMIT_CORE`` to (0, 0) (setrlimit(2)) and, on Linux, ``prctl(PR_SET_DUMPABLE, 0)``
    (prctl(2)). Each is best effort: what could not be done is reported, never raised.

    Returns:
        ``{"core_limit": bool, "not_dumpable": bool}``: which of the two took effect.
    """
    done = {"core_limit": False, "not_dumpable": False}
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        done["core_limit"] = True
    except (ImportError, ValueError, OSError):
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            done["not_dumpable"] = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    return done


def process_dumpable() -> int | None:
    """``prctl(PR_GET_DUMPABLE)`` of this process (0 = not dumpable), or None where unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return None
