"""PKCS#11 tokens (issue 14): :class:`Pkcs11Token`, the :class:`card.token.Token` of any token
behind a PKCS#11 module, on the python-pkcs11 binding. Only this package imports ``pkcs11``
(import contract ``pkcs11-only-in-card-pkcs11``); nothing above it sees a binding exception."""

from card.pkcs11.token import Pkcs11Token

__all__ = ["Pkcs11Token"]
