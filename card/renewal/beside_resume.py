"""The labels and the resume decision of a side-by-side renewal (:mod:`card.renewal.beside`): pure
functions of the journal entry and of what the token holds now, so that every case can be tested
without a token."""

from __future__ import annotations

import datetime as dt
import enum

from cryptography import x509

from card.certificates import fingerprint
from card.journal import JournalStep, SlotJournal

RENEWING = " (renewing)"
SUPERSEDED = " (superseded "


def renewing_label(label: str) -> str:
    """``CKA_LABEL`` of the new key and certificate until the old ones are gone: ``"<label> (renewing)"``."""
    return label + RENEWING


def superseded_label(label: str, day: dt.date) -> str:
    """``CKA_LABEL`` of a kept old key and certificate: ``"<label> (superseded YYYY-MM-DD)"``."""
    return f"{label}{SUPERSEDED}{day:%Y-%m-%d})"


def is_leftover_label(label: str) -> bool:
    """Whether ``label`` is one this module gives objects that are not to be renewed: a new key of an
    unfinished update (``(renewing)``) or an old key kept as superseded."""
    return label.endswith(RENEWING) or (SUPERSEDED in label and label.endswith(")"))


class BesideResume(enum.Enum):
    """What one key of an unfinished side-by-side update needs, from what the token holds now."""

    START = "nothing usable of this update on the token: generate a new key beside the old one"
    DISCARD = "a key this update made and nothing issued for it: delete it, then start again"
    ISSUE = "the new key works, no certificate yet: ask the CA (again) with the grant"
    WRITE = "the new key and its issued certificate: write it beside the key (unless there) and test it"
    FINISH = "the new certificate is written and works: retire the old key, relabel the new one"
    CHANGED = "someone else changed the old certificate (or our new objects): never touched"


def request_sent(sj: SlotJournal) -> bool:
    """The CA may have been asked to issue with this entry's grant (it may hold a certificate for the new key)."""
    return bool(sj.grant and sj.grant.get("request_sent"))


def decide(sj: SlotJournal, old_now: x509.Certificate | None, old_unreadable: bool,
           new_now: x509.Certificate | None, new_key_works: bool) -> BesideResume:
    """The resume decision for one key (pure: the caller reads the token).

    Args:
        old_now: the certificate under the old ``CKA_ID`` now (None: no readable one).
        old_unreadable: an object is there that does not decode as a certificate.
        new_now: the certificate under the journalled new ``CKA_ID`` now.
        new_key_works: a test signature by the key under the new id verified with the journalled
            public key (False when none is journalled).
    """
    step = sj.step
    retiring = step in (JournalStep.WRITTEN, JournalStep.RETIRED)
    if old_unreadable or (old_now is not None and fingerprint(old_now) != sj.old_fingerprint):
        return BesideResume.CHANGED  # never touch a token whose old certificate changed
    if old_now is None and not retiring:
        return BesideResume.CHANGED  # gone before this update could have removed it
    issued_fp = sj.issued_fingerprint
    if new_now is not None and fingerprint(new_now) != issued_fp:
        return BesideResume.CHANGED
    if retiring:
        return BesideResume.FINISH if new_now is not None and new_key_works else BesideResume.CHANGED
    if step is JournalStep.GENERATING:
        return BesideResume.DISCARD  # its public key never reached the journal: nothing was issued for it
    if step in (JournalStep.GENERATED, JournalStep.ISSUED):
        if new_key_works:
            return BesideResume.WRITE if sj.certificate_pem else BesideResume.ISSUE
        if sj.certificate_pem is None and not request_sent(sj):
            return BesideResume.DISCARD
    return BesideResume.START  # (an unusable key the CA may have certified stays, under "(renewing)")
