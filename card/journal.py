"""The renewal journal (DESIGN §3.4): one JSON file per card, written atomically before and
after each destructive step, so that a renewal interrupted anywhere can be resumed.

It holds grants, generated public keys, CSRs and issued certificates — never a PIN, PUK or
management key. Files are mode 0600 under the XDG state directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from card.atomic import write_atomic

JOURNAL_VERSION = 1

# Step names, in order. A slot's ``step`` is the last one *completed*, except "generating",
# which is written before GENERATE is sent (the slot's key is then unknown until probed).
STEP_PLANNED = "planned"
STEP_AUTHORISED = "authorised"
STEP_GENERATING = "generating"
STEP_GENERATED = "generated"
STEP_ISSUED = "issued"
STEP_WRITTEN = "written"
STEP_DONE = "done"
STEP_ENDED = "ended"
"""Final without a renewal: the card or the CA refused this slot before anything in it changed, so
there is nothing to resume (issue 11 item 2: no resume loops)."""
FINAL_STEPS = (STEP_DONE, STEP_ENDED)
IN_PROGRESS_STEPS = (STEP_GENERATING, STEP_GENERATED, STEP_ISSUED, STEP_WRITTEN)
"""Steps at which the slot's old key may be gone: only a resume can finish the slot."""


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
    step: str = STEP_PLANNED
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

    @property
    def finished(self) -> bool:
        """Every slot is done or ended (nothing left to resume)."""
        return all(s.step in FINAL_STEPS for s in self.slots.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Journal:
        raw: dict[str, Any] = json.loads(text)
        raw["slots"] = {k: SlotJournal(**v) for k, v in raw.get("slots", {}).items()}
        return cls(**raw)


class JournalStore:
    """Journals in a directory, one file per card (``journal-<card_id>.json``, 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, card_id: str) -> Path:
        safe = "".join(c for c in card_id if c.isalnum() or c in "-_")
        return self.directory / f"journal-{safe}.json"

    def load(self, card_id: str) -> Journal | None:
        """The unfinished journal of this card, or None. A corrupt file is kept aside, not deleted."""
        path = self.path_for(card_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            journal = Journal.from_json(text)
        except (ValueError, TypeError, KeyError):
            path.replace(path.with_suffix(".corrupt"))
            return None
        return journal if journal.card_id == card_id else None

    def save(self, journal: Journal) -> Path:
        """Write atomically (temp file, fsync, rename, fsync of the directory)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path_for(journal.card_id)
        write_atomic(path, journal.to_json())
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
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        safe_why = "".join(c for c in why if c.isalnum() or c == "-")[:40]
        target = path.with_name(f"{path.name}.set-aside-{stamp}-{safe_why}")
        try:
            if copy:
                write_atomic(target, path.read_text(encoding="utf-8", errors="replace"))
            else:
                path.replace(target)
        except FileNotFoundError:
            return None
        return target

    def clear(self, card_id: str) -> None:
        """Remove the journal once every slot is done."""
        try:
            self.path_for(card_id).unlink()
        except FileNotFoundError:
            pass


class AuditLog:
    """Append-only JSON-lines audit log (DESIGN §8), mode 0600. Never holds a secret."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, **event: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        event = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "terminal": os.environ.get("SSH_TTY") or _tty(),
                 "ssh_client": (os.environ.get("SSH_CLIENT") or "").split(" ")[0] or None, **event}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True) + "\n")

    def recent(self, count: int = 20) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines[-count:] if line.strip()]


def _tty() -> str | None:
    try:
        return os.ttyname(0)
    except OSError:
        return None
