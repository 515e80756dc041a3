"""PKCS#10 certificate requests signed by a card-held key (RFC 2986).

``cryptography`` cannot sign with a key it does not hold, so the CertificationRequestInfo is
built with ``asn1crypto``, its DER is signed on the card, and the card's signature goes into
the BIT STRING unchanged (DER ECDSA as the card returns it, F11). The finished CSR is parsed
back with ``cryptography`` and its signature verified before anyone sees it.
"""

from __future__ import annotations

from collections.abc import Callable

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import public_key_der
from card.errors import CardError
from card.secret import Secret, require_secret


class CsrError(CardError):
    """The CSR signed by the card does not verify (wrong key in the slot, or a bad signature)."""

    title = "Certificate request invalid"
    code = "CSR"


def build_csr(subject: x509.Name, public_key: PublicKeyTypes, sign: Callable[[bytes], bytes],
              challenge_password: Secret | None = None,
              alternative_names: x509.SubjectAlternativeName | None = None) -> x509.CertificateSigningRequest:
    """Build a CSR for ``public_key`` with ``subject``, signed by ``sign`` (SHA-256 on the card).

    Args:
        sign: signs the DER CertificationRequestInfo; returns an RSA PKCS#1 v1.5 or DER ECDSA signature.
        challenge_password: the SCEP challengePassword attribute (PKCS#9, RFC 8894 §3.2.1.4.1), when
            the CA wants one; revealed here only, into the request's DER.
        alternative_names: the old certificate's subjectAltName, asked for again in a PKCS#9
            extensionRequest attribute (RFC 2985 §5.4.2): a CA that copies names from the CSR
            (scepserver does) then keeps the holder's e-mail address and UPN.

    Raises:
        CsrError: the signature does not verify with ``public_key``.
    """
    attributes: list[dict[str, object]] = []
    if challenge_password:
        attributes.append({"type": "challenge_password",
                           "values": [asn1_x509.DirectoryString(
                               name="utf8_string",
                               value=require_secret(challenge_password, "challenge password").reveal_text())]})
    if alternative_names is not None and len(alternative_names):
        attributes.append({"type": "extension_request", "values": [[{
            "extn_id": "subject_alt_name", "critical": False,
            "extn_value": asn1_x509.GeneralNames.load(alternative_names.public_bytes())}]]})
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": asn1_x509.Name.load(subject.public_bytes()),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(public_key_der(public_key)),
        "attributes": attributes,
    })
    signature = sign(info.dump())
    algorithm = "sha256_rsa" if isinstance(public_key, rsa.RSAPublicKey) else "sha256_ecdsa"
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    })
    csr = x509.load_der_x509_csr(request.dump())
    if not csr.is_signature_valid:
        raise CsrError("the card's signature on the certificate request does not verify with the generated key")
    return csr
