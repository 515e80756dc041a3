"""Renewal against a real SCEP CA: Debian's scepserver 2.1.0 in a private network namespace
(it binds every interface), the card served through pcscd + vpcd, judged by openssl and OpenSC.

pcscd is reached through its Unix socket, so ``cardrenew`` runs inside the namespace with the
server while the card's vpcd connection stays outside.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import CARDRENEW, READER

pytestmark = pytest.mark.pcscd
CHALLENGE = "s3cret-challenge"




class ScepLab:
    """A network namespace with scepserver (RSA-2048 CA, ``-challenge``, ``-allowrenew 0``)."""

    def __init__(self, root: Path) -> None:
        self.ns = f"cardrenew-scep-{os.getpid()}-{secrets.token_hex(4)}"  # unique: PID namespaces share /run/netns
        self.root = root
        self.depot = root / "depot"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["scepserver", "ca", "-init", "-depot", str(self.depot), "-keySize", "2048"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.depot / "ca.pem"), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, port: int, *extra: str, challenge: str | None = CHALLENGE) -> None:
        static = ["-challenge", challenge] if challenge else []
        self.log = self.root / f"scepserver-{port}.log"
        with self.log.open("wb") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "scepserver", "-depot", str(self.depot),
                                     "-port", str(port), *static, "-allowrenew", "0", "-debug", *extra],
                                    stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.wait_http(f"http://127.0.0.1:{port}/scep?operation=GetCACaps")

    def start_http_500(self, port: int) -> None:
        code = ("import http.server as h\n"
                "class H(h.BaseHTTPRequestHandler):\n"
                "    def do_GET(self): self.send_error(500)\n"
                "    do_POST = do_GET\n"
                "    def log_message(self, *a): pass\n"
                f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", code])
        self.procs.append(proc)
        self.wait_http(f"http://127.0.0.1:{port}/", accept_error=True)

    def start_pending(self, port: int, directory: Path, approve_after: int = -1) -> str:
        """A SCEP CA of our own (``scep_pending_ca.py``) that answers PENDING until ``approve_after``
        CertPolls arrived (-1: never), logging message types in ``directory/requests``; returns its
        CA fingerprint."""
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pending SCEP CA")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (directory / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable,
                                 str(Path(__file__).with_name("scep_pending_ca.py")), str(directory), str(port),
                                 str(approve_after)])
        self.procs.append(proc)
        self.wait_http(f"http://127.0.0.1:{port}/scep?operation=GetCACaps")
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def wait_http(self, url: str, accept_error: bool = False) -> None:
        probe = ("import sys, urllib.request, urllib.error\n"
                 "try: urllib.request.urlopen(sys.argv[1], timeout=1)\n"
                 "except urllib.error.HTTPError: sys.exit(0 if sys.argv[2] == '1' else 1)\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", probe, url,
                               "1" if accept_error else "0"], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"nothing answered {url} in the namespace")

    def config(self, workdir: Path, *, port: int = 8080, fingerprint: str | None = None,
               challenge: str = CHALLENGE, challenge_command: list[str] | None = None,
               message_type: str = "PKCSReq") -> Path:
        path = workdir / f"scep-{port}.toml"
        source = (f"challenge_command = {json.dumps(challenge_command)}\n" if challenge_command
                  else f"challenge = \"{challenge}\"\n") + f"message_type = \"{message_type}\"\n"
        path.write_text(
            "[issuer]\ntype = \"scep\"\n"
            f"url = \"http://127.0.0.1:{port}/scep\"\n"
            f"ca_fingerprint = \"{fingerprint or self.fingerprint}\"\n"
            + source +
            "allow_legacy_algorithms = true\n"
            "timeout_s = 5\npoll_schedule_s = [0.2, 0.2]\n\n[management_key]\nsource = \"default\"\n")
        return path

    def renew(self, workdir: Path, config: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, CARDRENEW_CONFIG=str(config), XDG_STATE_HOME=str(workdir / "state"))
        return subprocess.run(["ip", "netns", "exec", self.ns, *CARDRENEW, "renew", "--reader", READER,
                               "--pin-stdin", "--yes", "--json"], input="123456\n", capture_output=True,
                              text=True, env=env, timeout=180)

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


@pytest.fixture
def scep(tmp_path: Path) -> Iterator[ScepLab]:
    if os.geteuid() != 0 or shutil.which("scepserver") is None or shutil.which("ip") is None:
        pytest.fail("the SCEP tests need root, iproute2 and Debian's 'scep' package (scripts/setup.sh installs it)")
    lab = ScepLab(tmp_path / "scep")
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def serve_card(serve_card):  # type: ignore[no-untyped-def]
    """Cards whose certificates carry the usages scepserver issues (digitalSignature, clientAuth): the
    engine refuses a renewal that changes a certificate's key usage or extended key usage (issue 11)."""

    def _serve(**kwargs):  # type: ignore[no-untyped-def]
        return serve_card(create_extra=["--usage", "client-auth"], **kwargs)

    return _serve


def card_keys(state: Path) -> dict[str, str]:
    return {slot: key["private_pem"] for slot, key in json.loads(state.read_text())["keys"].items()}


def read_and_verify(workdir: Path, lab: ScepLab, pkcs15_id: str) -> Path:
    pem = subprocess.run(["pkcs15-tool", "--reader", READER, "--read-certificate", pkcs15_id],
                         capture_output=True, text=True, check=True).stdout
    path = workdir / f"scep-{pkcs15_id}.pem"
    path.write_text(pem)
    out = subprocess.run(["openssl", "verify", "-CAfile", str(lab.depot / "ca.pem"), str(path)],
                         capture_output=True, text=True)
    assert ": OK" in out.stdout, out.stdout + out.stderr
    return path


def test_renews_an_rsa_card_against_scepserver(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    scep.start(8080)
    card = serve_card(key_type="RSA2048")
    out = scep.renew(workdir, scep.config(workdir))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["outcome"] == "renewed" and [s["renewed"] for s in report["slots"]] == [True, True]
    cert_9a = read_and_verify(workdir, scep, "01")
    read_and_verify(workdir, scep, "02")
    # the new 9A key signs through PKCS#11 and the SCEP-issued certificate verifies it
    msg, sig, pub = workdir / "m.bin", workdir / "s.bin", workdir / "p.pem"
    msg.write_bytes(b"scep renewed")
    subprocess.run(["openssl", "x509", "-in", str(cert_9a), "-pubkey", "-noout", "-out", str(pub)], check=True)
    subprocess.run(["pkcs11-tool", "--module", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "--slot-description",
                    READER, "--login", "--pin", "123456", "--sign", "--id", "01", "-m", "SHA256-RSA-PKCS",
                    "--input-file", str(msg), "--output-file", str(sig)], check=True, capture_output=True)
    verify = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(msg)],
                            capture_output=True, text=True)
    assert "Verified OK" in verify.stdout
    assert CHALLENGE not in "".join(p.read_text(errors="replace") for p in (workdir / "state").rglob("*") if p.is_file())
    card.stop()


@pytest.mark.parametrize("case", ["fingerprint", "server-down", "http-500", "ec-card"])
def test_refusals_before_generation_change_nothing(serve_card, workdir: Path, scep: ScepLab, case: str) -> None:  # type: ignore[no-untyped-def]
    port = 8080
    if case == "http-500":
        scep.start_http_500(port)
    elif case != "server-down":
        scep.start(port)
    card = serve_card(key_type="ECCP256" if case == "ec-card" else "RSA2048")
    before = card_keys(card.state)
    config = scep.config(workdir, port=port, fingerprint="00" * 32 if case == "fingerprint" else None)
    out = scep.renew(workdir, config)
    error = json.loads(out.stdout)["error"]
    expected = {"fingerprint": (12, "does not match the pinned fingerprint"),
                "server-down": (12, "cannot be reached"),
                "http-500": (12, "HTTP 500"),
                "ec-card": (11, "cannot certify ECCP256")}[case]
    assert out.returncode == expected[0], out.stdout + out.stderr
    assert expected[1] in error["message"]
    assert error["next_step"]
    assert card_keys(card.state) == before  # no key was generated
    card.stop()


def test_wrong_challenge_is_explained_and_the_update_resumes(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    scep.start(8080)
    card = serve_card(key_type="RSA2048")
    out = scep.renew(workdir, scep.config(workdir, challenge="wrong"))
    assert out.returncode == 13, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert "badRequest" in report["slots"][0]["error"] and "challenge" in report["slots"][0]["error"]
    assert report["journal_kept"] and "not attempted" in report["slots"][1]["error"]
    # with the right challenge the same journal finishes the job
    out = scep.renew(workdir, scep.config(workdir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["reference"] == report["reference"]
    read_and_verify(workdir, scep, "01")
    read_and_verify(workdir, scep, "02")
    card.stop()


RA = Path(__file__).with_name("scep_ra.py")


def ra_deployment(scep: ScepLab, workdir: Path, *hook_extra: str, trusted_ca: Path | None = None) -> tuple[Path, list[str]]:
    """scepserver without a static challenge, its ``-csrverifierexec`` accepting only one-time
    challenges our test RA handed out; returns the token store and the RA hook command."""
    tokens = workdir / "ra-tokens"
    verifier = workdir / "csr-verifier"
    verifier.write_text(f"#!/bin/sh\nexec {sys.executable} {RA} verify {tokens}\n")
    verifier.chmod(0o755)
    scep.start(8080, "-csrverifierexec", str(verifier), challenge=None)
    hook = [sys.executable, str(RA), "hook", str(tokens), str(trusted_ca or workdir / "ca" / "ca.pem"), *hook_extra]
    return tokens, hook


def test_ra_hook_grants_one_time_challenges_before_generation(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(key_type="RSA2048")
    tokens, hook = ra_deployment(scep, workdir)
    out = scep.renew(workdir, scep.config(workdir, challenge_command=hook))
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s["renewed"] for s in json.loads(out.stdout)["slots"]] == [True, True]
    read_and_verify(workdir, scep, "01")
    read_and_verify(workdir, scep, "02")
    spent = sorted(p.stem for p in tokens.glob("*.spent"))
    assert len(spent) == 2 and not [p for p in tokens.iterdir() if p.suffix != ".spent"]  # each used once
    state = "".join(p.read_text(errors="replace") for p in (workdir / "state").rglob("*") if p.is_file())
    assert not any(token in state + out.stdout + out.stderr for token in spent)  # never logged, not left behind
    card.stop()


@pytest.mark.parametrize("case", ["ra-refuses", "card-from-another-ca"])
def test_ra_refusal_is_explained_and_changes_nothing(serve_card, workdir: Path, scep: ScepLab, case: str) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(key_type="RSA2048")
    before = card_keys(card.state)
    if case == "ra-refuses":
        _, hook = ra_deployment(scep, workdir, "--refuse", "this card was reported lost")
        reason = "this card was reported lost"
    else:  # the RA trusts only the SCEP CA, not the CA that issued this card's certificates
        _, hook = ra_deployment(scep, workdir, trusted_ca=scep.depot / "ca.pem")
        reason = "this card's certificate was not issued by our CA"
    out = scep.renew(workdir, scep.config(workdir, challenge_command=hook))
    assert out.returncode == 12, out.stdout + out.stderr  # the CA/RA refused (DESIGN §7 exit codes)
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "RA-REFUSED" and error["title"] == "The Registration Authority refused the renewal"
    assert f"the RA refused the renewal of slot 9C: {reason}; nothing was changed" in error["message"]  # 9C is asked first
    assert error["next_step"] and error["reference"]
    assert card_keys(card.state) == before  # no key was generated
    assert not list((workdir / "state").rglob("journal-*.json"))  # nothing to resume
    card.stop()


def test_renewal_req_is_signed_by_the_other_slots_certificate(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    """RFC 8894 RenewalReq: each slot's request is signed with the card's other certificate (9C for
    9A, 9A for 9C; the first by the other's old key, the second by the first's new key) and the
    reply is decrypted with that key on the card."""
    scep.start(8080)
    card = serve_card(key_type="RSA2048")
    out = scep.renew(workdir, scep.config(workdir, message_type="RenewalReq"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s["renewed"] for s in json.loads(out.stdout)["slots"]] == [True, True]
    read_and_verify(workdir, scep, "01")
    read_and_verify(workdir, scep, "02")
    log = scep.log.read_text()  # the server names the message type only in its debug log
    assert log.count('scep_message_type="RenewalReq (17)"') == 2 and "PKCSReq" not in log
    card.stop()


def test_pending_that_never_completes_is_bounded_and_keeps_the_transaction(serve_card, workdir: Path,  # type: ignore[no-untyped-def]
                                                                           scep: ScepLab) -> None:
    fingerprint = scep.start_pending(8081, workdir / "pending-ca")
    card = serve_card(key_type="RSA2048")
    out = scep.renew(workdir, scep.config(workdir, port=8081, fingerprint=fingerprint))
    assert out.returncode == 13, out.stdout + out.stderr
    report = json.loads(out.stdout)
    error = report["slots"][0]["error"]
    assert "has not issued yet (transaction " in error
    transaction = error.split("(transaction ")[1].rstrip(")")
    # the PKCSReq, then a CertPoll after each of the two delays of the schedule, then stop
    assert (workdir / "pending-ca" / "requests").read_text().split() == ["19", "20", "20"]
    journal = json.loads(next((workdir / "state" / "cardrenew").glob("journal-*.json")).read_text())
    assert journal["slots"]["9A"]["grant"]["grant_id"] == transaction  # kept for the next run
    assert "9C" not in journal["slots"] or journal["slots"]["9C"]["step"] == "authorised"
    card.stop()


def test_pending_then_approved_is_polled_with_certpoll_and_renews(serve_card, workdir: Path,  # type: ignore[no-untyped-def]
                                                                  scep: ScepLab) -> None:
    """RFC 8894 §3.3.3: PENDING, then CertPoll (IssuerAndSubject, same transaction) until the CA
    issues; the certificate is decrypted on the card and written."""
    fingerprint = scep.start_pending(8081, workdir / "pending-ca", approve_after=2)
    card = serve_card(key_type="RSA2048")
    out = scep.renew(workdir, scep.config(workdir, port=8081, fingerprint=fingerprint))
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s["renewed"] for s in json.loads(out.stdout)["slots"]] == [True, True]
    assert (workdir / "pending-ca" / "requests").read_text().split() == ["19", "20", "20"] * 2
    pem = subprocess.run(["pkcs15-tool", "--reader", READER, "--read-certificate", "01"],
                         capture_output=True, text=True, check=True).stdout
    (workdir / "pending-01.pem").write_text(pem)
    (workdir / "pending-ca.pem").write_bytes(subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(workdir / "pending-ca" / "ca.der")],
        capture_output=True, check=True).stdout)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(workdir / "pending-ca.pem"),
                             str(workdir / "pending-01.pem")], capture_output=True, text=True)
    assert ": OK" in verify.stdout, verify.stdout + verify.stderr
    card.stop()


def test_lost_reply_with_a_spent_one_time_challenge_says_the_ra_must_act(serve_card, workdir: Path,  # type: ignore[no-untyped-def]
                                                                         scep: ScepLab) -> None:
    """The card is pulled while 9A's CertRep is decrypted: scepserver has issued and the RA's one-time
    challenge is spent. The next run asks for that result first (CertPoll; scepserver has none), sends
    the request again, is refused, and says so, pointing at the RA, instead of "run it again"."""
    # the two RA proofs at authorisation, then 9A's CSR, transport certificate, request signature, and
    # decrypting the reply (6th card operation)
    card = serve_card(key_type="RSA2048", extra=["--drop-at", "sign:6", "--reinsert-after", "1"])
    tokens, hook = ra_deployment(scep, workdir)
    config = scep.config(workdir, challenge_command=hook)
    first = scep.renew(workdir, config)
    assert first.returncode in (3, 13), first.stdout + first.stderr
    assert len(list(tokens.glob("*.spent"))) == 1  # the CA issued 9A's certificate; the answer was lost
    time.sleep(1.5)
    second = scep.renew(workdir, config)
    assert second.returncode == 13, second.stdout + second.stderr
    report = json.loads(second.stdout)
    error = report["slots"][0]["error"]
    assert "refused the request for slot 9A when it was sent again" in error and "answer was lost" in error
    assert report["slots"][1]["renewed"] is False and "nothing was changed" in report["slots"][1]["error"]
    assert report["journal_kept"]
    card.stop()


def test_lost_reply_is_fetched_with_certpoll_on_resume(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    """Against a CA that answers CertPoll for an issued transaction, the resumed run gets the
    certificate without a second request (RFC 8894 §3.3.3) and finishes."""
    fingerprint = scep.start_pending(8081, workdir / "pending-ca", approve_after=0)
    # 9A's card operations: CSR, transport certificate, request signature, then decrypting the reply (4th)
    card = serve_card(key_type="RSA2048", extra=["--drop-at", "sign:4", "--reinsert-after", "1"])
    config = scep.config(workdir, port=8081, fingerprint=fingerprint)
    first = scep.renew(workdir, config)
    assert first.returncode in (3, 13), first.stdout + first.stderr
    time.sleep(1.5)
    second = scep.renew(workdir, config)
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads(second.stdout)["reference"] == json.loads(first.stdout)["reference"]
    # 9A: request (reply lost), then CertPoll on resume; 9C: one request
    assert (workdir / "pending-ca" / "requests").read_text().split() == ["19", "20", "19"]
    card.stop()


TUI_SCRIPT = r"""
import asyncio, os, sys
sys.path.insert(0, os.getcwd())
from card.config import load_settings
from card.backend import pcsc_backend
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on, renew_to_end
from tui.app import make_app
from tui.screens import CardScreen, ErrorDialog, MessageDialog, PinDialog

async def refused(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
    await pilot.press(*PIN, "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), timeout_s=60)
    print(screen_text(app))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))

async def main():
    backend = pcsc_backend(load_settings(sys.argv[1]), sys.argv[2])
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        await (renew_to_end(pilot) if sys.argv[3] == "renew" else refused(pilot))
    backend.service.shutdown()

asyncio.run(main())
print("TUI run finished")
"""


def run_tui(scep: ScepLab, workdir: Path, config: Path, flow: str) -> subprocess.CompletedProcess[str]:
    """The real app, driven by Pilot (``flow``: "renew" to the end, or "refused" at the first error),
    on the card through pcscd. It runs inside the server's network namespace, so as a process there."""
    env = dict(os.environ, XDG_STATE_HOME=str(workdir / "state"), XDG_DATA_HOME=str(workdir / "data"))
    out = subprocess.run(["ip", "netns", "exec", scep.ns, sys.executable, "-c", TUI_SCRIPT, str(config), READER, flow],
                         capture_output=True, text=True, env=env, timeout=240, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0 and "TUI run finished" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def test_tui_renews_with_the_scep_configuration(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    scep.start(8080)
    card = serve_card(key_type="RSA2048")
    run_tui(scep, workdir, scep.config(workdir), "renew")
    read_and_verify(workdir, scep, "01")
    read_and_verify(workdir, scep, "02")
    card.stop()


def test_tui_shows_an_ra_refusal_and_the_card_is_unchanged(serve_card, workdir: Path, scep: ScepLab) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(key_type="RSA2048")
    before = card_keys(card.state)
    _, hook = ra_deployment(scep, workdir, "--refuse", "this card was reported lost")
    out = run_tui(scep, workdir, scep.config(workdir, challenge_command=hook), "refused")
    text = " ".join(out.stdout.split())
    assert "The Registration Authority refused the renewal" in text
    assert "this card was reported lost" in text and "Nothing was changed on your card" in text
    assert "Reference: CR-" in text
    assert card_keys(card.state) == before
    card.stop()
