"""Pkcs11Token against a real SoftHSM2 token, every operation judged from outside by OpenSC's
pkcs11-tool (tests/pkcs11/judge.py) or by the CA's certificate — never by card.pkcs11 itself."""

from __future__ import annotations

import os

import pkcs11 as binding
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from card.certificates import key_matches
from card.enrollment.local import LocalCA
from card.errors import CardError, NotSupportedError, TokenKeyError
from card.piv.model import KeyType
from card.piv.quirks import no_key_of_this_type
from card.secret import Secret
from card.token import KeyRef, Token, TokenInterface
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import SoftHsm
from tests.pkcs11.tokens import issue_der, open_token

AUTH, SIGN = KeyRef(b"\x01", "Authentication certificate"), KeyRef(b"\x02", "Signature certificate")


def test_it_is_a_token_named_as_the_module_names_it(softhsm: SoftHsm) -> None:
    token = open_token(softhsm, log_in=False)
    assert isinstance(token, Token)
    listed = softhsm.tool("-L", login=False).stdout.decode()
    assert token.info.interface is TokenInterface.PKCS11
    assert token.info.label == softhsm.label and token.info.side_by_side
    assert (token.info.manufacturer, token.info.model) == ("SoftHSM project", "SoftHSM v2")
    assert f"serial num         : {token.info.serial}" in listed
    assert token.card_identity() is None
    assert token.start() == {KeyType.RSA2048, KeyType.ECCP256, KeyType.ECCP384}
    token.close()


def test_the_certificates_pair_with_their_keys_by_cka_id(softhsm: SoftHsm) -> None:
    token = open_token(softhsm, log_in=False)
    before = {c.ref.key_id: c for c in token.certificates()}
    assert {k: (c.ref.label, c.has_private_key) for k, c in before.items()} == {
        b"\x01": ("Authentication certificate", None), b"\x02": ("Signature certificate", None)}  # keys hidden before the PIN
    for made in softhsm.certificates:
        assert before[made.key_id].certificate == made.certificate and before[made.key_id].error is None
    token.log_in(Secret(softhsm.pin))
    assert {c.ref.key_id: c.has_private_key for c in token.certificates()} == {b"\x01": True, b"\x02": True}
    softhsm.tool("--delete-object", "--type", "privkey", "--id", "02")
    assert {c.ref.key_id: c.has_private_key for c in token.certificates()} == {b"\x01": True, b"\x02": False}
    assert token.certificate(KeyRef(b"\x07", "")).raw is None
    assert [r.key_id for r in token.key_refs()] == [c.ref.key_id for c in token.certificates()]
    token.close()


def test_an_unparsable_certificate_is_reported_for_itself_and_the_others_still_read(softhsm: SoftHsm) -> None:
    lib = binding.lib(str(softhsm.module))  # the test plants the junk with the binding directly
    with lib.get_token(token_label=softhsm.label).open(rw=True, user_pin=softhsm.pin) as session:
        session.create_object({binding.Attribute.CLASS: binding.ObjectClass.CERTIFICATE,
                               binding.Attribute.CERTIFICATE_TYPE: binding.CertificateType.X_509,
                               binding.Attribute.TOKEN: True, binding.Attribute.ID: b"\x05",
                               binding.Attribute.LABEL: "junk", binding.Attribute.SUBJECT: b"\x30\x00",
                               binding.Attribute.VALUE: b"\x30\x03\x02\x01\x00"})
    binding.unload(str(softhsm.module))
    token = open_token(softhsm)
    by_id = {c.ref.key_id: c for c in token.certificates()}
    assert by_id[b"\x05"].certificate is None and "not an X.509 certificate" in (by_id[b"\x05"].error or "")
    assert by_id[b"\x05"].raw == b"\x30\x03\x02\x01\x00" and by_id[b"\x05"].has_private_key is False
    assert by_id[b"\x01"].certificate is not None and by_id[b"\x02"].certificate is not None
    token.close()


def test_public_keys_are_those_the_certificates_certify(softhsm: SoftHsm) -> None:
    token = open_token(softhsm, log_in=False)
    for made in softhsm.certificates:
        key = token.public_key(KeyRef(made.key_id, made.label))
        assert key is not None and key_matches(made.certificate, key)
    assert token.public_key(KeyRef(b"\x09", "")) is None
    token.close()


@pytest.mark.parametrize(("ref", "key_type"), [(AUTH, KeyType.RSA2048), (SIGN, KeyType.ECCP256)])
def test_signatures_verify_with_the_certificate(softhsm: SoftHsm, ref: KeyRef, key_type: KeyType) -> None:
    token = open_token(softhsm)
    message = os.urandom(100)
    signature = token.sign(ref, key_type, message)
    cert = {c.key_id: c.certificate for c in softhsm.certificates}[ref.key_id]
    assert judge.verifies(cert, signature, message)  # RSA PKCS#1 v1.5 / DER ECDSA, SHA-256
    token.close()


def test_a_key_of_another_type_or_no_key_reads_as_a_piv_card_answers(softhsm: SoftHsm) -> None:
    token = open_token(softhsm)
    with pytest.raises(TokenKeyError) as other:
        token.sign(AUTH, KeyType.ECCP256, b"x")
    with pytest.raises(TokenKeyError) as none:
        token.sign(KeyRef(b"\x33", ""), KeyType.ECCP256, b"x")
    assert other.value.sw == 0x6A80 and none.value.sw == 0x6A88
    assert no_key_of_this_type(other.value.sw) and no_key_of_this_type(none.value.sw)
    token.close()


def test_raw_rsa_returns_the_padded_block(softhsm: SoftHsm) -> None:
    token = open_token(softhsm)
    key = softhsm.certificates[0].certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    block = token.decipher(AUTH, key.encrypt(b"the SCEP reply's key", padding.PKCS1v15()))
    assert len(block) == 256 and block[:2] == b"\x00\x02" and block.endswith(b"\x00the SCEP reply's key")
    with pytest.raises(TokenKeyError):
        token.decipher(SIGN, b"\x00" * 32)
    token.close()


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECCP256, KeyType.ECCP384])
def test_a_generated_key_lives_beside_the_old_ones_and_never_leaves_the_token(softhsm: SoftHsm, key_type: KeyType) -> None:
    token = open_token(softhsm)
    ref = KeyRef(b"\x10\x01", "Authentication certificate (renewing)")
    public = token.generate_key(ref, key_type)
    assert KeyType.of(public) is key_type and token.public_key(ref) is not None
    new = [o for o in judge.objects(softhsm) if o.key_id == ref.key_id]
    private = [o for o in new if o.kind == "Private Key"]
    assert sorted(o.kind for o in new) == ["Private Key", "Public Key"]
    assert all(o.label == ref.label for o in new)
    assert "never extractable" in private[0].access and "sensitive" in private[0].access
    assert "sign" in private[0].usage and ("decrypt" in private[0].usage) == key_type.is_rsa
    assert sorted(judge.working_pairs(softhsm)) == [b"\x01", b"\x02"]  # the old pairs still work
    signature = token.sign(ref, key_type, b"new key")
    verify = (lambda k: k.verify(signature, b"new key", padding.PKCS1v15(), hashes.SHA256())) if key_type.is_rsa \
        else (lambda k: k.verify(signature, b"new key", ec.ECDSA(hashes.SHA256())))
    verify(public)
    token.close()


def test_a_key_id_in_use_is_never_generated_over(softhsm: SoftHsm) -> None:
    token = open_token(softhsm)
    before = judge.objects(softhsm)
    with pytest.raises(CardError, match="already holds objects with CKA_ID 01"):
        token.generate_key(AUTH, KeyType.ECCP256)
    assert judge.objects(softhsm) == before
    token.close()


def test_a_written_certificate_works_with_its_key_and_replaces_the_old_one(softhsm: SoftHsm, ca: LocalCA) -> None:
    token = open_token(softhsm)
    ref = KeyRef(b"\x03", "new")
    public = token.generate_key(ref, KeyType.ECCP256)
    first, second = issue_der(ca, public), issue_der(ca, public, days=400)
    token.write_certificate(ref, first, "Signature certificate (renewing)")
    assert judge.working_pairs(softhsm)[b"\x03"][0] == "Signature certificate (renewing)"
    token.write_certificate(ref, second, "Signature certificate")
    certs = [o for o in judge.objects(softhsm) if o.kind == "Certificate" and o.key_id == b"\x03"]
    assert len(certs) == 1 and judge.read_certificate(softhsm, b"\x03").public_bytes(Encoding.DER) == second
    token.close()


def test_a_certificate_for_another_key_is_never_written(softhsm: SoftHsm, ca: LocalCA) -> None:
    token = open_token(softhsm)
    before = judge.objects(softhsm)
    other = softhsm.certificates[1].certificate.public_key()
    with pytest.raises(CardError, match="not for the key at CKA_ID 01"):
        token.write_certificate(AUTH, issue_der(ca, other), "x")
    assert judge.objects(softhsm) == before
    token.close()


def test_delete_and_relabel_change_only_the_key_named(softhsm: SoftHsm) -> None:
    token = open_token(softhsm)
    token.relabel(SIGN, "Signature certificate (superseded 2026-12-04)")
    assert {o.label for o in judge.objects(softhsm) if o.key_id == b"\x02"} == {"Signature certificate (superseded 2026-12-04)"}
    token.delete(AUTH)
    assert [o for o in judge.objects(softhsm) if o.key_id == b"\x01"] == []
    assert sorted(judge.working_pairs(softhsm)) == [b"\x02"]
    token.close()


def test_a_key_that_asks_for_the_pin_each_time_gets_it(softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> None:
    """CKA_ALWAYS_AUTHENTICATE (a PIV card's 9C through libykcs11 or OpenSC): SoftHSM2 refuses
    C_Sign until a context-specific login; python-pkcs11 sends it between C_SignInit and C_Sign."""
    softhsm.tool("--keypairgen", "--key-type", "EC:secp256r1", "--id", "09", "--label", "always", "--always-auth")
    token = open_token(softhsm)
    ref = KeyRef(b"\x09", "always")
    public = token.public_key(ref)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    before = token.calls
    signature = token.sign(ref, KeyType.ECCP256, b"m")
    always = token.calls - before
    public.verify(signature, b"m", ec.ECDSA(hashes.SHA256()))
    before = token.calls
    token.sign(SIGN, KeyType.ECCP256, b"m")
    assert always == token.calls - before + 1  # the one context-specific C_Login
    monkeypatch.setattr(token, "_pin_for", lambda always_authenticate: None)  # as if the binding sent no PIN
    with pytest.raises(CardError, match="CKR_USER_NOT_LOGGED_IN"):
        token.sign(ref, KeyType.ECCP256, b"m")
    token.close()


def test_a_piv_module_maps_its_key_ids_to_slots() -> None:
    from card.pkcs11.keys import PIV_IDS, profile_for
    from card.piv.model import Slot

    assert [PIV_IDS[bytes([i])] for i in (1, 2, 3, 4)] == [Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT,
                                                          Slot.CARD_AUTH]
    ykcs11, opensc, softhsm = (profile_for(m) for m in ("Yubico (www.yubico.com)", "piv_II", "SoftHSM project"))
    assert not ykcs11.side_by_side and ykcs11.so_writes and not ykcs11.extractable_attribute
    assert not opensc.side_by_side and not opensc.so_writes
    assert softhsm.side_by_side and not softhsm.so_writes and softhsm.extractable_attribute


def test_a_piv_module_refuses_delete_and_relabel(softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> None:
    from card.pkcs11.keys import profile_for

    token = open_token(softhsm)
    monkeypatch.setattr(token, "profile", profile_for("piv_II"))
    before = judge.objects(softhsm)
    with pytest.raises(NotSupportedError, match="cannot delete keys"):
        token.delete(AUTH)
    with pytest.raises(NotSupportedError, match="cannot rename keys"):
        token.relabel(AUTH, "x")
    with pytest.raises(NotSupportedError, match="none of the PIV slots"):
        token.generate_key(KeyRef(b"\x10", "x"), KeyType.ECCP256)
    assert judge.objects(softhsm) == before
    token.close()


def test_a_replacement_stopped_halfway_shows_the_newest_and_the_next_write_tidies(softhsm: SoftHsm, ca: LocalCA) -> None:
    token = open_token(softhsm)
    public = token.public_key(SIGN)
    assert public is not None
    older, newer = issue_der(ca, public, days=300), issue_der(ca, public, days=600)
    der = softhsm.directory / "newer.der"
    der.write_bytes(newer)  # as if create-new ran and the token was pulled before destroy-old
    softhsm.tool("--write-object", str(der), "--type", "cert", "--id", "02", "--label", "Signature certificate")
    shown = token.certificate(SIGN)
    assert shown.error is None and shown.raw == newer
    token.write_certificate(SIGN, older, "Signature certificate")
    certs = [o for o in judge.objects(softhsm) if o.kind == "Certificate" and o.key_id == b"\x02"]
    assert len(certs) == 1 and token.certificate(SIGN).raw == older
    token.close()


def test_certificates_for_different_keys_at_one_id_are_left_alone(softhsm: SoftHsm) -> None:
    der = softhsm.directory / "other.der"
    der.write_bytes(softhsm.certificates[0].certificate.public_bytes(Encoding.DER))  # the RSA one, at the EC key's id
    softhsm.tool("--write-object", str(der), "--type", "cert", "--id", "02", "--label", "Signature certificate")
    token = open_token(softhsm)
    shown = token.certificate(SIGN)
    assert shown.certificate is None and shown.error == "2 different certificates share CKA_ID 02; cardrenew changes none of them"
    token.close()


def test_the_pin_is_in_no_repr_and_no_log(softhsm: SoftHsm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    softhsm.tool("--keypairgen", "--key-type", "EC:secp256r1", "--id", "09", "--label", "always", "--always-auth")
    token = open_token(softhsm)
    token.sign(KeyRef(b"\x09", "always"), KeyType.ECCP256, b"m")  # the PIN goes to the module once more here
    shown = " ".join([repr(token), str(token.info), repr(token.__dict__), caplog.text])
    assert softhsm.pin not in shown and softhsm.pin.encode().hex() not in shown
    token.close()


def test_two_tokens_of_one_process_share_the_login_and_neither_logs_the_other_out(softhsm: SoftHsm) -> None:
    """PKCS#11 keeps one login per token and process: e.g. the door's token renewing while another
    part of the process (a status read) opens the same token."""
    first, second = open_token(softhsm), open_token(softhsm)  # the second C_Login: CKR_USER_ALREADY_LOGGED_IN
    assert {c.ref.key_id: c.has_private_key for c in second.certificates()} == {b"\x01": True, b"\x02": True}
    first.close()
    assert second.sign(AUTH, KeyType.RSA2048, b"still logged in")
    second.close()
    third = open_token(softhsm)  # the module was released and loads again: a fresh login
    third.close()
