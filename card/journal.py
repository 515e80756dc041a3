"""The renewal journal (DESIGN §3.4) and the audit log (DESIGN §8).

The journal is one JSON file per card, written atomically before and after each destructive step,
so that a renewal interrupted anywhere can be resumed. It holds grants, generated public keys,
CSRs and issued certificates — never a PIN, PUK or management key. The audit log is JSON lines,
appended. Both live under the XDG state directory, mode 0600.

Journal file (``journal-<card id>.json``, UTF-8 JSON, at most :data:`MAX_JOURNAL_BYTES`)::

    {"version": 1, "card_id": "<CHUID GUID hex, or cert-<fingerprint>>", "reference": "CR-XXXXXX",
     "started": "<ISO 8601>", "audit_pending": [<audit records not yet in the audit log>],
     "slots": {"9A": {"slot": "9A", "step": "planned|authorised|generating|generated|issued|written|done",
                      "old_fingerprint": str|null, "old_certificate_pem": str|null, "grant": {str: str}|null,
                      "public_key_pem": str|null, "csr_pem": str|null, "certificate_pem": str|null,
                      "error": str|null}, ...}}

:func:`parse_journal` accepts exactly that (the field types are read from the :class:`Journal` and
:class:`SlotJournal` data model) and raises :class:`JournalFileError` for anything else. A journal
file that does not parse — or is not a regular file at all (a directory, a FIFO, a symlink) — is
renamed ``<name>.corrupt-<UTC time>`` (never deleted), reported in words and in the audit log, and
the run goes on as if there were no journal.

Audit line: one JSON object per line with ``time`` (ISO 8601 UTC), ``event_id``, ``terminal``,
``ssh_client``, and the event's fields (``reference``, ``card_guid``, ``slot``, ``outcome``,
``error_code``, ``old_serial``, ``old_not_after``, ``new_serial``, ``new_not_after``; ``written_late``
when it was written by a later run because the log could not be written at the time).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import errno as errno_module
import getpass
import hashlib
import json
import logging
import os
import secrets
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from card import atomic
from card.atomic import write_atomic
from card.errors import StateFileError

logger = logging.getLogger(__name__)

JOURNAL_VERSION = 1

class JournalStep(enum.StrEnum):
    """A slot's step in the journal, in order; the value is the string written to the file.

    A slot's ``step`` is the last one *completed*, except :attr:`GENERATING`, which is written
    before GENERATE is sent (the slot's key is then unknown until probed), and :attr:`ENDED`.
    """

    PLANNED = "planned"
    AUTHORISED = "authorised"
    GENERATING = "generating"
    GENERATED = "generated"
    ISSUED = "issued"
    WRITTEN = "written"
    DONE = "done"
    ENDED = "ended"
    """Final without a renewal: the card or the CA refused this slot before anything in it changed,
    so there is nothing to resume (issue 11 item 2: no resume loops)."""


# The names importers used before the enum (each is the enum member).
STEP_PLANNED = JournalStep.PLANNED
STEP_AUTHORISED = JournalStep.AUTHORISED
STEP_GENERATING = JournalStep.GENERATING
STEP_GENERATED = JournalStep.GENERATED
STEP_ISSUED = JournalStep.ISSUED
STEP_WRITTEN = JournalStep.WRITTEN
STEP_DONE = JournalStep.DONE
STEP_ENDED = JournalStep.ENDED
FINAL_STEPS = (JournalStep.DONE, JournalStep.ENDED)
IN_PROGRESS_STEPS = (JournalStep.GENERATING, JournalStep.GENERATED, JournalStep.ISSUED, JournalStep.WRITTEN)
"""Steps at which the slot's old key may be gone: only a resume can finish the slot."""
STEPS = tuple(JournalStep)

MAX_JOURNAL_BYTES = 1 << 20
"""A journal larger than this (1 MiB) is not ours: it is set aside unread."""
MAX_AUDIT_LINE_BYTES = 64 << 10
"""An audit line longer than this (64 KiB) is skipped as foreign."""
MAX_AUDIT_READ_BYTES = 16 << 20
"""``cardrenew audit`` reads at most the last 16 MiB of the log."""
STATE_FREE_BYTES = 1 << 20
"""Preflight wants this much free space (1 MiB) where the journal and audit log are written:
a journal with its atomic copy is a few tens of kilobytes, an audit line under one."""
STATE_FREE_INODES = 16


def new_reference() -> str:
    """A short reference code the user can quote to the RA, e.g. ``CR-7K2QX9``."""
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "CR-" + "".join(secrets.choice(alphabet) for _ in range(6))


@dataclass
class SlotJournal:
    """What is known about one slot's renewal. PEM strings; ``grant`` as a dict."""

    slot: str
    old_fingerprint: str | None = None
    old_certificate_pem: str | None = None
    step: JournalStep = JournalStep.PLANNED
    grant: dict[str, str] | None = None
    public_key_pem: str | None = None
    csr_pem: str | None = None
    certificate_pem: str | None = None
    error: str | None = None

    @property
    def issued_fingerprint(self) -> str | None:
        """SHA-256 (hex) of the certificate the CA issued for this slot, once known."""
        if not self.certificate_pem:
            return None
        from card.certificates import fingerprint
        from cryptography import x509

        return fingerprint(x509.load_pem_x509_certificate(self.certificate_pem.encode()))

    def expected_fingerprints(self) -> set[str]:
        """Fingerprints of the certificates this journal may find in the slot (DESIGN §3.4): the
        old certificate, and the issued one once known. Anything else was written by someone else."""
        return {fp for fp in (self.old_fingerprint, self.issued_fingerprint) if fp}

    @property
    def in_progress(self) -> bool:
        """The old key may be gone (GENERATE was sent): only a resume can finish this slot."""
        return self.step in IN_PROGRESS_STEPS


@dataclass
class Journal:
    """The journal of one renewal of one card (matched by ``card_id``: the CHUID GUID)."""

    card_id: str
    reference: str = field(default_factory=new_reference)
    started: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    slots: dict[str, SlotJournal] = field(default_factory=dict)
    version: int = JOURNAL_VERSION
    audit_pending: list[dict[str, Any]] = field(default_factory=list)
    """Audit records not yet known to be in the audit log (written with ``event_id`` so that a
    later run writes each exactly once); see :meth:`AuditLog.flush`."""

    @property
    def finished(self) -> bool:
        """Every slot is done or ended (nothing left to resume)."""
        return all(s.step in FINAL_STEPS for s in self.slots.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Journal:
        """Parse a journal; see :func:`parse_journal` (this is the same, for text).

        Raises:
            JournalFileError: anything but a well-formed journal.
        """
        return parse_journal(text.encode("utf-8", "surrogatepass"))


# -- parsing ----------------------------------------------------------------------------------
class JournalFileError(ValueError):
    """A journal file is not a journal this version can resume from (the reason in words)."""


def parse_journal(data: bytes, card_id: str | None = None) -> Journal:
    """Parse the bytes of a journal file (schema in the module docstring).

    Args:
        card_id: when given, the journal must be this card's.

    Returns:
        The journal, every field of the type the data model gives it, every slot a PIV slot
        written as the field writes it (``9A``), every step a known step, every PEM parsing.

    Raises:
        JournalFileError: not UTF-8, not JSON, nested too deeply, too large, not an object, a
            missing or unknown field, a field of the wrong type, an unknown slot or step, a PEM
            that does not parse, another card's journal, or another journal version.
    """
    if len(data) > MAX_JOURNAL_BYTES:
        raise JournalFileError(f"larger than {MAX_JOURNAL_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JournalFileError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except RecursionError:
        raise JournalFileError("not JSON (nested too deeply)") from None
    except ValueError as exc:
        raise JournalFileError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise JournalFileError(f"not a journal (a JSON {type(raw).__name__}, not an object)")
    if raw.get("version") != JOURNAL_VERSION or isinstance(raw.get("version"), bool):
        raise JournalFileError(f"journal version {raw.get('version')!r}; this version of cardrenew reads {JOURNAL_VERSION}")
    fields = _check_fields(raw, Journal, "journal")
    slots_raw = fields.get("slots", {})
    slots: dict[str, SlotJournal] = {}
    for name, value in slots_raw.items():
        slots[name] = _parse_slot(name, value)
    fields["slots"] = slots
    journal = Journal(**fields)
    if not journal.card_id or len(journal.card_id) > 200:
        raise JournalFileError("the card id is empty or too long")
    if card_id is not None and journal.card_id != card_id:
        raise JournalFileError(f"the journal of another card ({journal.card_id[:40]})")
    for record in journal.audit_pending:
        try:
            _check_audit_record(record)
        except AuditLineError as exc:
            raise JournalFileError(f"a kept audit record is {exc}") from None
    return journal


def _parse_slot(name: str, value: object) -> SlotJournal:
    from card.piv import Slot

    try:
        slot = Slot.parse(name)
    except (ValueError, TypeError):
        raise JournalFileError(f"names slot {name[:16]!r}, which is not a PIV key slot") from None
    if slot.hex != name:
        raise JournalFileError(f"names slot {name[:16]!r} (written {slot.hex} by cardrenew)")
    if not isinstance(value, dict):
        raise JournalFileError(f"slot {name}: not an object")
    fields = _check_fields(value, SlotJournal, f"slot {name}")
    if fields["slot"] != name:
        raise JournalFileError(f"slot {name} says it is slot {str(fields['slot'])[:16]!r}")
    step = fields.get("step", JournalStep.PLANNED)
    if step not in STEPS:
        raise JournalFileError(f"slot {name}: unknown step {str(step)[:32]!r}")
    fields["step"] = JournalStep(step)
    sj = SlotJournal(**fields)
    _check_pem(sj, name)
    if sj.grant is not None:
        for key in ("grant_id", "slot", "subject_der_hex", "old_certificate_fingerprint", "expires"):
            if key not in sj.grant:
                raise JournalFileError(f"slot {name}: the grant has no {key}")
        try:
            expires = dt.datetime.fromisoformat(sj.grant["expires"])
            bytes.fromhex(sj.grant["subject_der_hex"])
        except ValueError:
            raise JournalFileError(f"slot {name}: the grant's expiry or subject is malformed") from None
        if expires.tzinfo is None:
            raise JournalFileError(f"slot {name}: the grant's expiry has no time zone")
    return sj


def _check_pem(sj: SlotJournal, name: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from card.certificates import load_certificate_pem  # also a negative serial (an old CA's), as the engine reads it

    loaders = {
        "old_certificate_pem": load_certificate_pem,
        "certificate_pem": load_certificate_pem,
        "public_key_pem": serialization.load_pem_public_key,
        "csr_pem": x509.load_pem_x509_csr,
    }
    for attr, load in loaders.items():
        text = getattr(sj, attr)
        if text is None:
            continue
        try:
            loaded = load(text.encode("utf-8"))
            if attr.endswith("certificate_pem"):
                loaded.public_key()  # an unsupported or broken key fails here, not in the engine
                loaded.not_valid_after_utc  # noqa: B018 - a broken validity fails here
                _ = loaded.subject.rfc4514_string()
        except Exception:  # noqa: BLE001 - cryptography raises ValueError, TypeError, UnsupportedAlgorithm …
            raise JournalFileError(f"slot {name}: {attr} does not parse") from None


def _check_fields(raw: dict[str, Any], cls: type, where: str) -> dict[str, Any]:
    """The object's fields, each checked against the data model's type hint."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise JournalFileError(f"{where}: unknown field {str(key)[:40]!r}")
        if not _conforms(value, hints[key]):
            raise JournalFileError(f"{where}: {key} is not a {_type_words(hints[key])}")
        out[key] = value
    for name, f in known.items():
        if name not in out and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise JournalFileError(f"{where}: no {name}")
    return out


def _conforms(value: object, hint: object) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, float):
        return isinstance(value, hint)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return isinstance(value, str)  # which member: checked by the caller, in its own words
    if origin is dict:
        key_hint, value_hint = args or (Any, Any)
        if not isinstance(value, dict):
            return False
        if dataclasses.is_dataclass(value_hint):
            return all(_conforms(k, key_hint) for k in value)  # checked by their own parser
        return all(_conforms(k, key_hint) and _conforms(v, value_hint) for k, v in value.items())
    if origin is list:
        (item_hint,) = args or (Any,)
        return isinstance(value, list) and all(_conforms(v, item_hint) for v in value)
    return False


def _type_words(hint: object) -> str:
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return "str"
    return str(hint).replace("typing.", "")


# -- the journal store ------------------------------------------------------------------------
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
        """The fallback directory and its root are ours alone (real directories, our uid, no
        group/other access), and it belongs to this state directory (its owner file, when there
        is one, names this state directory's real path)."""
        if self.fallback is None or self.fallback_root is None:
            return False
        import stat as stat_module

        for directory in (self.fallback_root, self.fallback):
            try:
                st = os.lstat(directory)
            except OSError:
                return False
            if not (stat_module.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077):
                return False
        owner = self.fallback / FALLBACK_OWNER_FILE
        if atomic.kind_of(owner) is None:
            return True
        try:
            recorded = atomic.read_regular(owner, 4096).decode("utf-8", "replace").strip()
        except OSError:
            return False
        return recorded == os.path.realpath(self.directory)

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
        fallback_path = self.fallback_path_for(card_id)
        if fallback_path is None or self.fallback is None:
            return None
        try:
            atomic.make_directory(self.fallback, 0o700)
            if not self._fallback_usable():
                logger.warning("the fallback journal directory %s is not ours alone; not used", self.fallback)
                return None
            owner = self.fallback / FALLBACK_OWNER_FILE
            if atomic.kind_of(owner) is None:
                write_atomic(owner, os.path.realpath(self.directory) + "\n")
            write_atomic(fallback_path, text)
        except OSError as exc:
            logger.warning("could not keep the journal in the fallback directory %s: %s", self.fallback, exc)
            return None
        logger.warning("the journal is kept in %s until the state directory can take it", fallback_path)
        return fallback_path

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


# -- the audit log ----------------------------------------------------------------------------
class AuditLineError(ValueError):
    """An audit log line that is not one of our records (torn, foreign, not UTF-8, too long)."""


def parse_audit_line(line: bytes) -> dict[str, Any]:
    """One line of the audit log (without its newline) as a record.

    Raises:
        AuditLineError: the reason in words; nothing else.
    """
    if len(line) > MAX_AUDIT_LINE_BYTES:
        raise AuditLineError(f"longer than {MAX_AUDIT_LINE_BYTES} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditLineError("not UTF-8 text") from None
    try:
        record = json.loads(text)
    except RecursionError:
        raise AuditLineError("nested too deeply") from None
    except ValueError:
        raise AuditLineError("not a JSON record (a torn or foreign line)") from None
    _check_audit_record(record)
    return record  # type: ignore[no-any-return]


def _check_audit_record(record: object) -> None:
    if not isinstance(record, dict):
        raise AuditLineError(f"a JSON {type(record).__name__}, not an audit record")
    when = record.get("time")
    if not isinstance(when, str):
        raise AuditLineError("not an audit record (no time)")
    try:
        dt.datetime.fromisoformat(when)
    except ValueError:
        raise AuditLineError("not an audit record (its time is not a date)") from None


@dataclass(frozen=True)
class AuditReading:
    """What :meth:`AuditLog.read` found: the records (oldest first) and the lines it skipped,
    as ``(line number or None when the start of the file was not read, reason)``."""

    entries: list[dict[str, Any]]
    skipped: list[tuple[int | None, str]]
    exists: bool
    truncated: bool = False
    """Only the last :data:`MAX_AUDIT_READ_BYTES` of the file were read."""


class AuditLog:
    """Append-only JSON-lines audit log (DESIGN §8), mode 0600. Never holds a secret.

    A record that cannot be appended is kept: in the journal of the renewal it belongs to (the
    engine puts it there before it is appended) and in a side file ``<log>.pending``; the next
    write flushes those first, each exactly once (records carry an ``event_id``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def pending_path(self) -> Path:
        return self.path.with_name(self.path.name + ".pending")

    def record(self, **event: Any) -> dict[str, Any]:
        """A new audit record: the event's fields plus ``time``, ``event_id``, ``terminal``, ``ssh_client``."""
        return {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "event_id": secrets.token_hex(8),
                "terminal": os.environ.get("SSH_TTY") or _tty(),
                "ssh_client": (os.environ.get("SSH_CLIENT") or "").split(" ")[0] or None, **event}

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` (first flushing records kept from earlier failures).

        Raises:
            StateFileError: the log could not be written.
        """
        self.flush_side_file()
        self._append(record)

    def _append(self, record: dict[str, Any], changed: bool = True) -> None:
        try:
            atomic.make_directory(self.path.parent)
            atomic.append_line(self.path, json.dumps(record, sort_keys=True))
        except OSError as exc:
            raise state_file_error(exc, "the audit log", self.path, changed=changed) from exc

    def write(self, **event: Any) -> dict[str, Any]:
        """Record an event now. When the log cannot be written the record is kept in the side
        file (if that can be written) for the next write.

        Raises:
            StateFileError: the log could not be written.
        """
        record = self.record(**event)
        try:
            self.append(record)
        except StateFileError:
            self.keep(record)
            raise
        return record

    def write_quietly(self, **event: Any) -> StateFileError | None:
        """:meth:`write`, returning the error instead of raising it (for events that must not
        stop what is going on, e.g. a journal set aside while only reading the card)."""
        try:
            self.write(**event)
        except StateFileError as exc:
            logger.warning("audit record not written (%s): %s", exc, json.dumps(event, sort_keys=True, default=str))
            return exc
        return None

    def keep(self, record: dict[str, Any]) -> bool:
        """Keep a record for the next write in the side file; False when that fails too (then
        the record is logged as a warning, the last place it can go)."""
        try:
            atomic.append_line(self.pending_path, json.dumps(record, sort_keys=True))
            return True
        except OSError as exc:
            logger.error("audit record could not be written or kept (%s): %s", exc, json.dumps(record, sort_keys=True))
            return False

    def flush_side_file(self, changed: bool = True) -> None:
        """Write the records kept in the side file (each once), then remove it.

        Args:
            changed: for the error's words: the card was changed in this run.

        Raises:
            StateFileError: the log could not be written (the side file is kept).
        """
        if atomic.kind_of(self.pending_path) is None:
            return
        try:
            data = atomic.read_regular(self.pending_path, MAX_AUDIT_READ_BYTES, tail=True)
        except OSError as exc:
            logger.warning("cannot read the kept audit records %s: %s", self.pending_path, exc)
            return
        records = []
        for line in data.split(b"\n"):
            if line.strip():
                try:
                    records.append(parse_audit_line(line))
                except AuditLineError:
                    continue
        self.flush(records, changed=changed)
        try:
            atomic.remove_file(self.pending_path)
        except OSError as exc:
            raise state_file_error(exc, "the audit log", self.pending_path, changed=changed) from exc

    def flush(self, records: list[dict[str, Any]], changed: bool = True) -> None:
        """Append each record that is not in the log yet (by ``event_id``), marked ``written_late``.

        Raises:
            StateFileError: the log could not be written.
        """
        if not records:
            return
        present = self._event_ids(changed)
        for record in records:
            event_id = record.get("event_id")
            if event_id is not None and event_id in present:
                continue
            self._append({**record, "written_late": True}, changed)
            if event_id is not None:
                present.add(event_id)

    def _event_ids(self, changed: bool) -> set[str]:
        try:
            data = atomic.read_regular(self.path, 1 << 30, tail=True)
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise state_file_error(exc, "the audit log", self.path, changed=changed) from exc
        ids: set[str] = set()
        for line in data.split(b"\n"):
            if b"event_id" not in line:
                continue
            try:
                event_id = parse_audit_line(line).get("event_id")
            except AuditLineError:
                continue
            if isinstance(event_id, str):
                ids.add(event_id)
        return ids

    def check_path(self) -> None:
        """The log is a regular file that can be opened for appending, or absent.

        Raises:
            StateFileError: naming the path and the next step (nothing was changed).
        """
        kind = atomic.kind_of(self.path)
        if kind not in (None, "file"):
            raise state_file_error(atomic.NotRegularFileError(errno_module.EINVAL, "not a regular file", str(self.path)),
                                   "the audit log", self.path)
        if kind == "file":
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                os.close(fd)
            except OSError as exc:
                raise state_file_error(exc, "the audit log", self.path) from exc

    def read(self, count: int | None = 20) -> AuditReading:
        """The last ``count`` records (None: all that were read), skipping lines that are not
        records, each with the reason.

        Raises:
            StateFileError: the log exists but cannot be read (not a regular file, no permission).
        """
        try:
            data = atomic.read_regular(self.path, MAX_AUDIT_READ_BYTES, tail=True)
        except FileNotFoundError:
            return AuditReading([], [], exists=False)
        except OSError as exc:
            error = state_file_error(exc, "the audit log", self.path)
            error.args = (str(error).replace("could not write", "could not read").replace(
                "; nothing was changed on the card", ""),)
            error.title = "A file cardrenew keeps could not be read"
            if error.next_step:  # reading it is `cardrenew audit`, not a renewal
                error.next_step = error.next_step.replace("`cardrenew renew`", "`cardrenew audit`")
            raise error from exc
        truncated = False
        lines = data.split(b"\n")
        try:
            truncated = os.stat(self.path).st_size > MAX_AUDIT_READ_BYTES
        except OSError:
            pass
        if truncated:
            lines = lines[1:]  # the first one is cut
        if lines and lines[-1] == b"":
            lines.pop()
        entries: list[tuple[int | None, dict[str, Any]]] = []
        skipped: list[tuple[int | None, str]] = []
        for index, line in enumerate(lines):
            number = None if truncated else index + 1
            if not line.strip():
                continue
            try:
                entries.append((number, parse_audit_line(line)))
            except AuditLineError as exc:
                skipped.append((number, str(exc)))
        if count is not None:
            entries = entries[-count:] if count > 0 else []
            first = entries[0][0] if entries else None
            if first is not None:
                skipped = [(n, why) for n, why in skipped if n is None or n > first]
            elif count == 0:
                skipped = []
        return AuditReading([e for _, e in entries], skipped, exists=True, truncated=truncated)

    def recent(self, count: int = 20) -> list[dict[str, Any]]:
        """The last ``count`` records (lines that are not records are skipped)."""
        return self.read(count).entries


def _tty() -> str | None:
    try:
        return os.ttyname(0)
    except OSError:
        return None
