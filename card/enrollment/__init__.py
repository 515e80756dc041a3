"""Issuers: how a card-held key gets a new certificate from a CA (DESIGN §4).

The names below are imported from :mod:`card.enrollment.base` on first use (PEP 562), so that
importing a light submodule (the registry, an issuer's settings) does not import cryptography:
the TUI reads its configuration before its first frame, and builds the issuer after it (issue 7).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from card.enrollment.base import (
        IssuancePending,
        IssuedCertificate,
        Issuer,
        IssuerError,
        IssuerRejected,
        IssuerReplyInvalid,
        IssuerUnavailable,
        RaRejected,
        RaUnavailable,
        RenewalGrant,
        RequestSigner,
        RetryRefused,
        Signer,
    )

__all__ = [
    "IssuancePending",
    "IssuedCertificate",
    "Issuer",
    "IssuerError",
    "IssuerRejected",
    "IssuerReplyInvalid",
    "IssuerUnavailable",
    "RaRejected",
    "RaUnavailable",
    "RenewalGrant",
    "RequestSigner",
    "RetryRefused",
    "Signer",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        return vars(importlib.import_module("card.enrollment.base"))[name]
    raise AttributeError(f"module 'card.enrollment' has no attribute {name!r}")
