"""SCEP's EnvelopedData (RFC 5652 §6, RFC 8894 §3.2.2 and §3.3.2): a request's content encrypted to
the CA, and a CertRep's content decrypted with the card key that signed the request.

The card does the RSA decryption of the content-encryption key (``CardKey.rsa_decipher``); nothing
reaches the card unless the envelope parses and its encrypted key is exactly one RSA block of the
card key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asn1crypto import cms, core, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from card.enrollment.base import CardKey, IssuerRejected, IssuerReplyInvalid

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES  # type: ignore[misc]  # cryptography < 43 has it here

PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, UnicodeError,
                RecursionError, UnsupportedAlgorithm, x509.InvalidVersion)
"""What asn1crypto and cryptography raise on malformed DER (asn1crypto parses lazily, so a field's
first access can raise any of these): turned into IssuerReplyInvalid at the parsers below."""


def _encrypted_content(eci: cms.EncryptedContentInfo) -> bytes:
    """The ``[0]`` encryptedContent, primitive or constructed (a BER chain of OCTET STRINGs, as Go
    writes it; asn1crypto accepts only the primitive form)."""
    data, pos, out = eci.contents, 0, b""
    while pos < len(data):
        cls, method, tag, header, contents, trailer = parser.parse(data[pos:])
        pos += len(header) + len(contents) + len(trailer)
        if cls == 2 and tag == 0:  # context-specific [0]
            if method == 0:
                return bytes(contents)
            inner = 0
            while inner < len(contents):
                _, _, _, h, c, t = parser.parse(contents[inner:])
                out += c
                inner += len(h) + len(c) + len(t)
            return out
    raise ValueError("the SCEP reply carries no encrypted content")


def _pkcs1_type2_unpad(block: bytes) -> bytes:
    """Remove EME-PKCS1-v1_5 padding (RFC 8017 §7.2.2) from a decrypted 256-byte block."""
    if len(block) < 11 or block[0] != 0 or block[1] != 2:
        raise IssuerRejected("the CA's reply could not be decrypted with the card key")
    sep = block.find(b"\x00", 2)
    if sep < 10:
        raise IssuerRejected("the CA's reply could not be decrypted with the card key")
    return block[sep + 1 :]


_CIPHERS = {"des": (8, 8), "tripledes_3key": (24, 8), "aes128_cbc": (16, 16), "aes192_cbc": (24, 16),
            "aes256_cbc": (32, 16)}
"""Content-encryption algorithms of a CertRep: asn1crypto name → (key bytes, IV bytes)."""


@dataclass(frozen=True)
class Envelope:
    """The parts of a CertRep's EnvelopedData (RFC 5652 §6) needed to decrypt it."""

    encrypted_key: bytes
    cipher: str
    iv: bytes
    ciphertext: bytes


def parse_envelope(enveloped_der: bytes) -> Envelope:
    """Parse the EnvelopedData inside a SUCCESS CertRep (RFC 8894 §3.3.2; one KeyTransRecipientInfo).

    Raises:
        IssuerReplyInvalid: anything that is not such an EnvelopedData.
    """
    try:
        info = cms.ContentInfo.load(enveloped_der)
        if info["content_type"].native != "enveloped_data":
            raise ValueError("not an EnvelopedData")
        env = info["content"]
        recipient = env["recipient_infos"][0]
        if recipient.name != "ktri":
            raise ValueError("not a key-transport recipient")
        encrypted_key = recipient.chosen["encrypted_key"].native
        eci = env["encrypted_content_info"]
        alg = eci["content_encryption_algorithm"]
        cipher = alg["algorithm"].native
        iv = alg["parameters"].native
        ciphertext = _encrypted_content(eci)
        if not (isinstance(encrypted_key, bytes) and isinstance(cipher, str) and isinstance(iv, bytes)):
            raise ValueError("missing key, algorithm or IV")
        return Envelope(encrypted_key, cipher, iv, ciphertext)
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the SCEP reply's encrypted content does not parse") from exc


def encrypt_for_ca(content: bytes, ca: x509.Certificate, caps: set[str], allow_legacy: bool) -> bytes:
    """``content`` (DER: a CSR, or IssuerAndSubject) as an EnvelopedData DER to the CA's RSA key
    (RFC 8894 §3.2.2): AES-128-CBC when the CA offers ``AES`` (GetCACaps), else 3DES when it offers
    ``DES3`` or ``allow_legacy`` is set.

    Raises:
        IssuerRejected: the CA offers neither cipher and legacy algorithms are not allowed.
    """
    if "AES" in caps:
        cek, alg = os.urandom(16), "aes128_cbc"
        iv = os.urandom(16)
        cipher = Cipher(algorithms.AES(cek), modes.CBC(iv))
        block_bits = 128
    elif "DES3" in caps or allow_legacy:
        cek, alg = os.urandom(24), "tripledes_3key"
        iv = os.urandom(8)
        cipher = Cipher(TripleDES(cek), modes.CBC(iv))
        block_bits = 64
    else:
        raise IssuerRejected("the SCEP server offers neither AES nor 3DES; allow_legacy_algorithms is off")
    padder = padding.PKCS7(block_bits).padder()
    enc = cipher.encryptor()
    ciphertext = enc.update(padder.update(content) + padder.finalize()) + enc.finalize()
    ca_key = ca.public_key()
    assert isinstance(ca_key, rsa.RSAPublicKey)
    asn1_ca = asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))
    enveloped: bytes = cms.ContentInfo({"content_type": "enveloped_data", "content": cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                "issuer": asn1_ca.issuer, "serial_number": asn1_ca.serial_number})),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": ca_key.encrypt(cek, asym_padding.PKCS1v15()),
        }))],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": alg, "parameters": core.OctetString(iv)},
            "encrypted_content": ciphertext,
        },
    })}).dump()
    return enveloped


def decrypt_reply(enveloped_der: bytes, recipient_key: CardKey, allow_legacy: bool) -> bytes:
    """The plaintext of a SUCCESS CertRep's EnvelopedData (RFC 8894 §3.3.2), its key decrypted on the
    card by ``recipient_key`` (the key that signed the request). Single DES only with ``allow_legacy``.

    Raises:
        IssuerReplyInvalid: the envelope does not parse, or its encrypted key is not one block of the card key.
        IssuerRejected: a cipher not allowed, a block or content that does not decrypt.
    """
    env = parse_envelope(enveloped_der)
    key_size = recipient_key.public_key.key_size if isinstance(recipient_key.public_key, rsa.RSAPublicKey) else 0
    if len(env.encrypted_key) != (key_size + 7) // 8:
        raise IssuerReplyInvalid("the SCEP reply's encrypted key is not one block of the card key")
    name = env.cipher
    if name == "des" and not allow_legacy:
        raise IssuerRejected("the SCEP server encrypted its reply with single DES; set "
                             "issuer.allow_legacy_algorithms = true to accept this server's SHA-1/DES replies")
    if name not in _CIPHERS:
        raise IssuerRejected(f"the SCEP reply uses an unsupported cipher ({name[:40]})")
    key_len, iv_len = _CIPHERS[name]
    if len(env.iv) != iv_len:
        raise IssuerReplyInvalid("the SCEP reply's cipher parameters are wrong")
    cek = _pkcs1_type2_unpad(recipient_key.rsa_decipher(env.encrypted_key))  # on the card
    if len(cek) != key_len:
        raise IssuerRejected("the SCEP reply could not be decrypted with the card key")
    if name == "des":
        cipher, bits = Cipher(TripleDES(cek * 3), modes.CBC(env.iv)), 64  # DES = 3DES with K1=K2=K3
    elif name == "tripledes_3key":
        cipher, bits = Cipher(TripleDES(cek), modes.CBC(env.iv)), 64
    else:
        cipher, bits = Cipher(algorithms.AES(cek), modes.CBC(env.iv)), 128
    try:
        dec = cipher.decryptor()
        padded = dec.update(env.ciphertext) + dec.finalize()
        unpadder = padding.PKCS7(bits).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise IssuerRejected("the SCEP reply could not be decrypted") from exc
