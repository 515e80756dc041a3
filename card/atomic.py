"""The one place where cardrenew changes files: crash-safe replacement (journal, the emulator's
state file), appending a line (audit log), removing, renaming aside, making the state directory,
and the preflight's probe write. Plus readers that never hang on a FIFO or follow a symlink.

Every operation here that changes a file passes one **fault point** first (:class:`WriteFault`,
test-only): tests make the N-th change fail with ``ENOSPC``/``EACCES``/``EROFS``/``EIO`` to prove
that a renewal ends on the documented error path whichever write fails. In-process tests install
a fault with :func:`set_write_fault`; the real program reads it from the environment:

``CARDRENEW_TEST_WRITE_FAULT=N:ERRNO[:once]``
    Fail the N-th change (1-based) and, unless ``once``, every later one ("the disk is full")
    with ``ERRNO`` (a name such as ``ENOSPC``). Test-only: never set it in production.
``CARDRENEW_TEST_WRITE_FAULT_UNDER=DIR``
    Count only changes to paths under DIR (e.g. the state directory, not a test card's file).
``CARDRENEW_TEST_WRITE_LOG=FILE``
    Append one line per change (``<n> <operation> <path>``) to FILE: how a sweep learns how many
    writes a renewal makes.

Errors are plain :class:`OSError` (with ``errno`` and ``filename``); callers turn them into the
user's words (:class:`card.errors.StateFileError`).
"""

from __future__ import annotations

import errno as errno_module
import fcntl
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV_FAULT = "CARDRENEW_TEST_WRITE_FAULT"
ENV_FAULT_UNDER = "CARDRENEW_TEST_WRITE_FAULT_UNDER"
ENV_WRITE_LOG = "CARDRENEW_TEST_WRITE_LOG"


class NotRegularFileError(OSError):
    """The path exists but is not a regular file (a directory, FIFO, socket, device or symlink)."""


class FileTooLargeError(OSError):
    """The file is larger than the reader's bound."""


@dataclass
class WriteFault:
    """Test-only fault hook: the ``at``-th change under ``under`` (1-based; 0 = never) fails with
    ``error`` (an errno number); so does every later one unless ``once``. ``count`` counts changes,
    ``operations`` lists them as ``(operation, path)``.

    ``log`` (a path) receives one line per change: ``<n> <operation> <path>``.
    """

    at: int = 0
    error: int = errno_module.ENOSPC
    once: bool = False
    under: Path | None = None
    log: Path | None = None
    only: tuple[str, ...] = ()
    """Count only these operations (``write``, ``append``, ``remove``, ``rename``, ``mkdir``,
    ``probe``); empty: all."""
    count: int = 0
    operations: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, operation: str, path: Path) -> None:
        """Count this change; raise ``OSError(error)`` when it is due to fail."""
        if self.only and operation not in self.only:
            return
        if self.under is not None:
            try:
                Path(os.path.abspath(path)).relative_to(os.path.abspath(self.under))
            except ValueError:
                return
        with self._lock:
            self.count += 1
            n = self.count
            self.operations.append((operation, str(path)))
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as fh:  # the test's own log, not a fault point
                fh.write(f"{n} {operation} {path}\n")
        if self.at and (n == self.at or (not self.once and n > self.at)):
            raise OSError(self.error, f"{os.strerror(self.error)} (test fault at write {n}: {operation})", str(path))


def _fault_from_env() -> WriteFault | None:
    spec = os.environ.get(ENV_FAULT, "")
    log = os.environ.get(ENV_WRITE_LOG)
    if not spec and not log:
        return None
    at, error, once = 0, errno_module.ENOSPC, False
    if spec:
        parts = spec.split(":")
        at = int(parts[0])
        if len(parts) > 1 and parts[1]:
            error = getattr(errno_module, parts[1].upper())
        once = len(parts) > 2 and parts[2] == "once"
    under = os.environ.get(ENV_FAULT_UNDER)
    return WriteFault(at, error, once, Path(under) if under else None, Path(log) if log else None)


_fault: WriteFault | None = _fault_from_env()


def set_write_fault(fault: WriteFault | None) -> WriteFault | None:
    """Install (or remove, with None) the test-only fault hook; returns the previous one."""
    global _fault
    previous, _fault = _fault, fault
    return previous


def _fault_point(operation: str, path: Path) -> None:
    if _fault is not None:
        _fault.check(operation, path)


def _fsync_directory(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` (UTF-8): temp file in the same directory, fsync, chmod, rename,
    then fsync of the directory, so a crash leaves either the old or the new file, never a mix.

    Raises:
        OSError: the file could not be written (``ENOSPC``, ``EACCES``, ``EROFS``, ``EIO``, …);
            the old file is then untouched and no temp file is left behind.
    """
    path = Path(path)
    _fault_point("write", path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(path.parent)


def append_line(path: Path, line: str, mode: int = 0o600) -> None:
    """Append one line (``line`` without its newline) to ``path``, creating it with ``mode``.

    The file must be a regular file (never follows a symlink, never blocks on a FIFO). When the
    file does not end with a newline (an earlier append was torn), a newline is written first, so
    the torn fragment stays a line of its own. A write that fails half way is cut back.

    Raises:
        NotRegularFileError: the path is a directory, FIFO, symlink, …; OSError: as :func:`write_atomic`.
    """
    append_line_after(path, lambda _last: line, mode)


MAX_LAST_LINE_BYTES = 64 << 10
""":func:`append_line_after` looks this far back (64 KiB) for the previous line; a longer one is
passed on as its last 64 KiB."""


@dataclass(frozen=True)
class Appended:
    """What :func:`append_line_after` wrote: the line's bytes (no newline) and the file's size after it."""

    line: bytes
    size: int


def append_line_after(path: Path, make_line: Callable[[bytes | None], str], mode: int = 0o600) -> Appended:
    """Append the line ``make_line(previous line)`` to ``path`` under an exclusive ``flock``, so two
    programs appending at once (the TUI and a ``renew``) each see the other's line as the previous one.

    ``make_line`` gets the file's last line without its newline (a torn fragment counts as a line:
    it is ended with a newline first), b"" for an empty file, or None when the file cannot be read
    back (opened write-only); it returns the new line without its newline.

    Raises:
        NotRegularFileError: the path is a directory, FIFO, symlink, …; OSError: as :func:`write_atomic`.
    """
    path = Path(path)
    _fault_point("append", path)
    flags = os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    readable = True
    try:
        fd = os.open(path, os.O_RDWR | flags, mode)
    except PermissionError:  # a log we may append to but not read: no torn-line check
        fd = os.open(path, os.O_WRONLY | flags, mode)
        readable = False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno_module.EINVAL, "not a regular file", str(path))
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
        size = os.fstat(fd).st_size  # after the lock: another writer may have appended meanwhile
        last = _last_line(fd, size) if readable else None
        torn = readable and size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        line = make_line(last).replace("\n", " ").encode("utf-8")
        data = (b"\n" if torn else b"") + line + b"\n"
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise
        return Appended(line, size + len(data))
    finally:
        os.close(fd)


def _last_line(fd: int, size: int) -> bytes:
    """The last line of the open file (without its newline; b"" for an empty file)."""
    if size == 0:
        return b""
    start = max(0, size - MAX_LAST_LINE_BYTES - 1)
    tail = os.pread(fd, size - start, start)
    if tail.endswith(b"\n"):
        tail = tail[:-1]
    cut = tail.rfind(b"\n")
    return tail[cut + 1:] if cut >= 0 else tail


def remove_file(path: Path) -> bool:
    """Remove ``path`` (not a directory); False when it was not there.

    Raises:
        OSError: it could not be removed (``EACCES``, ``EROFS``, …).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return False
    _fault_point("remove", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_directory(path.parent)
    return True


def rename_aside(path: Path, new_path: Path) -> None:
    """Rename ``path`` (whatever it is: file, directory, FIFO, the symlink itself) to ``new_path``.

    Raises:
        FileExistsError: ``new_path`` exists (nothing is overwritten); OSError: as :func:`write_atomic`.
    """
    path, new_path = Path(path), Path(new_path)
    _fault_point("rename", path)
    if os.path.lexists(new_path):
        raise FileExistsError(errno_module.EEXIST, "already exists", str(new_path))
    os.rename(path, new_path)
    _fsync_directory(path.parent)


def make_directory(path: Path, mode: int = 0o700) -> None:
    """Create ``path`` and its parents when missing, each one with ``mode`` (default 0700: a
    state directory lists card GUIDs; ``Path.mkdir(parents=True)`` would make the parents 0755).
    Directories that already exist are left as they are.

    Raises:
        NotADirectoryError / FileExistsError: something else is in the way; OSError: as :func:`write_atomic`.
    """
    path = Path(path)
    if path.is_dir():
        return
    _fault_point("mkdir", path)
    missing: list[Path] = []
    probe = path.absolute()
    while not probe.is_dir() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not directory.is_dir():
                raise


def probe_directory(directory: Path) -> None:
    """Prove that a file can be created, written, synced and removed in ``directory`` (the
    preflight's test write; it is removed again).

    Raises:
        OSError: as :func:`write_atomic`.
    """
    directory = Path(directory)
    _fault_point("probe", directory / ".probe")
    fd, tmp = tempfile.mkstemp(prefix=".cardrenew-probe-", dir=directory)
    try:
        os.write(fd, b"probe\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def free_space(directory: Path) -> tuple[int, int | None]:
    """(bytes available to this user, inodes available or None when the file system has no limit)
    on the file system holding ``directory`` (``statvfs``).

    Raises:
        OSError: the directory cannot be examined.
    """
    st = os.statvfs(directory)
    inodes = st.f_favail if st.f_files else None
    return st.f_bavail * st.f_frsize, inodes


def read_regular(path: Path, limit: int, *, tail: bool = False) -> bytes:
    """The bytes of ``path``, a regular file (no symlink followed; a FIFO never blocks).

    Args:
        limit: most bytes read; a larger file raises :class:`FileTooLargeError`, or with
            ``tail=True`` only its last ``limit`` bytes are returned.

    Raises:
        FileNotFoundError; NotRegularFileError; FileTooLargeError; OSError (``EACCES``, ``EIO``, ``ELOOP`` …).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno_module.EINVAL, "not a regular file", str(path))
        start = 0
        if st.st_size > limit:
            if not tail:
                raise FileTooLargeError(errno_module.EFBIG, f"larger than {limit} bytes", str(path))
            start = st.st_size - limit
        chunks: list[bytes] = []
        remaining = limit
        offset = start
        while remaining > 0:
            chunk = os.pread(fd, min(remaining, 1 << 20), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def kind_of(path: Path) -> str | None:
    """What is at ``path`` without following a symlink: ``"file"``, ``"directory"``, ``"symlink"``,
    ``"fifo"``, ``"socket"``, ``"device"``, ``"other"``, or None when nothing is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    return mode_kind(st.st_mode)


def mode_kind(mode: int) -> str:
    """The kind of file an ``st_mode`` names: ``"file"``, ``"directory"``, ``"symlink"``, ``"fifo"``,
    ``"socket"``, ``"device"`` (character or block), or ``"other"``."""
    for test, kind in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"),
                       (stat.S_ISBLK, "device")):
        if test(mode):
            return kind
    return "other"
