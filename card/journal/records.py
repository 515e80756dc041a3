"""The journal's records (DESIGN §3.4): a slot's steps as :class:`JournalStep`, and the
:class:`SlotJournal` / :class:`Journal` data model that is written to ``journal-<card id>.json``
(schema in :mod:`card.journal`)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

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
    RETIRED = "retired"
    """Side by side (a PKCS#11 token, ``card.renewal.beside``): the new certificate was written beside
    its key and tested, and the old key and certificate were deleted (or relabelled as superseded);
    the new objects still carry the "(renewing)" label. Only the relabel is left."""
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
STEP_RETIRED = JournalStep.RETIRED
FINAL_STEPS = (JournalStep.DONE, JournalStep.ENDED)
IN_PROGRESS_STEPS = (JournalStep.GENERATING, JournalStep.GENERATED, JournalStep.ISSUED, JournalStep.WRITTEN,
                     JournalStep.RETIRED)
"""Steps at which the slot's old key may be gone (PIV), or a new key of this update is on the token
(side by side): only a resume can finish the slot."""
INTERFACES = ("piv", "pkcs11")
"""The ``interface`` a journal is written for (``[card] interface``): its slot names are PIV slots
(``"9A"``), or the hex ``CKA_ID`` of the key being renewed on a PKCS#11 token."""
STEPS = tuple(JournalStep)


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
    old_key_id: str | None = None
    """Side by side: ``CKA_ID`` (hex, upper case) of the key and certificate being renewed."""
    new_key_id: str | None = None
    """Side by side: ``CKA_ID`` (hex) of the new key, journalled *before* C_GenerateKeyPair: a key under
    it without a certificate is one this update made (the id is random and was free)."""
    label: str | None = None
    """Side by side: the old certificate's ``CKA_LABEL``, which the new objects take at the end."""

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
    interface: str = "piv"
    """``"piv"`` (slots named ``"9A"``) or ``"pkcs11"`` (keys named by their ``CKA_ID`` in hex);
    journals written before PKCS#11 tokens have no such field and are PIV journals."""

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
        from card.journal.validate import parse_journal

        return parse_journal(text.encode("utf-8", "surrogatepass"))
