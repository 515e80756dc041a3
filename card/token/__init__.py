"""What the renewal engine needs of a card or token (issue 14; DESIGN §2): :mod:`card.token.base`
(the :class:`Token` protocol and its values) and :mod:`card.token.piv` (:class:`PivToken`, the PIV
card over our APDUs). The PKCS#11 token is ``card.pkcs11`` (it imports this package's values)."""

from card.token.base import (
    PIV_SLOT_LABELS,
    CardIdentity,
    KeyRef,
    Token,
    TokenCertificate,
    TokenInfo,
    TokenInterface,
)

__all__ = ["PIV_SLOT_LABELS", "CardIdentity", "KeyRef", "Token", "TokenCertificate", "TokenInfo", "TokenInterface"]
