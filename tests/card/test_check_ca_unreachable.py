"""``cardrenew renew --check`` with a CA that accepts the connection and never answers (tester F-10):
the CA check fails once, after one wait of ``issuer.timeout_s``, and every check that needs the CA
(the key algorithm's "the CA certifies it", each slot's renewal grant) is skipped because the CA
could not be reached — not failed with a claim about key types, and the CA not asked again.

The real CLI (``tui.cli.main``) with the real SCEP issuer from a configuration file, on the
in-process card; the CA is a real listening socket on loopback that counts the connections it
accepts and never sends a byte."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from card.emulator.card import SoftPivCard
from card.piv import KeyType
from card.service import CardService

PIN = "123456"


class SilentCA:
    """A loopback server that accepts every connection, reads what it is sent and never answers."""

    def __init__(self) -> None:
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                continue
            self.accepted += 1
            self._conns.append(conn)  # kept open, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._conns:
            conn.close()
        self._srv.close()


@pytest.fixture
def silent_ca() -> Iterator[SilentCA]:
    server = SilentCA()
    yield server
    server.close()


def config(tmp_path: Path, port: int) -> str:
    path = tmp_path / "config.toml"
    path.write_text("[issuer]\ntype = \"scep\"\n"
                    f"url = \"http://127.0.0.1:{port}/scep\"\nca_fingerprint = \"{'00' * 32}\"\n"
                    "challenge = \"secret-challenge\"\ntimeout_s = 1\n"
                    "[management_key]\nsource = \"default\"\n")
    return str(path)


def run_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], card: SoftPivCard,
              *argv: str) -> tuple[int, str, str]:
    from tui.cli import main

    monkeypatch.setattr("card.pcsc.choose_reader", lambda named=None: "Virtual card")
    monkeypatch.setattr("card.backend.pcsc_service", lambda name, *_, **__: CardService(lambda: card, lambda: True))
    monkeypatch.setattr("sys.stdin", io.StringIO(PIN + "\n"))
    code = main(["renew", "--check", "--pin-stdin", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def card(make_card) -> SoftPivCard:  # type: ignore[no-untyped-def]
    return make_card(key_type=KeyType.ECCP256)


CA_DOWN = "not checked: the certificate authority could not be reached (see the Certificate authority check)"


def test_an_unreachable_ca_skips_what_needs_it_after_one_wait(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], card: SoftPivCard,
                                                             silent_ca: SilentCA, tmp_path: Path) -> None:
    code, out, err = run_check(monkeypatch, capsys, card, "--config", config(tmp_path, silent_ca.port))
    assert code == 14, out + err
    assert "FAILED   Certificate authority: " in out and "did not answer" in out
    assert "cannot certify" not in out, out  # no claim about key types from a CA that never answered
    for slot in ("9A", "9C"):
        assert f"skipped  Key algorithm ({slot}): ECCP256: the card lists it; " in out, out
        assert f"skipped  Renewal grant ({slot}): Not checked: the certificate authority could not be reached" in out, out
        assert f"FAILED   Key algorithm ({slot})" not in out and f"FAILED   Renewal grant ({slot})" not in out
    assert silent_ca.accepted == 1, f"{silent_ca.accepted} connections: the CA was waited for more than once"


def test_the_json_report_names_the_skipped_checks_and_why(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], card: SoftPivCard,
                                                         silent_ca: SilentCA, tmp_path: Path) -> None:
    code, out, err = run_check(monkeypatch, capsys, card, "--json", "--config", config(tmp_path, silent_ca.port))
    report = json.loads(out)
    assert code == 14 == report["exit_code"], out + err
    by = {(c["check"], c["slot"]): c for c in report["checks"]}
    assert by[("ca", None)]["outcome"] == "failed" and by[("ca", None)]["code"] == "CA-TIMEOUT"
    assert [c["check"] for c in report["checks"] if c["outcome"] == "failed"] == ["ca"]
    for slot in ("9A", "9C"):
        grant, key_type = by[("ra_grant", slot)], by[("key_type", slot)]
        assert grant["outcome"] == key_type["outcome"] == "skipped", (grant, key_type)
        assert grant["message"] == CA_DOWN[0].upper() + CA_DOWN[1:] + "."
        assert key_type["message"].startswith("ECCP256: the card lists it; ") and CA_DOWN in key_type["message"]
        assert by[("certificate_size", slot)]["outcome"] == "passed"  # what needs only the card still ran
    assert by[("pin", None)]["outcome"] == "passed" and by[("management_key", None)]["outcome"] == "passed"
    assert silent_ca.accepted == 1


def test_a_ca_that_answers_with_another_certificate_is_not_asked_for_grants(card: SoftPivCard, ca) -> None:  # type: ignore[no-untyped-def]
    """A CA check that failed although the CA answered (its certificate is not the pinned one): the
    grants are not asked of that CA, and the words say why (not "could not be reached")."""
    import dataclasses

    from card.config import Settings
    from card.service import CheckOutcome
    from tests.card.test_check_dry_run import door, item
    from tests.card.test_check_dry_run import run_check as check_through_door

    settings = Settings()
    settings = dataclasses.replace(settings, issuer=dataclasses.replace(settings.issuer, ca_fingerprint="ab" * 32))
    asked: list[str] = []

    class CountingCA:
        name = ca.name

        def __getattr__(self, name: str) -> object:
            return getattr(ca, name)

        def check_renewal(self, *args: object) -> str:
            asked.append("grant")
            return str(ca.check_renewal(*args))

    report = check_through_door(door(card, CountingCA(), settings))
    assert item(report, "ca").code == "CA-PIN"
    for slot in ("9A", "9C"):
        grant = item(report, "ra_grant", slot)
        assert grant.outcome is CheckOutcome.SKIPPED
        assert grant.message == "not checked: the certificate authority's answer cannot be used (see the Certificate authority check)"
        assert item(report, "key_type", slot).outcome is CheckOutcome.SKIPPED
    assert asked == []
