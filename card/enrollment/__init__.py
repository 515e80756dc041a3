"""Issuers: how a card-held key gets a new certificate from a CA (DESIGN §4)."""

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
