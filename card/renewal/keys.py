"""The engine's names for a token's keys: a journal entry's name (``"9A"``: the key's ``CKA_ID`` /
slot byte in hex, :attr:`card.token.KeyRef.hex`) and a configured slot (``renewal.slots``) each
lead to one :class:`~card.token.KeyRef`. Journals written before the token boundary keep resuming:
a PIV slot's KeyRef has the slot's hex as its name."""

from __future__ import annotations

from card.piv import Slot
from card.token import KeyRef, Token


class TokenKeys:
    """The keys of one token (``token.key_refs()``, read once: no APDU on a PIV card)."""

    def __init__(self, token: Token) -> None:
        self.refs = token.key_refs()
        self._by_name = {ref.hex: ref for ref in self.refs}
        self._by_slot = {ref.slot: ref for ref in self.refs if ref.slot is not None}

    def named(self, name: str) -> KeyRef:
        """The key a journal or an issuer names: its hex ``CKA_ID`` (``"9A"``, ``"9a"``, ``"0x9a"`` for a
        PIV slot), else a PIV slot's name on a token that has that slot.

        Raises:
            ValueError: the token has no such key.
        """
        text = name.strip().upper().removeprefix("0X")
        if text in self._by_name:
            return self._by_name[text]
        try:  # a PIV slot's name on a token whose key ids are not the slot bytes (libykcs11: 01 for 9A)
            return self.of_slot(Slot.parse(text))
        except ValueError:
            raise ValueError(f"no key {name!r} on this token") from None

    def of_slot(self, slot: Slot) -> KeyRef:
        """The key in PIV slot ``slot`` (a PIV card, or a PKCS#11 module over one).

        Raises:
            ValueError: the token has no such slot.
        """
        if slot in self._by_slot:
            return self._by_slot[slot]
        raise ValueError(f"slot {slot.hex} is not on this token")
