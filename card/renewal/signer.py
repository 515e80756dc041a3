"""The token's private keys as the engine uses them: every signature and RSA decipher of a run goes
through :class:`CardSigner`, which knows the key type each key has now and at GENERATE, and tells
which of several candidate public keys a key is (a test signature).

What a key demands before each use — PIV PIN always on 9C (SP 800-73-4 Part 1 §3.3.2, F08), PKCS#11
``CKA_ALWAYS_AUTHENTICATE`` — is the token's job (:meth:`card.token.Token.sign`): the token keeps the
run's PIN (a :class:`~card.secret.Secret`, never stored or logged) from :meth:`CardSigner.log_in`.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import verify_signature
from card.enrollment.base import CardKey
from card.errors import ApduError
from card.piv import KeyType
from card.piv.quirks import no_key_of_this_type
from card.secret import Secret, require_secret
from card.token import KeyRef, Token


class CardSigner:
    """Private-key operations of one renewal run on one token.

    Args:
        token: the token of this run.
        pin: the PIN entered for this run.

    Raises:
        TypeError: ``pin`` is not a Secret.
    """

    def __init__(self, token: Token, pin: Secret) -> None:
        self.token = token
        self._pin = require_secret(pin, "PIN")
        self.key_types: dict[KeyRef, KeyType] = {}
        """Key type each key gets at GENERATE (configured, or the old key's type)."""
        self.slot_key_types: dict[KeyRef, KeyType] = {}
        """Key type of the key held now: signatures use it (it differs from :attr:`key_types` until
        GENERATE when the configuration changes the type, F13)."""

    def log_in(self) -> None:
        """Log in with the run's PIN (PIV VERIFY, SP 800-73-4 Part 2 §3.2.1).

        Raises:
            InvalidPinError, PinBlockedError, CardRemovedError.
        """
        self.token.log_in(self._pin)

    def sign(self, ref: KeyRef, message: bytes, key_type: KeyType | None = None) -> bytes:
        """Sign with the key at ``ref`` (of ``key_type``, default: the key held now)."""
        kt = key_type or self.slot_key_types.get(ref) or self.key_types[ref]
        return self.token.sign(ref, kt, message)

    def rsa_decipher(self, ref: KeyRef, block: bytes) -> bytes:
        """RSA decipher ``block`` with the key at ``ref`` (SCEP replies are encrypted to it)."""
        return self.token.decipher(ref, block)

    def card_key(self, ref: KeyRef, public_key: PublicKeyTypes, key_type: KeyType | None = None) -> CardKey:
        """The key at ``ref`` as an issuer sees it: ``public_key`` plus sign and decipher on the token."""
        return CardKey(public_key, lambda m: self.sign(ref, m, key_type), lambda block: self.rsa_decipher(ref, block))

    def slot_key_is(self, ref: KeyRef, candidates: list[PublicKeyTypes]) -> int | None:
        """Index of the candidate public key the key at ``ref`` matches (a test signature over 32
        random bytes, one per key type in play), or None. Remembers the matching key's type."""
        challenge = os.urandom(32)
        for kt in dict.fromkeys(KeyType.of(key) for key in candidates):  # one signature per key type in play
            try:
                signature = self.sign(ref, challenge, kt)
            except ApduError as exc:
                if no_key_of_this_type(exc.sw):  # try the next type
                    continue
                raise
            for i, key in enumerate(candidates):
                if KeyType.of(key) is kt and verify_signature(key, signature, challenge):
                    self.slot_key_types[ref] = kt
                    return i
        return None
