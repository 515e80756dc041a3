"""SCEP authorisation before anything changes on the card: the RA hook (``issuer.challenge_command``)
runs at authorisation, while the old key exists, with a proof of possession on stdin, and its
one-time challenge rides in the grant; every way the hook can fail is an error raised before any
key is generated. With ``message_type = "RenewalReq"`` the signing slot is checked in preflight."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from card.config import ConfigError, Settings, load_settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.base import IssuerRejected, IssuerUnavailable, RenewalGrant
from card.enrollment.scep import ScepIssuer, ScepSettings
from card.errors import NotSupportedError
from card.journal import AuditLog, JournalStore
from card.piv import KeyType, PivSession, Slot
from card.renewal import RenewalContext, renew

RA = Path(__file__).parents[1] / "integration" / "scep_ra.py"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    """A CA and a card holder's certificate whose key is 'on the card' (a software key here)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = (x509.CertificateBuilder().subject_name(_name("RA test CA")).issuer_name(_name("RA test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=365)).sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(65537, 2048)
    cert = (x509.CertificateBuilder().subject_name(_name("Alice Example")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(0x1234).not_valid_before(now - dt.timedelta(days=300))
            .not_valid_after(now + dt.timedelta(days=30)).sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return {"ca": ca, "cert": cert, "sign": lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA256()),
            "tokens": tmp_path / "tokens", "ca_pem": tmp_path / "ca.pem"}


def issuer(command: list[str], timeout_s: float = 10.0) -> ScepIssuer:
    scep = ScepIssuer(ScepSettings("http://127.0.0.1:9/scep", None, challenge_command=tuple(command),
                                   timeout_s=timeout_s))
    scep._ca, scep._caps = [], {"POSTPKIOPERATION", "AES"}  # GetCACert/GetCACaps answered (tested in integration)
    return scep


def test_the_ra_checks_the_old_key_and_its_one_time_challenge_rides_in_the_grant(pki: dict) -> None:
    scep = issuer([sys.executable, str(RA), "hook", str(pki["tokens"]), str(pki["ca_pem"])])
    grant = scep.authorize_renewal("9A", pki["cert"], pki["sign"])
    tokens = list(pki["tokens"].iterdir())
    assert [t.name for t in tokens] == [grant.secret]  # the RA stored exactly what it handed out
    assert tokens[0].read_text() == "CN=Alice Example"
    assert scep.challenge_password(grant) == grant.secret
    assert grant.secret not in repr(grant)
    # the journal keeps it (a resumed renewal cannot ask again: the old key is gone by then)
    assert RenewalGrant.from_dict(json.loads(json.dumps(grant.to_dict()))).secret == grant.secret


def test_a_proof_signed_by_another_key_is_refused_by_the_ra(pki: dict) -> None:
    other = rsa.generate_private_key(65537, 2048)
    scep = issuer([sys.executable, str(RA), "hook", str(pki["tokens"]), str(pki["ca_pem"])])
    with pytest.raises(IssuerRejected) as exc:
        scep.authorize_renewal("9A", pki["cert"], lambda m: other.sign(m, padding.PKCS1v15(), hashes.SHA256()))
    assert "the RA refused the renewal of slot 9A: the proof of possession does not verify" in str(exc.value)
    assert "nothing was changed" in str(exc.value)
    assert not pki["tokens"].exists()


def test_placeholders_name_the_slot_transaction_and_certificate(pki: dict, tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    code = f"import json, sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w')); print('tok')"
    scep = issuer([sys.executable, "-c", code, "{slot}", "{transaction_id}", "{serial}", "fp={fingerprint}"])
    grant = scep.authorize_renewal("9C", pki["cert"], pki["sign"])
    slot, transaction, serial, fp = json.loads(out.read_text())
    assert (slot, transaction, serial, fp) == ("9C", grant.grant_id, "1234", f"fp={grant.old_certificate_fingerprint}")
    assert grant.secret == "tok"


@pytest.mark.parametrize(("code", "error", "text"), [
    ("import sys; print('busy, try later', file=sys.stderr); sys.exit(75)", IssuerUnavailable,
     "the RA is unavailable for slot 9A: busy, try later"),
    ("import sys; sys.exit(3)", IssuerRejected, "the RA refused the renewal of slot 9A (its hook exited 3)"),
    ("print('')", IssuerRejected, "the RA hook gave no challenge for slot 9A"),
    ("import time; time.sleep(5)", IssuerUnavailable, "did not answer within 0.5 s"),
])
def test_a_failing_hook_is_an_error_before_generation(pki: dict, code: str, error: type, text: str) -> None:
    scep = issuer([sys.executable, "-c", code], timeout_s=0.5)
    with pytest.raises(error) as exc:
        scep.authorize_renewal("9A", pki["cert"], pki["sign"])
    assert text in str(exc.value)


def test_a_missing_hook_program_is_reported(pki: dict) -> None:
    with pytest.raises(IssuerUnavailable) as exc:
        issuer(["/nonexistent/ra-hook"]).authorize_renewal("9A", pki["cert"], pki["sign"])
    assert "the RA hook '/nonexistent/ra-hook' cannot be run" in str(exc.value)


def test_a_grant_without_its_one_time_challenge_is_refused(pki: dict) -> None:
    scep = issuer(["true"])
    grant = RenewalGrant("T1", "9A", "", "ab", dt.datetime.now(dt.timezone.utc))
    with pytest.raises(IssuerRejected, match="one-time challenge for slot 9A is no longer known"):
        scep.challenge_password(grant)


@pytest.mark.parametrize(("body", "text"), [
    ('challenge_command = ["ra", "{slot}", "{user}"]', "unknown placeholder {user}"),
    ('challenge = "x"\nchallenge_command = ["ra"]', "set either challenge or challenge_command, not both"),
    ('challenge_command = []', "must be a list of strings"),
])
def test_bad_ra_hook_configuration_is_refused(tmp_path: Path, body: str, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[issuer]\ntype = "scep"\nurl = "http://x/scep"\n{body}\n')
    with pytest.raises(ConfigError, match=text.replace("{", r"\{").replace("}", r"\}")):
        load_settings(path)


@pytest.mark.parametrize(("slots", "key_type", "why"), [
    ((Slot.AUTHENTICATION,), KeyType.RSA2048, "slot 9C holds no certificate"),
    ((Slot.AUTHENTICATION, Slot.SIGNATURE), KeyType.ECCP256, "slot 9C holds an ECCP256 key"),
])
def test_renewal_req_without_a_usable_signer_slot_is_refused_before_generation(
        ca, tmp_path: Path, slots: tuple, key_type: KeyType, why: str) -> None:  # type: ignore[no-untyped-def]
    """With message_type = "RenewalReq" slot 9A's request is signed by slot 9C's certificate and key:
    a card without one (or with an EC key, which cannot read the CA's encrypted reply) is refused
    while nothing has changed."""
    card = SoftPivCard(create_card_state(ca, slots=slots, key_type=key_type), tmp_path / "card.json")
    before = ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects))
    scep = ScepIssuer(ScepSettings("http://127.0.0.1:9/scep", None, challenge="x", message_type="RenewalReq"))
    scep._ca, scep._caps = [], {"POSTPKIOPERATION", "AES"}  # GetCACert/GetCACaps answered (tested in integration)
    scep.supported_key_types = lambda: {"RSA2048", "ECCP256"}  # type: ignore[method-assign]  # reach the signer check
    settings = Settings(state_dir=tmp_path / "state")
    ctx = RenewalContext(settings, scep, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))
    with pytest.raises(NotSupportedError) as exc:
        renew(PivSession(card), ctx, "123456")
    assert f"a renewal request for slot 9A is signed with the certificate in slot 9C, but {why}" in str(exc.value)
    assert "nothing was changed" in str(exc.value)
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before
