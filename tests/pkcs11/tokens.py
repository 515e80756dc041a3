"""Helpers for the Pkcs11Token tests: open the fixture's token, issue a certificate for a key."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from card.enrollment.local import LocalCA
from card.pkcs11 import Pkcs11Token
from card.secret import Secret
from tests.pkcs11.softhsm import SoftHsm


def open_token(token: SoftHsm, *, log_in: bool = True, **kwargs: object) -> Pkcs11Token:
    """The fixture's token through card.pkcs11, started (and logged in unless ``log_in`` is False)."""
    p11 = Pkcs11Token(token.module, token.label, **kwargs)  # type: ignore[arg-type]
    p11.start()
    if log_in:
        p11.log_in(Secret(token.pin))
    return p11


def issue_der(ca: LocalCA, key: PublicKeyTypes, days: int = 365) -> bytes:
    """A certificate from the embedded CA for ``key`` (DER), as a renewal would get one."""
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alex Example")])
    cert = ca.issue_initial(subject, key, "9A", now - dt.timedelta(days=1), now + dt.timedelta(days=days))
    return cert.public_bytes(Encoding.DER)
