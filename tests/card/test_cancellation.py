"""Cancellation through the engine on the in-process card, and the last-PIN-try guard of `renew`.

A cancelled wait for the CA raises OperationCancelled: before anything changed it ends the run
with the card as it was; after GENERATE it is reported per slot with the journal kept, and the
next run finishes the slot. `renew --pin-stdin` reads the tries left with an empty VERIFY (no try
spent, SP 800-73-4 Part 2 §3.2.1) and refuses to send the PIN when one try is left.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from card.backend import Backend
from card.config import Settings
from card.emulator.card import SoftPivCard
from card.enrollment.local import LocalCA
from card.errors import LastPinTryError, OperationCancelled, PinBlockedError
from card.journal import AuditLog, JournalStore
from card.piv import PivSession, Slot
from card.renewal import RenewalContext, renew
from card.secret import Secret
from card.service import CardService, RenewalRequest
from tui.cli import EXIT_PIN
from tui.cli.failure import exit_code_for

PIN = "123456"


class CancelledAt:
    """The embedded CA, except that one call waits on the cancellation token, which is set."""

    def __init__(self, ca: LocalCA, where: str, cancel: threading.Event) -> None:
        self._ca, self._where, self._cancel = ca, where, cancel
        self.name = ca.name

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._ca, name)
        if name != self._where:
            return attr

        def wait_then_stop(*args: object, **kwargs: object) -> object:
            self._cancel.set()  # SIGTERM arrives while the CA is being waited for
            if self._cancel.wait(5):
                raise OperationCancelled("stopped while waiting for the certificate authority")
            return attr(*args, **kwargs)
        return wait_then_stop


def keys(card: SoftPivCard) -> dict[str, str]:
    return {k: v.private_pem for k, v in card.state.keys.items()}


def context(tmp_path: Path, issuer: object, cancel: threading.Event) -> RenewalContext:
    settings = Settings(state_dir=tmp_path / "state")
    return RenewalContext(settings, issuer, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"),  # type: ignore[arg-type]
                          cancel=cancel)


@pytest.mark.parametrize("where", ["ca_certificates", "authorize_renewal"])
def test_cancelled_before_anything_changed_leaves_the_card_as_it_was(make_card, ca: LocalCA, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                     where: str) -> None:
    card = make_card()
    before = keys(card), dict(card.state.objects)
    cancel = threading.Event()
    with pytest.raises(OperationCancelled):
        renew(PivSession(card), context(tmp_path, CancelledAt(ca, where, cancel), cancel), Secret(PIN))
    assert (keys(card), dict(card.state.objects)) == before


def test_cancelled_after_generate_keeps_the_journal_and_the_next_run_finishes(make_card, ca: LocalCA,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    card = make_card()
    cancel = threading.Event()
    result = renew(PivSession(card), context(tmp_path, CancelledAt(ca, "issue", cancel), cancel), Secret(PIN))
    assert not result.ok and result.journal_kept
    assert isinstance(result.error, OperationCancelled)
    result = renew(PivSession(card), context(tmp_path, ca, threading.Event()), Secret(PIN))  # a later run, not cancelled
    assert result.ok, [str(s.error) for s in result.slots]
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        cert = PivSession(card).read_certificate(slot).certificate
        key = serialization.load_pem_private_key(card.state.keys[slot.hex].private_pem.encode(), None)
        assert cert is not None and cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


class _PinWouldBeSent(Exception):
    """Raised by the PIN function of the request: the door got past its last-try check."""


@pytest.mark.parametrize(("retries", "allowed", "error"), [
    (3, False, None), (2, False, None), (1, True, None), (1, False, LastPinTryError), (0, False, PinBlockedError),
])
def test_the_last_pin_try_is_sent_only_when_allowed(make_card, tmp_path: Path, retries: int,  # type: ignore[no-untyped-def]
                                                    allowed: bool, error: type[Exception] | None) -> None:
    """Through the door (``renew --allow-last-pin-try`` is ``refuse_last_try=False``): the PIN is
    asked for (and so would be sent) only when more than one try is left or the last one is allowed."""
    card: SoftPivCard = make_card()
    card.state.pin_retries = retries
    settings = Settings(state_dir=tmp_path / "state")
    door = Backend(settings, CardService(lambda: card, lambda: True), None,  # type: ignore[arg-type]
                   JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"), "In-process card")

    def pin() -> Secret:
        raise _PinWouldBeSent

    try:
        future = door.renew(RenewalRequest(pin, refuse_last_try=not allowed))
        if error is None:
            with pytest.raises(_PinWouldBeSent):
                future.result()
        else:
            with pytest.raises(error) as exc:
                future.result()
            assert exit_code_for(exc.value) == EXIT_PIN
            if error is LastPinTryError:
                assert "--allow-last-pin-try" in str(exc.value) and "use the TUI" in str(exc.value)
    finally:
        door.close()
    assert card.state.pin_retries == retries  # reading the count spent no try
    assert not card.pin_verified


def test_the_back_off_between_ca_retries_ends_at_once_on_cancellation(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine's back-off waits on the cancellation token: a stop during a 60 s back-off is a
    stop (OperationCancelled, nothing changed), not "the CA could not be reached" a minute later."""
    from card.enrollment.base import IssuerUnavailable

    card = make_card()
    before = keys(card)
    cancel = threading.Event()

    class Down:
        name = "down"

        def __getattr__(self, name: str) -> object:
            attr = getattr(ca, name)
            if name != "authorize_renewal":
                return attr

            def down(*args: object, **kwargs: object) -> object:
                threading.Timer(0.2, cancel.set).start()
                raise IssuerUnavailable("the CA is down")
            return down

    ctx = context(tmp_path, Down(), cancel)
    ctx.issuer_retry_delays_s = (60.0, 60.0)
    done: list[BaseException] = []
    worker = threading.Thread(target=lambda: done.append(pytest.raises(OperationCancelled, renew, PivSession(card), ctx,
                                                                      Secret(PIN)).value), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the back-off did not look at the cancellation token"
    assert "stopped while waiting to ask the certificate authority again" in str(done[0])
    assert keys(card) == before
