"""Break-it finding 7 (breakit2): the card was pulled at 9C's PUT DATA (9A done; 9C holds the new key
and the old certificate; the journal says "issued" and holds the certificate for that key), then the
journal became unusable and was set aside. Before: every later ``renew`` said the CA refused /
"Nothing was changed on your card" (later KEY-MISMATCH, exit 11) and 9C stayed dead although the
set-aside file held the certificate that fits its key. Now that certificate is written after the
checks of any issued certificate (chains to the CA, the old certificate's subject/SAN/usages, valid)
and a test signature; anything that fails them changes nothing.

The real ``cardrenew`` code runs in process (``tui.cli.main``) on the in-process card."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from card.certificates import key_matches
from card.config import Settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.emulator.faults import CardFaults
from card.enrollment.local import LocalCA
from card.journal import AuditLog
from card.piv import KeyType, Slot
from tests.card.test_breakit_engine import cli
from tests.card.test_never_worse import certificate_on, private_pem, slot_works

A, C = Slot.AUTHENTICATION, Slot.SIGNATURE


def pulled_at_9c_put_data(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> tuple[SoftPivCard, x509.Certificate, str]:
    """The card after ``renew`` was cut at the second PUT DATA; (card, 9C's old certificate, journal text)."""
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256),
                       faults=CardFaults(drop_at={"put-data": 2}))
    old_9c, old_9c_key = certificate_on(card, C), private_pem(card, C)
    card.faults = CardFaults(drop_at={"put-data": 2})  # certificate_on counted nothing, but be sure
    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert code == 13 and out["journal_kept"], (out, err)
    card.insert()
    assert slot_works(card, A) and private_pem(card, C) != old_9c_key and certificate_on(card, C) == old_9c
    journal = next(Settings().state_dir.glob("journal-*.json"))
    text = journal.read_text()
    assert json.loads(text)["slots"]["9C"]["step"] == "issued"
    return card, old_9c, str(journal)


@pytest.mark.parametrize("corrupt", ["version-not-json", "slots-as-list", "audit-pending-junk"])
def test_a_set_aside_journal_still_finishes_the_slot_its_update_left_dead(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], corrupt: str) -> None:
    card, old_9c, path = pulled_at_9c_put_data(ca, monkeypatch, capsys)
    data = json.loads(open(path).read())
    issued = x509.load_pem_x509_certificate(data["slots"]["9C"]["certificate_pem"].encode())
    if corrupt == "version-not-json":
        text = json.dumps(data).replace('"version": 1', '"version": 1e5000x', 1)
    elif corrupt == "slots-as-list":
        data["slots"] = list(data["slots"].values())
        text = json.dumps(data)
    else:
        data["audit_pending"] = "junk"
        text = json.dumps(data)
    open(path, "w").write(text)

    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert "Nothing was changed on your card" not in json.dumps(out) + err
    assert code == 0 and out["outcome"] == "renewed", (out, err)
    assert certificate_on(card, C) == issued and slot_works(card, C)  # 9C works again, with the salvaged certificate
    records = AuditLog(Settings().state_dir / "audit.log").recent()
    assert [r["slot"] for r in records if r.get("outcome") == "renewed"].count("9C") == 1
    code, out, err = cli(monkeypatch, capsys, card, ca, "status")
    assert code == 0, (out, err)


def test_a_journal_that_lies_9c_was_done_names_the_mismatch(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal claiming 9C "done" counts as finished and is removed (not set aside): its certificate
    is not searched, but the words still name the mismatch, never "Nothing was changed"."""
    card, old_9c, path = pulled_at_9c_put_data(ca, monkeypatch, capsys)
    data = json.loads(open(path).read())
    data["slots"]["9C"]["step"] = "done"
    open(path, "w").write(json.dumps(data))
    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert "Nothing was changed on your card" not in json.dumps(out) + err
    assert code == 11 and out["error"]["code"] == "KEY-MISMATCH", (out, err)
    assert certificate_on(card, C) == old_9c


def test_a_set_aside_certificate_that_does_not_chain_to_the_ca_is_never_written(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The set-aside file holds a certificate for 9C's key with the old subject and SAN, but signed by
    that key itself (not the CA): it is not written; 9C is named as not matching (KEY-MISMATCH), never
    "Nothing was changed"."""
    card, old_9c, path = pulled_at_9c_put_data(ca, monkeypatch, capsys)
    data = json.loads(open(path).read())
    key = serialization.load_pem_private_key(private_pem(card, C).encode(), None)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(old_9c.subject).issuer_name(old_9c.issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=300)))
    for ext in old_9c.extensions:
        if ext.oid not in (x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER, x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER):
            builder = builder.add_extension(ext.value, ext.critical)
    forged = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    assert key_matches(forged, key.public_key())  # type: ignore[arg-type]
    data["slots"]["9C"]["certificate_pem"] = forged.public_bytes(serialization.Encoding.PEM).decode()
    data["version"] = "junk"
    open(path, "w").write(json.dumps(data))

    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert "Nothing was changed on your card" not in json.dumps(out) + err
    assert code == 11 and out["error"]["code"] == "KEY-MISMATCH", (out, err)
    assert certificate_on(card, C) == old_9c  # nothing written
