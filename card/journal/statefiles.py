"""The state directory's preflight and the user's words for a file we keep that cannot be written
(``ENOSPC``, ``EACCES``, ``EROFS``, ``EIO``, something other than a regular file in its place)."""

from __future__ import annotations

import errno as errno_module
import getpass
import os
from pathlib import Path

from card import atomic
from card.errors import StateFileError

STATE_FREE_BYTES = 1 << 20
"""Preflight wants this much free space (1 MiB) where the journal and audit log are written:
a journal with its atomic copy is a few tens of kilobytes, an audit line under one."""
STATE_FREE_INODES = 16


def state_file_error(exc: OSError, what: str, path: Path, *, changed: bool = False,
                     kept_at: Path | None = None) -> StateFileError:
    """The user's words for an ``OSError`` on one of our files.

    Args:
        what: "the journal", "the audit log", "the state directory".
        changed: the card was already changed in this run (the journal must stay where it is).
        kept_at: where the journal was written instead (the fallback directory), if anywhere.
    """
    directory = path if what == "the state directory" else path.parent
    code = exc.errno
    name = errno_module.errorcode.get(code, "") if code is not None else ""
    again = ("then run `cardrenew renew` again: it resumes where it stopped (the journal is kept in "
             f"{directory})" if changed else "then run `cardrenew renew` again")
    if changed and kept_at is not None:
        again = ("then run `cardrenew renew` again: it resumes where it stopped (until then the journal is kept "
                 f"in {kept_at}, which is lost if the computer restarts)")
    if isinstance(exc, atomic.NotRegularFileError):
        kind = atomic.kind_of(path) or "special file"
        why = f"{path} is a {kind}, not a regular file"
        step = f"Move {path} out of the way (ask your IT support), {again}."
    elif code in (errno_module.ENOSPC, errno_module.EDQUOT):
        why = f"the disk holding {directory} is full ({name})"
        step = f"Free space on the disk holding {directory} (ask your IT support), {again}."
    elif code in (errno_module.EACCES, errno_module.EPERM):
        why = f"permission denied ({name})"
        user = _user()
        step = f"Make {path} writable for the user {user} (ask your IT support), {again}."
    elif code == errno_module.EROFS:
        why = f"the file system holding {directory} is read-only ({name})"
        step = (f"Ask your IT support to make {directory} writable, {again}." if changed else
                f"Ask your IT support to make {directory} writable (or set XDG_STATE_HOME to a writable "
                f"directory), {again}.")
    elif code == errno_module.EIO:
        why = f"the disk reported an input/output error ({name})"
        step = f"Ask your IT support to check the disk holding {directory}, {again}."
    elif isinstance(exc, (NotADirectoryError, FileExistsError)) and what == "the state directory":
        why = f"{exc.filename or path} is in the way (not a directory)"
        step = f"Move {exc.filename or path} out of the way (ask your IT support), {again}."
    else:
        why = exc.strerror or str(exc)
        step = f"Check {path} (ask your IT support), {again}."
    message = f"could not write {what} {path}: {why}"
    if not changed:
        message += "; nothing was changed on the card"
    return StateFileError(message, path=path, errno=code, next_step=step)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry
        return str(os.getuid())


def check_directory(directory: Path) -> None:
    """The state directory exists (or is made, 0700), is a directory, takes a test write, and has
    :data:`STATE_FREE_BYTES` and :data:`STATE_FREE_INODES` free.

    Raises:
        StateFileError: naming the directory and the next step (nothing was changed).
    """
    directory = Path(directory)
    try:
        atomic.make_directory(directory)
        if not directory.is_dir():
            raise NotADirectoryError(errno_module.ENOTDIR, "not a directory", str(directory))
        atomic.probe_directory(directory)
        free, inodes = atomic.free_space(directory)
    except OSError as exc:
        raise state_file_error(exc, "the state directory", directory) from exc
    if free < STATE_FREE_BYTES or (inodes is not None and inodes < STATE_FREE_INODES):
        have = f"{free // 1024} KiB free" + (f" ({inodes} inodes)" if inodes is not None else "")
        raise StateFileError(
            f"could not write the state directory {directory}: the disk holding it has {have}, less than the "
            f"{STATE_FREE_BYTES // 1024} KiB and {STATE_FREE_INODES} inodes a renewal needs; nothing was changed on the card",
            path=directory, errno=errno_module.ENOSPC,
            next_step=f"Free space on the disk holding {directory} (ask your IT support), then run `cardrenew renew` again.")
