"""A SCEP CA of our own for the PENDING path (RFC 8894 §3.3.2, §3.3.3), which scepserver 2.1.0
does not have: it answers a PKCSReq/RenewalReq PENDING, keeps the request under its transactionID,
and answers each CertPoll PENDING until APPROVE_AFTER polls have arrived, then issues the
certificate (SUCCESS, encrypted to the request's signer). APPROVE_AFTER -1 = never.

Usage: ``scep_pending_ca.py DIR PORT APPROVE_AFTER``. DIR holds ``ca.der`` and ``ca.key`` (PKCS#8
PEM); every message type received is appended to ``DIR/requests`` (``19 20 20 …``), and a CertPoll
whose IssuerAndSubject does not name this CA and the pending subject is answered FAILURE badCertId.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import os
import sys
from pathlib import Path

from asn1crypto import cms, core
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

directory, port, approve_after = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ca_der = (directory / "ca.der").read_bytes()
ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
ca = ax509.Certificate.load(ca_der)
ca_x509 = x509.load_der_x509_certificate(ca_der)
pending: dict[str, dict] = {}


class IssuerAndSubject(core.Sequence):
    _fields = [("issuer", ax509.Name), ("subject", ax509.Name)]


def attr(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def open_envelope(enveloped_der: bytes) -> bytes:
    env = cms.ContentInfo.load(enveloped_der)["content"]
    cek = ca_key.decrypt(env["recipient_infos"][0].chosen["encrypted_key"].native, asym_padding.PKCS1v15())
    eci = env["encrypted_content_info"]
    iv = eci["content_encryption_algorithm"]["parameters"].native
    dec = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    padded = dec.update(eci["encrypted_content"].native) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def envelope_to(recipient: ax509.Certificate, content: bytes) -> bytes:
    cek, iv = os.urandom(16), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padder.update(content) + padder.finalize()) + enc.finalize()
    key = x509.load_der_x509_certificate(recipient.dump()).public_key()
    return cms.ContentInfo({"content_type": "enveloped_data", "content": cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                "issuer": recipient.issuer, "serial_number": recipient.serial_number})),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": key.encrypt(cek, asym_padding.PKCS1v15()),
        }))],
        "encrypted_content_info": {"content_type": "data", "content_encryption_algorithm": {
            "algorithm": "aes128_cbc", "parameters": core.OctetString(iv)}, "encrypted_content": ciphertext},
    })}).dump()


def issue(csr_der: bytes) -> bytes:
    csr = x509.load_der_x509_csr(csr_der)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_x509.subject)
               .public_key(csr.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
               # scepserver 2.1.0's profile: digitalSignature, clientAuth, and the CSR's alternative names
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
               .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False))
    for ext in csr.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(ca_key, hashes.SHA256())
    certs_only = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1", "digest_algorithms": [], "encap_content_info": {"content_type": "data"},
        "certificates": [ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))],
        "signer_infos": []})})
    return certs_only.dump()


def cert_rep(txid: str, nonce: bytes, status: str, content: bytes | None = None, fail_info: str | None = None) -> bytes:
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content or b"").digest()]}),
        attr("2.16.840.1.113733.1.9.2", core.PrintableString("3")),
        attr("2.16.840.1.113733.1.9.3", core.PrintableString(status)),
        attr("2.16.840.1.113733.1.9.7", core.PrintableString(txid)),
        attr("2.16.840.1.113733.1.9.6", core.OctetString(nonce)),
        attr("2.16.840.1.113733.1.9.5", core.OctetString(os.urandom(16))),
    ]
    if fail_info is not None:
        attrs.append(attr("2.16.840.1.113733.1.9.4", core.PrintableString(fail_info)))
    signed = cms.CMSAttributes(attrs)
    signature = ca_key.sign(signed.dump(), asym_padding.PKCS1v15(), hashes.SHA256())
    signer = cms.SignerInfo({"version": "v1", "sid": cms.SignerIdentifier(name="issuer_and_serial_number",
        value=cms.IssuerAndSerialNumber({"issuer": ca.issuer, "serial_number": ca.serial_number})),
        "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": signed,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"}, "signature": signature})
    encap = {"content_type": "data"} if content is None else {"content_type": "data", "content": content}
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1", "digest_algorithms": [{"algorithm": "sha256"}], "encap_content_info": encap,
        "certificates": [ca], "signer_infos": [signer]})}).dump()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def reply(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if "GetCACaps" in self.path:
            self.reply(b"POSTPKIOperation\nSHA-256\nAES\n", "text/plain")
        else:
            self.reply(ca_der, "application/x-x509-ca-cert")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signed = cms.ContentInfo.load(body)["content"]
        values = {a["type"].dotted: a["values"][0] for a in signed["signer_infos"][0]["signed_attrs"]}

        def get(oid: str) -> core.Asn1Value:
            value = values[oid]
            return value.parsed if isinstance(value, core.Any) else value

        msg_type = get("2.16.840.1.113733.1.9.2").native
        txid = get("2.16.840.1.113733.1.9.7").native
        nonce = core.OctetString.load(get("2.16.840.1.113733.1.9.5").dump()).native
        with open(directory / "requests", "a") as fh:
            fh.write(f"{msg_type} ")
        content = open_envelope(signed["encap_content_info"]["content"].native)
        if msg_type in ("19", "17"):
            pending[txid] = {"csr": content, "signer": signed["certificates"][0].chosen, "polls": 0,
                             "subject": x509.load_der_x509_csr(content).subject.public_bytes()}
        elif msg_type == "20":
            ias = IssuerAndSubject.load(content)
            request = pending.get(txid)
            if (request is None or ias["issuer"].dump() != ca.subject.dump()
                    or ias["subject"].dump() != request["subject"]):
                self.reply(cert_rep(txid, nonce, "2", fail_info="4"), "application/x-pki-message")
                return
            request["polls"] += 1
        request = pending[txid]
        if approve_after >= 0 and request["polls"] >= approve_after:
            enveloped = envelope_to(request["signer"], issue(request["csr"]))
            self.reply(cert_rep(txid, nonce, "0", enveloped), "application/x-pki-message")
        else:
            self.reply(cert_rep(txid, nonce, "3"), "application/x-pki-message")


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
