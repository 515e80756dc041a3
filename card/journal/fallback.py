"""The fallback location of journals: where a journal goes when the state directory cannot take it
after the card changed (a per-user tmpfs), one subdirectory per state directory."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

from card import atomic
from card.atomic import write_atomic

logger = logging.getLogger("card.journal")  # the name the journal's warnings always had


def default_fallback_directory() -> Path | None:
    """Where a journal goes when the state directory cannot take it: ``$XDG_RUNTIME_DIR/cardrenew``
    (a per-user tmpfs), else ``/dev/shm/cardrenew-<uid>``; None when neither exists."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "cardrenew"
    if os.path.isdir("/dev/shm"):
        return Path("/dev/shm") / f"cardrenew-{os.getuid()}"
    return None


FALLBACK_OWNER_FILE = "state-directory"
"""The file in a fallback subdirectory that records the state directory it belongs to."""


def fallback_tag(directory: Path) -> str:
    """The name of a state directory's fallback subdirectory: ``state-<first 16 hex digits of the
    SHA-256 of its real path>`` (a symlink and its target share one)."""
    real = os.path.realpath(directory)
    return "state-" + hashlib.sha256(os.fsencode(real)).hexdigest()[:16]


def fallback_usable(root: Path | None, fallback: Path | None, directory: Path) -> bool:
    """The fallback directory and its root are ours alone (real directories, our uid, no
    group/other access), and it belongs to the state directory ``directory`` (its owner file,
    when there is one, names that state directory's real path)."""
    if fallback is None or root is None:
        return False
    for place in (root, fallback):
        try:
            st = os.lstat(place)
        except OSError:
            return False
        if not (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077):
            return False
    owner = fallback / FALLBACK_OWNER_FILE
    if atomic.kind_of(owner) is None:
        return True
    try:
        recorded = atomic.read_regular(owner, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return False
    return recorded == os.path.realpath(directory)


def save_fallback(root: Path | None, fallback: Path | None, fallback_path: Path | None, directory: Path,
                  text: str) -> Path | None:
    """Write a journal's text to ``fallback_path`` in the fallback directory of the state
    directory ``directory`` (made 0700, its owner file written first). Returns the path, or None
    when there is no usable fallback directory or the write failed (logged as a warning)."""
    if fallback_path is None or fallback is None:
        return None
    try:
        atomic.make_directory(fallback, 0o700)
        if not fallback_usable(root, fallback, directory):
            logger.warning("the fallback journal directory %s is not ours alone; not used", fallback)
            return None
        owner = fallback / FALLBACK_OWNER_FILE
        if atomic.kind_of(owner) is None:
            write_atomic(owner, os.path.realpath(directory) + "\n")
        write_atomic(fallback_path, text)
    except OSError as exc:
        logger.warning("could not keep the journal in the fallback directory %s: %s", fallback, exc)
        return None
    logger.warning("the journal is kept in %s until the state directory can take it", fallback_path)
    return fallback_path
