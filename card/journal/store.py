"""The journal file store: one JSON file per card in the state directory, read (a file that is not
a journal of this card is set aside, never deleted), written atomically, kept in the fallback
location when the state directory cannot take it; and the preflight of every file a renewal writes."""

from __future__ import annotations

import datetime as dt
import errno as errno_module
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from card import atomic
from card.atomic import write_atomic
from card.errors import StateFileError
from card.journal.audit import AuditLog
from card.journal.fallback import default_fallback_directory, fallback_tag, fallback_usable, save_fallback
from card.journal.records import Journal
from card.journal.statefiles import check_directory, state_file_error
from card.journal.validate import MAX_JOURNAL_BYTES, JournalFileError, parse_journal

logger = logging.getLogger("card.journal")  # the name the journal's warnings always had


@dataclass(frozen=True)
class SetAside:
    """A journal file that could not be used: where it was, where it went (None: could not be
    moved), and why, in words."""

    path: Path
    moved_to: Path | None
    reason: str

    def __str__(self) -> str:
        where = (f"it was set aside as {self.moved_to.name}" if self.moved_to is not None
                 else "it could not be set aside and is ignored")
        return (f"The journal {self.path} could not be used ({self.reason}); {where}. "
                "The card is treated as it is now.")


class JournalStore:
    """Journals in a directory, one file per card (``journal-<card_id>.json``, 0600).

    When the directory cannot take a journal (disk full, read-only, no permission) after the
    card changed, the journal is written to a fallback directory instead (a per-user tmpfs, see
    :func:`default_fallback_directory`), so that the update in hand can finish and the next run
    resumes from it; :meth:`load` takes the newer of the two, and the next successful save
    removes the fallback copy.

    Args:
        audit: where a set-aside journal is recorded (None: only :attr:`notices` says so).
        fallback: the fallback directory ("default": :func:`default_fallback_directory`; None: none).
    """

    def __init__(self, directory: Path, audit: AuditLog | None = None,
                 fallback: Path | str | None = "default") -> None:
        self.directory = Path(directory)
        self.audit = audit
        root = default_fallback_directory() if fallback == "default" else (Path(fallback) if fallback else None)
        self.fallback_root = root
        """The per-user fallback directory shared by every state directory (None: none)."""
        self.fallback = root / fallback_tag(self.directory) if root is not None else None
        """This state directory's own subdirectory of :attr:`fallback_root`: a run with another
        state directory never reads, moves or removes these journals."""
        self.notices: list[SetAside] = []
        """Journal files set aside since this store was made (for the caller to show)."""

    @staticmethod
    def file_name(card_id: str) -> str:
        safe = "".join(c for c in card_id if c.isascii() and (c.isalnum() or c in "-_"))[:160]
        return f"journal-{safe}.json"

    def path_for(self, card_id: str) -> Path:
        return self.directory / self.file_name(card_id)

    def fallback_path_for(self, card_id: str) -> Path | None:
        return self.fallback / self.file_name(card_id) if self.fallback is not None else None

    def _fallback_usable(self) -> bool:
        """See :func:`card.journal.fallback.fallback_usable`."""
        return fallback_usable(self.fallback_root, self.fallback, self.directory)

    def take_notices(self) -> list[SetAside]:
        """The notices not yet shown, and forget them."""
        notices, self.notices = self.notices, []
        return notices

    def load(self, card_id: str) -> Journal | None:
        """This card's journal (finished or not), or None when there is none.

        Never raises and never hangs: a file that is not a readable journal of this card (see
        :func:`parse_journal`; or a directory, FIFO, symlink, …) is renamed
        ``<name>.corrupt-<UTC time>``, recorded in :attr:`notices` and the audit log, and None
        is returned. A file that cannot be read at all (``EACCES``, ``EIO``) is left in place
        and reported the same way.
        """
        primary = self._load_file(self.path_for(card_id), card_id)
        fallback_path = self.fallback_path_for(card_id)
        if fallback_path is None or not self._fallback_usable() or atomic.kind_of(fallback_path) is None:
            return primary
        fallback = self._load_file(fallback_path, card_id)
        if fallback is None:
            return primary
        if primary is not None and _mtime(self.path_for(card_id)) > _mtime(fallback_path):
            return primary
        return fallback

    def _load_file(self, path: Path, card_id: str) -> Journal | None:
        kind = atomic.kind_of(path)
        if kind is None:
            return None
        if kind != "file":
            self._set_aside(path, f"a {kind}, not a regular file")
            return None
        try:
            data = atomic.read_regular(path, MAX_JOURNAL_BYTES)
        except FileNotFoundError:
            return None
        except atomic.FileTooLargeError:
            self._set_aside(path, f"larger than {MAX_JOURNAL_BYTES} bytes")
            return None
        except atomic.NotRegularFileError:
            self._set_aside(path, "not a regular file")
            return None
        except OSError as exc:
            if exc.errno == errno_module.ELOOP:  # replaced by a symlink since we looked
                self._set_aside(path, "a symlink, not a regular file")
            else:
                self._report(SetAside(path, None, f"it cannot be read: {exc.strerror or exc}"))
            return None
        try:
            return parse_journal(data, card_id)
        except JournalFileError as exc:
            self._set_aside(path, str(exc))
            return None

    def _set_aside(self, path: Path, reason: str) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            atomic.rename_aside(path, target)
        except OSError as exc:
            logger.warning("could not set aside the journal %s: %s", path, exc)
            self._report(SetAside(path, None, reason))
            return
        self._report(SetAside(path, target, reason))

    def _report(self, notice: SetAside) -> None:
        logger.warning("%s", notice)
        self.notices.append(notice)
        if self.audit is not None:
            self.audit.write_quietly(outcome="journal_set_aside", journal=str(notice.path),
                                     moved_to=str(notice.moved_to) if notice.moved_to else None,
                                     reason=notice.reason[:300])

    def save(self, journal: Journal, *, changed: bool = True) -> Path:
        """Write atomically (temp file, fsync, rename, fsync of the directory); then remove a
        fallback copy, if any.

        Args:
            changed: the card was changed in this run: when the state directory cannot take the
                journal, it is written to the fallback directory (the error says where).

        Raises:
            StateFileError: it could not be written to the state directory (the file there is the
                previous one); ``kept_at`` is the fallback copy's path, or None when there is none.
        """
        path = self.path_for(journal.card_id)
        text = journal.to_json()
        try:
            atomic.make_directory(self.directory)
            write_atomic(path, text)
        except OSError as exc:
            kept_at = self._save_fallback(journal.card_id, text) if changed else None
            error = state_file_error(exc, "the journal", path, changed=changed, kept_at=kept_at)
            if changed:
                error.kept_at = kept_at
                if error.kept_at is not None:
                    error.args = (f"{error.args[0]} (the journal is kept in {error.kept_at} until then)",)
            raise error from exc
        fallback_path = self.fallback_path_for(journal.card_id)
        if fallback_path is not None and atomic.kind_of(fallback_path) == "file":
            try:
                atomic.remove_file(fallback_path)
            except OSError as exc:  # the newer primary wins at load anyway
                logger.warning("could not remove the fallback journal %s: %s", fallback_path, exc)
        return path

    def set_aside(self, card_id: str, why: str, *, copy: bool = False) -> Path | None:
        """Keep this card's journal file under another name (``journal-<id>.json.set-aside-<UTC time>-<why>``),
        so that it is never resumed but stays for the RA to read. Returns the new path (None: no file).

        ``copy``: write a copy and leave the file in place (the caller saves the journal that goes on
        right after, so that a crash in between never loses a slot that is still in progress).

        Raises:
            OSError: the rename or the copy failed.
        """
        path = self.path_for(card_id)
        fallback_path = self.fallback_path_for(card_id)
        if atomic.kind_of(path) != "file" and fallback_path is not None and atomic.kind_of(fallback_path) == "file":
            path = fallback_path  # the journal in hand lives in the fallback directory
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        safe_why = "".join(c for c in why if c.isalnum() or c == "-")[:40]
        target = path.with_name(f"{path.name}.set-aside-{stamp}-{safe_why}")
        try:
            if copy:
                write_atomic(target, atomic.read_regular(path, MAX_JOURNAL_BYTES).decode("utf-8", "replace"))
            else:
                atomic.rename_aside(path, target)
                if fallback_path is not None and path != fallback_path and atomic.kind_of(fallback_path) == "file":
                    atomic.remove_file(fallback_path)  # an older copy would be resumed next time
        except FileNotFoundError:
            return None
        return target

    def _save_fallback(self, card_id: str, text: str) -> Path | None:
        return save_fallback(self.fallback_root, self.fallback, self.fallback_path_for(card_id), self.directory, text)

    def clear(self, card_id: str) -> None:
        """Remove the journal once every slot is done.

        Raises:
            StateFileError: it could not be removed (it is finished, so it is never resumed).
        """
        fallback_path = self.fallback_path_for(card_id)
        if fallback_path is not None and atomic.kind_of(fallback_path) == "file":
            try:
                atomic.remove_file(fallback_path)
            except OSError as exc:
                logger.warning("could not remove the fallback journal %s: %s", fallback_path, exc)
        path = self.path_for(card_id)
        try:
            atomic.remove_file(path)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise state_file_error(exc, "the journal", path, changed=True) from exc

    def journal_files(self) -> list[Path]:
        """The journal files of the state directory and of the fallback directory."""
        directories = [self.directory] + ([self.fallback] if self._fallback_usable() and self.fallback else [])
        files: list[Path] = []
        for directory in directories:
            try:
                files.extend(sorted(directory.glob("journal-*.json")))
            except OSError:
                continue
        return files

    def check_path(self, card_id: str) -> None:
        """The journal path holds a regular file that can be read and written, or nothing
        (anything else is set aside first).

        Raises:
            StateFileError: naming the path and the next step (nothing was changed).
        """
        path = self.path_for(card_id)
        if atomic.kind_of(path) is not None:
            self._load_file(path, card_id)  # anything that is not this card's journal is set aside now
        kind = atomic.kind_of(path)
        if kind not in (None, "file"):
            raise state_file_error(atomic.NotRegularFileError(errno_module.EINVAL, "not a regular file", str(path)),
                                   "the journal", path)
        if kind == "file" and not os.access(path, os.R_OK | os.W_OK):
            raise state_file_error(PermissionError(errno_module.EACCES, "permission denied", str(path)),
                                   "the journal", path)
        if kind == "file" and self._load_file(path, card_id) is None:
            # still there and not a journal: it could not be set aside, and a save would overwrite it
            raise StateFileError(f"the journal {path} is not a journal of this card and cannot be set aside; "
                                 "nothing was changed on the card", path=path, errno=errno_module.EACCES,
                                 next_step=f"Move {path} out of the way (ask your IT support), then run "
                                           "`cardrenew renew` again.")


    def flush_audit(self, audit: AuditLog, changed: bool = False) -> None:
        """Write the audit records kept in every journal of this directory (each once), then
        remove the finished journals and rewrite the others without them.

        Raises:
            StateFileError: the audit log or a journal could not be written.
        """
        for path in self.journal_files():
            if atomic.kind_of(path) != "file":
                continue
            try:
                journal = parse_journal(atomic.read_regular(path, MAX_JOURNAL_BYTES))
            except (OSError, JournalFileError):
                continue  # set aside when its card is read
            if path.name != self.file_name(journal.card_id):
                continue
            if path.parent != self.directory:  # a fallback copy: only the newer one counts
                current = self.load(journal.card_id)
                if current is None or current.to_json() != journal.to_json():
                    continue
            if journal.audit_pending:
                audit.flush(journal.audit_pending, changed=changed)
                journal.audit_pending = []
                if not journal.finished:
                    self.save(journal, changed=changed)  # into the state directory; the fallback copy goes
            if journal.finished:
                self.clear(journal.card_id)


def flush_kept_audit(journals: JournalStore, audit: AuditLog) -> StateFileError | None:
    """Best effort, at the start of every run: write the audit records an earlier run could not
    write (side file and journals), each once. Returns the error instead of raising it (the
    renewal's preflight insists; a status read or the TUI's start does not)."""
    try:
        audit.flush_side_file()
        journals.flush_audit(audit, changed=True)
    except StateFileError as exc:
        logger.warning("audit records kept from an earlier run are still not written: %s", exc)
        return exc
    return None


def prepare_state_files(journals: JournalStore, audit: AuditLog, card_id: str) -> None:
    """Preflight of every file a renewal writes (DESIGN §3.1), before anything is asked of the
    card or the CA: the state directory (and the audit log's, if another) exists or can be made,
    takes a test write and has room to spare; the journal and the audit log are regular files or
    absent; then the audit records kept from an earlier run that could not write them are
    written (each once), and finished journals are removed.

    Raises:
        StateFileError: naming the path and the next step; nothing was changed on the card.
    """
    check_directory(journals.directory)
    if Path(os.path.abspath(audit.path.parent)) != Path(os.path.abspath(journals.directory)):
        check_directory(audit.path.parent)
    journals.check_path(card_id)
    audit.check_path()
    audit.flush_side_file(changed=False)
    journals.flush_audit(audit, changed=False)


def _mtime(path: Path) -> int:
    try:
        return os.lstat(path).st_mtime_ns
    except OSError:
        return 0
