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

from card.config import ConfigError, Settings, SlotSetting, load_settings
from card.emulator.card import SoftPivCard, install_key
from card.emulator.create import create_card_state
from card.enrollment.base import IssuerRejected, RaRejected, RaUnavailable, RenewalGrant
from card.enrollment.scep import ScepIssuer
from card.enrollment.scep_settings import ScepIssuerSettings
from card.journal import AuditLog, JournalStore
from card.piv import KeyType, PivSession, Slot
from card.renewal import RenewalContext, RenewalRefused, renew
from card.secret import Secret

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
    scep = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None, challenge_command=tuple(command),
                                   timeout_s=timeout_s))
    scep._ca, scep._caps = [], {"POSTPKIOPERATION", "AES"}  # GetCACert/GetCACaps answered (tested in integration)
    return scep


def test_the_ra_checks_the_old_key_and_its_one_time_challenge_rides_in_the_grant(pki: dict) -> None:
    scep = issuer([sys.executable, str(RA), "hook", str(pki["tokens"]), str(pki["ca_pem"])])
    grant = scep.authorize_renewal("9A", pki["cert"], pki["sign"])
    tokens = list(pki["tokens"].iterdir())
    assert [t.name for t in tokens] == [grant.secret.reveal_text()]  # the RA stored exactly what it handed out
    assert tokens[0].read_text() == "CN=Alice Example"
    assert scep.challenge_password(grant) == grant.secret
    assert grant.secret.reveal_text() not in repr(grant)
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
    assert grant.secret == Secret("tok")


@pytest.mark.parametrize(("code", "error", "text"), [
    ("import sys; print('busy, try later', file=sys.stderr); sys.exit(75)", RaUnavailable,
     "the RA is unavailable for slot 9A: busy, try later"),
    ("import sys; sys.exit(3)", IssuerRejected, "the RA refused the renewal of slot 9A (its hook exited 3)"),
    ("print('')", IssuerRejected, "the RA hook gave no challenge for slot 9A"),
    ("import time; time.sleep(5)", RaUnavailable, "did not answer within 0.5 s"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", RaUnavailable, "was ended by signal 9"),
    ("import sys; sys.stderr.buffer.write(b'Karte gesperrt \\xe4\\xf6 [ticket 4711]\\x1b]0;x\\x07\\n'); sys.exit(1)", RaRejected,
     "the RA refused the renewal of slot 9A: Karte gesperrt \ufffd\ufffd [ticket 4711]]0;x; nothing was changed"),
    ("print('a\\rb')", IssuerRejected, "the RA hook gave an unusable challenge for slot 9A"),
    ("print('x' * 256)", IssuerRejected, "the RA hook gave an unusable challenge for slot 9A"),
    ("print('tok\\x00')", IssuerRejected, "the RA hook gave an unusable challenge for slot 9A"),
])
def test_a_failing_hook_is_an_error_before_generation(pki: dict, code: str, error: type, text: str) -> None:
    scep = issuer([sys.executable, "-c", code], timeout_s=0.5)
    with pytest.raises(error) as exc:
        scep.authorize_renewal("9A", pki["cert"], pki["sign"])
    assert text in str(exc.value)


def test_a_missing_hook_program_is_a_configuration_error(pki: dict) -> None:
    with pytest.raises(ConfigError) as exc:
        issuer(["/nonexistent/ra-hook"]).authorize_renewal("9A", pki["cert"], pki["sign"])
    assert "issuer.challenge_command: '/nonexistent/ra-hook' cannot be run (No such file or directory)" in str(exc.value)


def test_a_timed_out_hook_is_ended_with_its_children(pki: dict, tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    script = f"sleep 3 && touch {marker} & wait"
    with pytest.raises(RaUnavailable):
        issuer(["sh", "-c", script], timeout_s=0.5).authorize_renewal("9A", pki["cert"], pki["sign"])
    import time
    time.sleep(3.5)
    assert not marker.exists()


def test_a_grant_without_its_one_time_challenge_is_refused(pki: dict) -> None:
    scep = issuer(["true"])
    grant = RenewalGrant("T1", "9A", "", "ab", dt.datetime.now(dt.timezone.utc))
    with pytest.raises(IssuerRejected, match="one-time challenge for slot 9A is no longer known"):
        scep.challenge_password(grant)


@pytest.mark.parametrize(("body", "text"), [
    ('challenge_command = ["ra", "{slot}", "{user}"]', "unknown placeholder {user}"),
    ('challenge = "x"\nchallenge_command = ["ra"]', "set either challenge or challenge_command, not both"),
    ('challenge_command = []', "must be a list of strings"),
    ('challenge_command = ["ra", "{slot:d}"]', "placeholders take no format or conversion"),
    ('challenge_command = ["ra", "{serial!r}"]', "placeholders take no format or conversion"),
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
    scep = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None, challenge=Secret("x"), message_type="RenewalReq"))
    scep._ca, scep._caps = [], {"POSTPKIOPERATION", "AES"}  # GetCACert/GetCACaps answered (tested in integration)
    scep.supported_key_types = lambda: {"RSA2048", "ECCP256"}  # type: ignore[method-assign]  # reach the signer check
    settings = Settings(state_dir=tmp_path / "state")
    ctx = RenewalContext(settings, scep, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))
    with pytest.raises(RenewalRefused) as exc:
        renew(PivSession(card), ctx, Secret("123456"))
    assert f"a renewal request for slot 9A is signed with the certificate in slot 9C, but {why}" in str(exc.value)
    assert "nothing was changed" in str(exc.value)
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before


def _renewal_req_run(scep_ca: x509.Certificate, tmp_path: Path, card: SoftPivCard, **settings_kw):  # type: ignore[no-untyped-def]
    scep = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None, challenge=Secret("x"), message_type="RenewalReq",
                                   timeout_s=2))
    scep._ca, scep._caps = [scep_ca], {"POSTPKIOPERATION", "AES"}  # GetCACert/GetCACaps answered (tested in integration)
    settings = Settings(state_dir=tmp_path / "state", **settings_kw)
    ctx = RenewalContext(settings, scep, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"),
                         issuer_retry_delays_s=())
    return renew(PivSession(card), ctx, Secret("123456"))


def test_renewal_req_signer_whose_key_does_not_match_its_certificate_is_refused_first(ca, pki: dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """9C's key was replaced (by another tool, say) without a certificate: signing 9A's request with
    it would fail at the CA only after 9A's key was generated. A test signature finds it first."""
    state = create_card_state(ca)
    install_key(state, Slot.SIGNATURE, rsa.generate_private_key(65537, 2048), KeyType.RSA2048)
    card = SoftPivCard(state, tmp_path / "card.json")
    before = ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects))
    with pytest.raises(RenewalRefused) as exc:
        _renewal_req_run(pki["ca"], tmp_path, card)
    assert "signed with the certificate in slot 9C, but the key in slot 9C does not match its certificate" in str(exc.value)
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before


def test_renewal_req_signer_outside_the_configured_slots_is_read_from_the_card(ca, pki: dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Only 9A is configured; 9C's certificate still signs its request (here the CA is unreachable,
    so the run ends at the CA, after the signer checks passed)."""
    card = SoftPivCard(create_card_state(ca), tmp_path / "card.json")
    result = _renewal_req_run(pki["ca"], tmp_path, card, slots=(SlotSetting(Slot.AUTHENTICATION, "PIV Authentication"),))
    assert [s.slot for s in result.slots] == [Slot.AUTHENTICATION]
    assert "cannot be reached" in str(result.slots[0].error)


# -- a hook that misbehaves with its pipes (break-it finding: detached child, output flood) --------

@pytest.fixture
def detached(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A pid file for a hook's detached (setsid) grandchild, killed after the test."""
    import os
    import signal
    pidfile = tmp_path / "detached.pid"
    yield pidfile
    if pidfile.exists() and pidfile.read_text().strip():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _timed(call):  # type: ignore[no-untyped-def]
    import time
    start = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_a_hook_whose_detached_child_holds_the_pipes_ends_at_the_deadline(pki: dict, detached: Path) -> None:
    # The break-it repro: the hook's group is killed at the deadline, but a setsid grandchild keeps
    # stdout/stderr open; reading until EOF hung renew (and SIGTERM) for as long as it lived.
    script = f"setsid sh -c 'echo $$ > {detached}; exec sleep 30' & echo started >&2; sleep 100"
    exc, took = _timed(lambda: issuer(["bash", "-c", script], timeout_s=1).authorize_renewal(
        "9A", pki["cert"], pki["sign"]))
    assert isinstance(exc, RaUnavailable) and "did not answer within 1 s" in str(exc)
    assert took < 1 + 1.5, f"the hook runner took {took:.1f} s for timeout_s = 1"


def test_a_hook_that_answers_and_leaves_a_detached_child_is_not_waited_for(pki: dict, detached: Path) -> None:
    script = f"setsid sh -c 'echo $$ > {detached}; exec sleep 30' & echo one-time-token"
    exc, took = _timed(lambda: issuer(["bash", "-c", script], timeout_s=10).authorize_renewal(
        "9A", pki["cert"], pki["sign"]))
    assert exc is None and took < 10


def test_cancel_ends_a_hook_with_a_detached_child_within_a_second(pki: dict, detached: Path) -> None:
    import threading
    from card.errors import OperationCancelled
    script = f"setsid sh -c 'echo $$ > {detached}; exec sleep 30' & sleep 100"
    scep = issuer(["bash", "-c", script], timeout_s=60)
    threading.Timer(0.5, scep.cancel.set).start()
    exc, took = _timed(lambda: scep.authorize_renewal("9A", pki["cert"], pki["sign"]))
    assert isinstance(exc, OperationCancelled) and "stopped while the RA hook 'bash' ran" in str(exc)
    assert took < 0.5 + 1.0, f"cancel took {took - 0.5:.1f} s"


def test_a_hook_flooding_stdout_is_refused_and_ended(pki: dict) -> None:
    # 3 GB of output: before the cap it was all buffered in memory (600 MB within 3 s, 4 retries).
    exc, took = _timed(lambda: issuer(["sh", "-c", "head -c 3000000000 /dev/zero; echo"], timeout_s=30)
                       .authorize_renewal("9A", pki["cert"], pki["sign"]))
    assert isinstance(exc, RaRejected) and exc.code == "RA-REFUSED"
    assert "the RA hook 'sh' printed more than 64 KiB on stdout" in str(exc) and took < 30


def test_a_hook_flooding_stderr_keeps_only_its_last_line(pki: dict) -> None:
    script = "head -c 50000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'card reported stolen' >&2; exit 1"
    exc, _took = _timed(lambda: issuer(["sh", "-c", script], timeout_s=30)
                        .authorize_renewal("9A", pki["cert"], pki["sign"]))
    assert isinstance(exc, RaRejected)
    assert str(exc).endswith("the RA refused the renewal of slot 9A: card reported stolen; nothing was changed")
