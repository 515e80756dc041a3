"""SCEP's messages (RFC 8894 §3): the signed pkiMessage a request or CertPoll travels in, the
CertRep that answers it (verified against the pinned CA), and the GetCACaps / GetCACert replies.

Every parser here turns malformed DER into IssuerReplyInvalid (never another exception): the CA,
or a proxy in between, may answer anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import key_matches, public_key_der
from card.enrollment.base import CardKey, IssuerRejected, IssuerReplyInvalid
from card.enrollment.scep_envelope import PARSE_ERRORS, encrypt_for_ca

OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"

MESSAGE_CERT_REP = "3"
MESSAGE_PKCS_REQ = "19"
MESSAGE_RENEWAL_REQ = "17"
MESSAGE_CERT_POLL = "20"
STATUS_SUCCESS, STATUS_FAILURE, STATUS_PENDING = "0", "2", "3"

FAIL_INFO = {
    "0": "badAlg: the CA does not accept the algorithm used",
    "1": "badMessageCheck: the CA could not verify the request's signature",
    "2": "badRequest: the CA refused the request (for example a wrong challenge password, or a "
         "certificate for this name already exists)",
    "3": "badTime: the request's time is outside the CA's window (check this computer's clock)",
    "4": "badCertId: the CA does not know the certificate referred to",
}


def _attr(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def _attr_values(attrs: cms.CMSAttributes) -> dict[str, bytes]:
    """Signed attributes by dotted OID → the raw contents of the first value."""
    out: dict[str, bytes] = {}
    for attr in attrs:
        if len(attr["values"]) == 0:
            continue
        value = attr["values"][0]
        contents = value.contents if not isinstance(value, core.Any) else value.parsed.contents
        out[attr["type"].dotted] = contents if isinstance(contents, bytes) else b""
    return out


def fail_text(fail_info: bytes) -> str:
    """A CertRep's failInfo (RFC 8894 §3.2.1.4.5) in words."""
    code = fail_info.decode("ascii", "replace")
    return FAIL_INFO.get(code, f"failInfo {code}")


def parse_ca_caps(body: bytes) -> set[str]:
    """A GetCACaps reply (RFC 8894 §3.5.2): one capability per line, upper-cased; anything else in
    the body (binary junk, an HTML page) is simply not a capability. Never raises."""
    text = body.decode("ascii", "replace")
    return {token for line in text.splitlines()
            if (token := line.strip().upper()) and len(token) <= 64 and token.isascii() and token.isprintable()}


def parse_ca_certificates(body: bytes, content_type: str) -> list[x509.Certificate]:
    """A GetCACert reply (RFC 8894 §4.2.1): one DER certificate (``application/x-x509-ca-cert``),
    or a degenerate certs-only PKCS#7 SignedData (``application/x-x509-ca-ra-cert``, §4.2.1.2).

    Returns:
        The certificates in the order sent (at least one); the first one's public key parses.

    Raises:
        IssuerReplyInvalid: anything else.
    """
    try:
        if "x-x509-ca-ra-cert" in content_type.lower():
            info = cms.ContentInfo.load(body)
            if info["content_type"].native != "signed_data":
                raise ValueError("not a PKCS#7 SignedData")
            choices = info["content"]["certificates"]
            certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in choices] if choices.native else []
        else:
            certs = [x509.load_der_x509_certificate(body)]
        if not certs:
            raise ValueError("no certificate")
        certs[0].public_key()
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the SCEP server's CA certificate (GetCACert) does not parse; nothing was changed") from exc
    return certs


@dataclass(frozen=True)
class CertRep:
    """The parts of a CertRep (RFC 8894 §3.3.2) that the client checks, as parsed from the reply.

    ``signed_attributes`` are the DER bytes the signature covers (the SET OF, RFC 5652 §5.4);
    ``attributes`` map dotted OIDs to the contents octets of their first value.
    """

    digest_algorithm: str
    signature: bytes
    signed_attributes: bytes
    attributes: dict[str, bytes]
    message_digest: bytes | None
    content: bytes | None


def parse_cert_rep(reply: bytes) -> CertRep:
    """Parse a PKIOperation reply as SignedData (RFC 8894 §3.3.2, RFC 5652 §5) without checking it.

    Raises:
        IssuerReplyInvalid: not a SignedData with a signer and signed attributes.
    """
    try:
        info = cms.ContentInfo.load(reply)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a SignedData")
        signed = info["content"]
        signer = signed["signer_infos"][0]
        attrs = signer["signed_attrs"]
        if not isinstance(attrs, cms.CMSAttributes) or len(attrs) == 0:
            raise ValueError("no signed attributes")
        values = _attr_values(attrs)
        digest = signer["digest_algorithm"]["algorithm"].native
        signature = signer["signature"].native
        message_digest = next((a["values"][0].native for a in attrs if a["type"].native == "message_digest"), None)
        content = signed["encap_content_info"]["content"].native
        if not isinstance(digest, str) or not isinstance(signature, bytes):
            raise ValueError("no digest algorithm or signature")
        if message_digest is not None and not isinstance(message_digest, bytes):
            raise ValueError("messageDigest is not an OCTET STRING")
        if content is not None and not isinstance(content, bytes):
            raise ValueError("the content is not an OCTET STRING")
        return CertRep(digest, signature, b"\x31" + attrs.dump()[1:], values, message_digest, content)
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the SCEP server's reply is not a SCEP message") from exc


class IssuerAndSubject(core.Sequence):
    """The content of a CertPoll (RFC 8894 §3.3.3): the CA's name and the requested subject."""

    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def issuer_and_subject(ca: x509.Certificate, subject: x509.Name) -> bytes:
    """The DER content of a CertPoll (RFC 8894 §3.3.3) for ``subject`` at the CA ``ca``."""
    content = IssuerAndSubject({  # type: ignore[no-untyped-call]  # asn1crypto's constructors are unannotated
        "issuer": asn1_x509.Name.load(ca.subject.public_bytes()), "subject": asn1_x509.Name.load(subject.public_bytes())})
    der: bytes = content.dump()  # type: ignore[no-untyped-call]  # asn1crypto's dump() is unannotated
    return der


def transport_certificate(card_key: CardKey) -> asn1_x509.Certificate:
    """A self-signed certificate for the new key, valid one hour, signed on the card (RFC 8894 §2.3)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    name = asn1_x509.Name.build({"common_name": "cardrenew SCEP transport"})
    tbs = asn1_x509.TbsCertificate({
        "version": "v3",
        "serial_number": int.from_bytes(os.urandom(8), "big"),
        "signature": {"algorithm": "sha256_rsa"},
        "issuer": name,
        "validity": {"not_before": asn1_x509.Time(name="utc_time", value=now - dt.timedelta(minutes=5)),
                     "not_after": asn1_x509.Time(name="utc_time", value=now + dt.timedelta(hours=1))},
        "subject": name,
        "subject_public_key_info": asn1_keys.PublicKeyInfo.load(public_key_der(card_key.public_key)),
    })
    signature = card_key.sign(tbs.dump())
    return asn1_x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": {"algorithm": "sha256_rsa"},
                                  "signature_value": signature})


def pki_message(content: bytes, ca: x509.Certificate, signer_cert: asn1_x509.Certificate, signer_key: CardKey,
                transaction_id: str, nonce: bytes, message_type: str, caps: set[str], allow_legacy: bool) -> bytes:
    """SignedData (signed on the card by ``signer_key``, RFC 8894 §3.2.1) around EnvelopedData to
    the CA (§3.2.2, :func:`~card.enrollment.scep_envelope.encrypt_for_ca`) holding ``content`` (DER:
    the CSR, or IssuerAndSubject for a CertPoll). ``caps``: the CA's GetCACaps.

    Raises:
        IssuerRejected: the CA offers no cipher this client may use.
    """
    enveloped = encrypt_for_ca(content, ca, caps, allow_legacy)
    signed_attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(enveloped).digest()]}),
        _attr(OID_MESSAGE_TYPE, core.PrintableString(message_type)),
        _attr(OID_TRANSACTION_ID, core.PrintableString(transaction_id)),
        _attr(OID_SENDER_NONCE, core.OctetString(nonce)),
    ])
    signature = signer_key.sign(signed_attrs.dump())
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
            "issuer": signer_cert.issuer, "serial_number": signer_cert.serial_number})),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": signature,
    })
    message: bytes = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data", "content": enveloped},
        "certificates": [signer_cert],
        "signer_infos": [signer],
    })}).dump()
    return message


def read_cert_rep(reply: bytes, ca: x509.Certificate, transaction_id: str, nonce: bytes,
                  allow_legacy: bool) -> tuple[str, bytes]:
    """Verify a CertRep (RFC 8894 §3.3.2); returns (pkiStatus, enveloped content or failInfo). A
    SHA-1 signature is accepted only with ``allow_legacy``.

    Raises:
        IssuerReplyInvalid: not a SCEP message, or SUCCESS without content.
        IssuerRejected: a check failed (signer, type, transaction, nonce, digest, algorithm).
    """
    rep = parse_cert_rep(reply)
    digest_name = rep.digest_algorithm
    if digest_name not in ("sha256", "sha384", "sha512") and not (
            digest_name == "sha1" and allow_legacy):
        raise IssuerRejected(f"the SCEP server signed its reply with {digest_name.upper()[:40]}; set "
                             "issuer.allow_legacy_algorithms = true to accept this server's SHA-1/DES replies")
    digest = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
              "sha512": hashes.SHA512()}[digest_name]
    ca_key = ca.public_key()
    if not isinstance(ca_key, rsa.RSAPublicKey):
        raise IssuerRejected("the SCEP CA certificate holds no RSA key")
    try:
        ca_key.verify(rep.signature, rep.signed_attributes, asym_padding.PKCS1v15(), digest)
    except (InvalidSignature, ValueError) as exc:
        raise IssuerRejected("the SCEP reply is not signed by the pinned CA") from exc
    values = rep.attributes
    if values.get(OID_MESSAGE_TYPE, b"") != MESSAGE_CERT_REP.encode():
        raise IssuerRejected("the SCEP reply is not a CertRep")
    if values.get(OID_TRANSACTION_ID, b"") != transaction_id.encode():
        raise IssuerRejected("the SCEP reply belongs to another transaction")
    if values.get(OID_RECIPIENT_NONCE) != nonce:
        raise IssuerRejected("the SCEP reply does not answer our request (recipientNonce differs)")
    status = values.get(OID_PKI_STATUS, b"").decode("ascii", "replace")
    if status == STATUS_FAILURE:
        return status, values.get(OID_FAIL_INFO, b"?")
    if status == STATUS_PENDING:
        return status, b""
    if status != STATUS_SUCCESS:
        raise IssuerRejected(f"the SCEP reply has an unknown pkiStatus {status[:20]!r}")
    if rep.content is None:
        raise IssuerReplyInvalid("the SCEP server's SUCCESS reply carries no content")
    h = hashes.Hash(digest)
    h.update(rep.content)
    if rep.message_digest != h.finalize():
        raise IssuerRejected("the SCEP reply's content does not match its signed digest")
    return status, rep.content


def certificate_for_key(certs_only_der: bytes, new_key: PublicKeyTypes) -> x509.Certificate:
    """The certificate for ``new_key`` in a decrypted CertRep's degenerate certs-only SignedData
    (RFC 8894 §3.3.2).

    Raises:
        IssuerReplyInvalid: the certificates do not parse.
        IssuerRejected: none of them is for ``new_key``.
    """
    try:
        certs_only = cms.ContentInfo.load(certs_only_der)
        if certs_only["content_type"].native != "signed_data":
            raise ValueError("not a certs-only SignedData")
        choices = certs_only["content"]["certificates"]
        certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in choices] if choices.native else []
        for cert in certs:
            if key_matches(cert, new_key):
                return cert
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the certificates in the SCEP reply do not parse") from exc
    raise IssuerRejected("the SCEP reply holds no certificate for the key generated on the card")
