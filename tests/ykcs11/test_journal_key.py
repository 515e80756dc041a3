"""What a resume through libykcs11 needs of the engine, in process (no pcscd): the journal of a
PKCS#11 token is found again after the renewal changed its certificates, and a slot holding a
module's placeholder certificate for the key we generated is ours to finish, not "changed by
someone else". The same through the real module: test_ykcs11_renewal.py's pulls."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from card.journal import JournalStep, SlotJournal
from card.piv import Slot
from card.renewal.model import holds_generated_key
from card.renewal.reading import card_id_for, journal_slot_matches
from card.token import CardIdentity, TokenInfo, TokenInterface


@dataclass
class _Token:
    info: TokenInfo
    identity: CardIdentity | None = None

    def card_identity(self) -> CardIdentity | None:
        return self.identity


def _self_signed(cn: str, key: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now).sign(key, hashes.SHA256()))


YKCS11_INFO = TokenInfo(TokenInterface.PKCS11, "YubiKey PIV #10152392", "Yubico (www.yubico.com)", "YubiKey YK5",
                        "10152392", side_by_side=False)


def test_a_pkcs11_tokens_journal_key_survives_its_certificates_changing() -> None:
    token = _Token(YKCS11_INFO)
    old = {Slot.AUTHENTICATION: _self_signed("Alex Example"), Slot.SIGNATURE: _self_signed("Alex Example")}
    placeholder = {**old, Slot.AUTHENTICATION: _self_signed("YubiKey PIV Slot 9a")}
    card_id, guid_text, expiry = card_id_for(token, old)  # type: ignore[arg-type]
    assert card_id is not None and card_id.startswith("p11-") and guid_text is None and expiry is None
    assert card_id_for(token, placeholder)[0] == card_id  # type: ignore[arg-type]
    other = _Token(TokenInfo(TokenInterface.PKCS11, "YubiKey PIV #10152393", "Yubico (www.yubico.com)", "YubiKey YK5",
                             "10152393", side_by_side=False))
    assert card_id_for(other, old)[0] != card_id  # type: ignore[arg-type]


def test_a_piv_card_keeps_its_guid_and_a_token_without_serial_its_certificate_fingerprint() -> None:
    guid = bytes(range(16))
    piv = _Token(TokenInfo(TokenInterface.PIV, "PIV card", "", "", "", side_by_side=False),
                 CardIdentity(guid, "00010203-...", dt.date(2030, 1, 1)))
    cert = _self_signed("Alex Example")
    assert card_id_for(piv, {Slot.AUTHENTICATION: cert})[0] == guid.hex().upper()  # type: ignore[arg-type]
    no_serial = _Token(TokenInfo(TokenInterface.PKCS11, "token", "maker", "model", "  ", side_by_side=True))
    assert card_id_for(no_serial, {Slot.AUTHENTICATION: cert})[0].startswith("cert-")  # type: ignore[arg-type, union-attr]


def _journal_with_generated(key: ec.EllipticCurvePrivateKey, step: JournalStep) -> SlotJournal:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SlotJournal("9A", old_fingerprint="00" * 32, step=step, public_key_pem=pem.decode())


def test_a_placeholder_for_the_generated_key_is_ours_to_finish_and_any_other_certificate_is_not() -> None:
    ours = ec.generate_private_key(ec.SECP256R1())
    sj = _journal_with_generated(ours, JournalStep.ISSUED)
    placeholder = _self_signed("YubiKey PIV Slot 9a", ours)  # the new key, self-signed by ykcs11
    someone_elses = _self_signed("Alex Example (re-issued by the RA)")
    assert holds_generated_key(sj, placeholder) and journal_slot_matches(sj, placeholder)
    assert not holds_generated_key(sj, someone_elses) and not journal_slot_matches(sj, someone_elses)
    planned = _journal_with_generated(ours, JournalStep.PLANNED)  # GENERATE not sent: the key is not ours yet
    assert not holds_generated_key(planned, placeholder)
