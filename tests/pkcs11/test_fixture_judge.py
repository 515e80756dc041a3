"""The SoftHSM2 fixture and the pkcs11-tool judge, checked against the real tools: the token holds
the two CA-issued certificates with working keys, and the judge notices a missing or mismatched
key (so a test that relies on it can fail)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from card.certificates import key_matches
from card.enrollment.local import LocalCA
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import SoftHsm


def test_the_token_holds_two_ca_issued_certificates_with_working_keys(softhsm: SoftHsm, ca: LocalCA) -> None:
    pairs = judge.working_pairs(softhsm)
    assert {key_id: label for key_id, (label, _) in pairs.items()} == {
        b"\x01": "Authentication certificate", b"\x02": "Signature certificate"}
    rsa_key, ec_key = (pairs[i][1].public_key() for i in (b"\x01", b"\x02"))
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 2048
    assert isinstance(ec_key, ec.EllipticCurvePublicKey) and isinstance(ec_key.curve, ec.SECP256R1)
    for _, cert in pairs.values():
        assert cert.issuer == ca.cert.subject
        assert cert in [c.certificate for c in softhsm.certificates]
    private = [o for o in judge.objects(softhsm) if o.kind == "Private Key"]
    assert all("never extractable" in o.access and "sensitive" in o.access for o in private)


def test_the_judge_sees_a_certificate_whose_key_is_gone(softhsm: SoftHsm) -> None:
    softhsm.tool("--delete-object", "--type", "privkey", "--id", "01")
    assert sorted(judge.working_pairs(softhsm)) == [b"\x02"]
    assert [o.key_id for o in judge.certificates_without_key(softhsm)] == [b"\x01"]


def test_the_judge_sees_a_certificate_that_does_not_match_its_key(softhsm: SoftHsm) -> None:
    other = softhsm.certificates[1].certificate  # the P-256 certificate, written over the RSA key's id
    softhsm.tool("--delete-object", "--type", "cert", "--id", "01")
    der = softhsm.directory / "other.der"
    der.write_bytes(other.public_bytes(Encoding.DER))
    softhsm.tool("--write-object", str(der), "--type", "cert", "--id", "01", "--label", "wrong")
    assert not key_matches(other, softhsm.certificates[0].certificate.public_key())
    assert sorted(judge.working_pairs(softhsm)) == [b"\x02"]
    assert judge.certificates_without_key(softhsm) == []  # the key is there, it just does not match


def test_each_test_gets_its_own_token_directory(softhsm: SoftHsm, softhsm_template: SoftHsm) -> None:
    softhsm.tool("--delete-object", "--type", "cert", "--id", "02")
    assert sorted(judge.working_pairs(softhsm_template)) == [b"\x01", b"\x02"]
    assert softhsm.token_dir != softhsm_template.token_dir
