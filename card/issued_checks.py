"""Checks on a certificate the CA returned, against the certificate it renews (DESIGN §3 step 3).

A renewal must give the holder the same identity and the same powers, on a new key, never longer
than the card itself lives:

- subject: the same RDNs, each RDN the same set of attributes (RFC 5280 §4.1.2.6; re-encoded
  string types and re-ordered RDNs are the same subject, RDNs merged into one multi-valued RDN
  are not);
- subjectAltName: the same names (RFC 5280 §4.2.1.6) — another UPN or a dropped e-mail address
  is another identity;
- keyUsage and extendedKeyUsage: the same as the old certificate (RFC 5280 §4.2.1.3, §4.2.1.12);
- basicConstraints: a leaf — cA FALSE or the extension absent, and no keyCertSign / cRLSign
  (RFC 5280 §4.2.1.9);
- extensions: only ones we understand (:data:`UNDERSTOOD_EXTENSIONS`) may be critical — an unknown
  critical extension makes relying parties refuse the certificate (RFC 5280 §4.2); no
  nameConstraints, policyConstraints or inhibitAnyPolicy on a leaf (RFC 5280 §4.2.1.10, §4.2.1.11,
  §4.2.1.14: CA certificates only); certificatePolicies the same as the old certificate's
  (RFC 5280 §4.2.1.4 — another policy is another assurance level). authorityInfoAccess and
  cRLDistributionPoints may change with the CA and are not compared;
- validity: valid now, and notAfter not past the card's own expiry (the CHUID expiration date,
  SP 800-73-4 Part 1 Table 9 tag 0x35; FIPS 201-3 §4.1.4.1: a certificate never outlives its card).

Every failure raises :class:`CertificateMismatchError` saying what the CA did wrong; the engine
never writes such a certificate.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from card.errors import CardError

_RA_NEXT_STEP = ("The certificate was not written and your card is as it was before this step. Do not try again: "
                 "contact your Registration Authority (RA) with the reference shown — the certificate authority "
                 "issued a certificate that is not a renewal of yours.")


class CertificateMismatchError(CardError):
    """The CA returned a certificate that fails verification (wrong key, identity, usage, chain or validity)."""

    title = "The new certificate was rejected"
    code = "BADCERT"
    next_step = ("The certificate was not written. Try again from the Card tab; if it happens again, "
                 "contact your Registration Authority (RA) with the reference shown.")


class WrongIdentityError(CertificateMismatchError):
    """The CA issued for another identity or with other powers (subject, SAN, usage, a CA certificate)."""

    title = "The certificate authority issued the wrong certificate"
    code = "BADCERT-IDENTITY"
    next_step = _RA_NEXT_STEP


def card_expiry_limit(expiry: dt.date | None) -> dt.datetime | None:
    """The last instant a certificate on a card with CHUID expiration date ``expiry`` may be valid:
    the end of that day, UTC (aware). None when the card states no expiry."""
    if expiry is None:
        return None
    return dt.datetime.combine(expiry, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)


def issued_by_one_of(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    """``cert``'s signature verifies with one of ``cas`` and its issuer is that CA's subject
    (RFC 5280 §6.1.3 (a)(1)–(a)(4), one step; ``Certificate.verify_directly_issued_by``)."""
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except Exception:  # noqa: BLE001 - any failure means "not this CA"
            continue
        return True
    return False


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _name_attributes(name: x509.Name) -> list[list[tuple[str, str]]]:
    """A name as its RDNs, each RDN its sorted (OID, value) pairs: the same subject even when a CA
    re-encodes the string types or re-orders the RDNs (scepserver 2.1.0 does both), but not when
    it merges RDNs into one multi-valued RDN (RFC 5280 §7.1 compares RDN by RDN)."""
    return sorted(sorted((attr.oid.dotted_string, str(attr.value)) for attr in rdn) for rdn in name.rdns)


UNDERSTOOD_EXTENSIONS = frozenset({
    ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME, ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, ExtensionOID.FRESHEST_CRL,
})
"""Extensions a holder's certificate may carry as critical (RFC 5280 §4.2.1); others must be non-critical."""

CA_ONLY_EXTENSIONS = {
    ExtensionOID.NAME_CONSTRAINTS: "nameConstraints",
    ExtensionOID.POLICY_CONSTRAINTS: "policyConstraints",
    ExtensionOID.INHIBIT_ANY_POLICY: "inhibitAnyPolicy",
    ExtensionOID.POLICY_MAPPINGS: "policyMappings",
}
"""Extensions that belong in CA certificates only (RFC 5280 §4.2.1.5, .10, .11, .14)."""


def certificate_policies(cert: x509.Certificate) -> set[str] | None:
    """The certificatePolicies OIDs (dotted), or None when absent."""
    cp = _ext(cert, ExtensionOID.CERTIFICATE_POLICIES)
    return {p.policy_identifier.dotted_string for p in cp} if isinstance(cp, x509.CertificatePolicies) else None


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.OtherName):
        if name.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3":  # Microsoft UPN (a UTF8String)
            try:
                from asn1crypto.core import UTF8String

                return f"UPN:{UTF8String.load(name.value).native}"
            except Exception:  # noqa: BLE001 - an undecodable UPN is still compared byte for byte
                pass
        return f"otherName:{name.type_id.dotted_string}:{name.value.hex()}"
    if isinstance(name, x509.DirectoryName):
        return f"dirName:{name.value.rfc4514_string()}"
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}"
    return repr(name)


def alternative_names(cert: x509.Certificate) -> set[str]:
    """The certificate's subjectAltName entries as comparable text (``email:…``, ``UPN:…``, ``DNS:…``)."""
    san = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    return {_general_name(n) for n in san} if isinstance(san, x509.SubjectAlternativeName) else set()


_KU_BITS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign")


def key_usages(cert: x509.Certificate) -> set[str] | None:
    """The keyUsage bits asserted (RFC 5280 names without the camel case), or None when absent."""
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if not isinstance(ku, x509.KeyUsage):
        return None
    bits = {bit for bit in _KU_BITS if getattr(ku, bit)}
    if ku.key_agreement:
        bits |= {bit for bit in ("encipher_only", "decipher_only") if getattr(ku, bit)}
    return bits


def extended_key_usages(cert: x509.Certificate) -> set[str] | None:
    """The extendedKeyUsage OIDs (dotted), or None when absent."""
    eku = _ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    return {oid.dotted_string for oid in eku} if isinstance(eku, x509.ExtendedKeyUsage) else None


def _show(values: set[str] | None) -> str:
    if values is None:
        return "none (extension absent)"
    return ", ".join(sorted(values)) or "none"


def check_renewal_certificate(slot: str, old: x509.Certificate, new: x509.Certificate, *,
                              card_expiry: dt.date | None, now: dt.datetime) -> None:
    """Check that ``new`` (from the CA) is a renewal of ``old`` for slot ``slot`` (e.g. ``"9A"``).

    The key, the chain to the CA and the signature are checked by the caller; this function checks
    identity, powers and validity (see the module docstring for the rules and their sources).

    Args:
        card_expiry: the card's CHUID expiration date, or None when the card states none.
        now: aware UTC.

    Raises:
        WrongIdentityError: another subject, other alternative names, other key usage or extended
            key usage, or a CA certificate.
        CertificateMismatchError: not valid now, or valid past the card's expiry.
    """
    where = f"slot {slot}: the certificate authority returned a certificate"
    if _name_attributes(new.subject) != _name_attributes(old.subject):
        raise WrongIdentityError(f"{where} for another subject ({new.subject.rfc4514_string()} instead of "
                                 f"{old.subject.rfc4514_string()}); it was not written")
    old_names, new_names = alternative_names(old), alternative_names(new)
    if new_names != old_names:
        added, dropped = sorted(new_names - old_names), sorted(old_names - new_names)
        what = "; ".join(part for part in (f"it adds {', '.join(added)}" if added else "",
                                           f"it drops {', '.join(dropped)}" if dropped else "") if part)
        raise WrongIdentityError(f"{where} for other alternative names ({what}); it was not written")
    for ext in new.extensions:
        if ext.oid in CA_ONLY_EXTENSIONS:
            raise WrongIdentityError(f"{where} with {CA_ONLY_EXTENSIONS[ext.oid]} (OID {ext.oid.dotted_string}), an "
                                     "extension for CA certificates only; it was not written")
        if ext.critical and ext.oid not in UNDERSTOOD_EXTENSIONS:
            raise WrongIdentityError(f"{where} with an unknown critical extension (OID {ext.oid.dotted_string}) that "
                                     "relying parties would refuse; it was not written")
    old_cp, new_cp = certificate_policies(old), certificate_policies(new)
    if new_cp != old_cp:
        raise WrongIdentityError(f"{where} with other certificate policies ({_show(new_cp)} instead of "
                                 f"{_show(old_cp)}); it was not written")
    bc = _ext(new, ExtensionOID.BASIC_CONSTRAINTS)
    new_ku = key_usages(new)
    if isinstance(bc, x509.BasicConstraints) and bc.ca:
        raise WrongIdentityError(f"{where} that is a CA certificate (basicConstraints CA:TRUE), not a holder's "
                                 "certificate; it was not written")
    if new_ku and new_ku & {"key_cert_sign", "crl_sign"}:
        raise WrongIdentityError(f"{where} that may sign certificates or CRLs (key usage "
                                 f"{_show(new_ku & {'key_cert_sign', 'crl_sign'})}); it was not written")
    old_ku = key_usages(old)
    if old_ku is not None and new_ku != old_ku:
        raise WrongIdentityError(f"{where} with another key usage ({_show(new_ku)} instead of {_show(old_ku)}); "
                                 "it was not written")
    old_eku, new_eku = extended_key_usages(old), extended_key_usages(new)
    if old_eku is not None and new_eku != old_eku:
        raise WrongIdentityError(f"{where} with another extended key usage ({_show(new_eku)} instead of "
                                 f"{_show(old_eku)}); it was not written")
    if not new.not_valid_before_utc <= now < new.not_valid_after_utc:
        raise CertificateMismatchError(f"{where} that is not valid now (valid {new.not_valid_before_utc:%Y-%m-%d} "
                                       f"to {new.not_valid_after_utc:%Y-%m-%d}); it was not written")
    limit = card_expiry_limit(card_expiry)
    if limit is not None and new.not_valid_after_utc > limit:
        raise CertificateMismatchError(
            f"{where} valid until {new.not_valid_after_utc:%Y-%m-%d}, past this card's own expiry "
            f"({card_expiry:%Y-%m-%d}, CHUID); a certificate may not outlive its card, so it was not written",
            next_step=_RA_NEXT_STEP)


__all__ = [
    "CertificateMismatchError",
    "WrongIdentityError",
    "CA_ONLY_EXTENSIONS",
    "UNDERSTOOD_EXTENSIONS",
    "alternative_names",
    "certificate_policies",
    "card_expiry_limit",
    "check_renewal_certificate",
    "extended_key_usages",
    "key_usages",
]
