"""The card's private keys as the engine uses them: every signature and RSA decipher goes through
:class:`CardSigner`, which sends the VERIFY a PIN-always slot (9C) demands directly before each
private-key operation (SP 800-73-4 Part 1 §3.3.2 "PIN Always"; piv-protocol.md §3.4, F08).

It holds the PIN for one run (a :class:`~card.secret.Secret`, never stored or logged).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import verify_signature
from card.enrollment.base import CardKey
from card.errors import ApduError
from card.piv import KeyType, PivSession, Slot
from card.piv.quirks import no_key_of_this_type, pin_always
from card.secret import Secret, require_secret


class CardSigner:
    """Private-key operations of one renewal run on one card session.

    Args:
        session: the card session of this run.
        pin: the PIN entered for this run.

    Raises:
        TypeError: ``pin`` is not a Secret.
    """

    def __init__(self, session: PivSession, pin: Secret) -> None:
        self.session = session
        self._pin = require_secret(pin, "PIN")
        self._verified_at: int | None = None
        """``apdus_sent`` right after our last successful VERIFY: while no other command has been
        sent since, that VERIFY is still the one "immediately before" a PIN-always operation."""
        self.key_types: dict[Slot, KeyType] = {}
        """Key type each slot gets at GENERATE (configured, or the old key's type)."""
        self.slot_key_types: dict[Slot, KeyType] = {}
        """Key type of the key the slot holds now: signatures use it (it differs from :attr:`key_types`
        until GENERATE when the configuration changes the type, F13)."""

    def verify_pin(self) -> None:
        """VERIFY the PIN (SP 800-73-4 Part 2 §3.2.1).

        Raises:
            InvalidPinError, PinBlockedError, CardRemovedError.
        """
        self.session.verify_pin(self._pin)
        self._verified_at = self.session.protocol.apdus_sent

    def _verify_pin_always(self) -> None:
        """VERIFY for a PIN-always (9C) operation, unless our VERIFY was the very last command sent
        (piv-protocol.md §3.4, F08): the preflight VERIFY then serves the first such operation."""
        if self._verified_at is None or self._verified_at != self.session.protocol.apdus_sent:
            self.verify_pin()
        self._verified_at = None  # the operation that follows uses it up

    def sign(self, slot: Slot, message: bytes, key_type: KeyType | None = None) -> bytes:
        """Sign with the slot key (of ``key_type``, default: the key the slot holds now); VERIFY right
        before each 9C signature (PIN always, F08)."""
        if pin_always(slot):
            self._verify_pin_always()
        kt = key_type or self.slot_key_types.get(slot) or self.key_types[slot]
        return self.session.sign(slot, kt, message)

    def rsa_decipher(self, slot: Slot, block: bytes) -> bytes:
        """RSA decipher ``block`` with the slot key (SCEP replies are encrypted to it); VERIFY first for 9C."""
        if pin_always(slot):
            self._verify_pin_always()
        return self.session.rsa_decipher(slot, block)

    def card_key(self, slot: Slot, public_key: PublicKeyTypes, key_type: KeyType | None = None) -> CardKey:
        """The slot's private key as an issuer sees it: ``public_key`` plus sign and decipher on the card."""
        return CardKey(public_key, lambda m: self.sign(slot, m, key_type), lambda block: self.rsa_decipher(slot, block))

    def slot_key_is(self, slot: Slot, candidates: list[PublicKeyTypes]) -> int | None:
        """Index of the candidate public key the slot's private key matches (a test signature over 32
        random bytes, one per key type in play), or None. Remembers the matching key's type."""
        challenge = os.urandom(32)
        for kt in dict.fromkeys(KeyType.of(key) for key in candidates):  # one signature per key type in play
            try:
                signature = self.sign(slot, challenge, kt)
            except ApduError as exc:
                if no_key_of_this_type(exc.sw):  # try the next type
                    continue
                raise
            for i, key in enumerate(candidates):
                if KeyType.of(key) is kt and verify_signature(key, signature, challenge):
                    self.slot_key_types[slot] = kt
                    return i
        return None
