"""The slot plan of a run — one typed entry per slot the run renews or resumes — and the small
journal helpers the engine's steps share."""

from __future__ import annotations

from typing import NamedTuple

from cryptography import x509

from card.certificates import fingerprint, load_certificate_pem
from card.config import SlotSetting
from card.enrollment.base import Issuer
from card.journal import SlotJournal
from card.piv import Slot
from card.renewal.keys import TokenKeys
from card.renewal.model import KeySetting, SlotStatus
from card.renewal.results import RenewalRefused
from card.token import KeyRef


class SlotPlan(NamedTuple):
    """One slot of a run, in the order the run renews them."""

    setting: SlotSetting | KeySetting
    """The slot and its label (from ``renewal.slots``; a journalled slot no longer configured gets its PIV name),
    or a PKCS#11 token's key (its ``slot`` raises ValueError on a side-by-side token)."""
    old: x509.Certificate | None
    """The certificate being renewed, while the slot still holds it (None once it was replaced)."""
    entry: SlotJournal
    """The slot's journal entry: its step, grant, generated key and issued certificate."""
    ref: KeyRef
    """Where the key is on the token (its ``hex`` is the journal entry's name)."""

    @property
    def slot(self) -> Slot:
        return self.setting.slot


def journal_old_certificate(sj: SlotJournal) -> x509.Certificate:
    """The certificate the journal entry renews.

    Raises:
        RenewalRefused: the journal does not hold it.
    """
    if not sj.old_certificate_pem:
        raise RenewalRefused(f"slot {sj.slot}: the journal does not hold the certificate being renewed")
    return load_certificate_pem(sj.old_certificate_pem)  # a negative serial loads too


def old_certificate(status: SlotStatus | None, sj: SlotJournal) -> x509.Certificate | None:
    """The certificate being renewed, if the slot still holds it (else None)."""
    cert = status.certificate if status is not None else None
    if cert is not None and fingerprint(cert) == sj.old_fingerprint:
        return cert
    return None


def request_signer_slot(issuer: Issuer, ref: KeyRef, keys: TokenKeys) -> KeyRef | None:
    """The key whose certificate signs the CA request for ``ref`` (SCEP RenewalReq, RFC 8894
    §3.3.1.2), or None when the issuer has the new key sign its own request.

    Raises:
        ValueError: the issuer names a key the token does not have.
    """
    name = issuer.request_signer_slot(ref.hex)
    return keys.named(name) if name is not None else None
