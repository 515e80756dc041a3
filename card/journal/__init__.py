"""The renewal journal (DESIGN §3.4) and the audit log (DESIGN §8).

The journal is one JSON file per card, written atomically before and after each destructive step,
so that a renewal interrupted anywhere can be resumed. It holds grants, generated public keys,
CSRs and issued certificates — never a PIN, PUK or management key. The audit log is JSON lines,
appended. Both live under the XDG state directory, mode 0600.

Journal file (``journal-<card id>.json``, UTF-8 JSON, at most :data:`MAX_JOURNAL_BYTES`)::

    {"version": 1, "card_id": "<CHUID GUID hex, p11-<digest> (PKCS#11), or cert-<fingerprint>>", "reference": "CR-XXXXXX",
     "started": "<ISO 8601>", "audit_pending": [<audit records not yet in the audit log>],
     "interface": "piv"|"pkcs11" (absent: "piv"),
     "slots": {"9A": {"slot": "9A", "step": "planned|authorised|generating|generated|issued|written|retired|done|ended",
                      "old_fingerprint": str|null, "old_certificate_pem": str|null, "grant": {str: str}|null,
                      "public_key_pem": str|null, "csr_pem": str|null, "certificate_pem": str|null,
                      "error": str|null, "old_key_id": hex|null, "new_key_id": hex|null, "label": str|null},
               ...}}

A PIV journal names PIV slots (``"9A"``). A PKCS#11 journal (``"interface": "pkcs11"``) names each key
by its old ``CKA_ID`` in upper-case hex; on a side-by-side token (``card.renewal.beside``) the entry
also holds the old and new ``CKA_ID`` and the old label, and ``retired`` says the old key and
certificate are gone (or relabelled as superseded) and only the new objects' relabel is left.

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

from card.journal.audit import MAX_AUDIT_READ_BYTES, AuditLog, AuditReading, shown_guid
from card.journal.audit_chain import ChainReport, verify_chain
from card.journal.audit_lines import MAX_AUDIT_LINE_BYTES, AuditLineError, outcome_kind, parse_audit_line
from card.journal.fallback import FALLBACK_OWNER_FILE, default_fallback_directory, fallback_tag
from card.journal.records import (
    FINAL_STEPS,
    IN_PROGRESS_STEPS,
    INTERFACES,
    JOURNAL_VERSION,
    STEP_AUTHORISED,
    STEP_DONE,
    STEP_ENDED,
    STEP_GENERATED,
    STEP_GENERATING,
    STEP_ISSUED,
    STEP_PLANNED,
    STEP_RETIRED,
    STEP_WRITTEN,
    STEPS,
    Journal,
    JournalStep,
    SlotJournal,
    new_reference,
)
from card.journal.statefiles import STATE_FREE_BYTES, STATE_FREE_INODES, check_directory, state_file_error
from card.journal.store import JournalStore, SetAside, flush_kept_audit, prepare_state_files
from card.journal.validate import MAX_JOURNAL_BYTES, JournalFileError, parse_journal

__all__ = [
    "FALLBACK_OWNER_FILE", "FINAL_STEPS", "IN_PROGRESS_STEPS", "INTERFACES", "JOURNAL_VERSION", "MAX_AUDIT_LINE_BYTES",
    "MAX_AUDIT_READ_BYTES", "MAX_JOURNAL_BYTES", "STATE_FREE_BYTES", "STATE_FREE_INODES", "STEPS",
    "STEP_AUTHORISED", "STEP_DONE", "STEP_ENDED", "STEP_GENERATED", "STEP_GENERATING", "STEP_ISSUED",
    "STEP_PLANNED", "STEP_RETIRED", "STEP_WRITTEN", "AuditLineError", "AuditLog", "AuditReading", "Journal", "JournalFileError",
    "JournalStep", "JournalStore", "SetAside", "SlotJournal", "check_directory", "default_fallback_directory",
    "fallback_tag", "flush_kept_audit", "verify_chain", "ChainReport", "outcome_kind", "new_reference", "parse_audit_line", "parse_journal",
    "prepare_state_files", "shown_guid", "state_file_error",
]
