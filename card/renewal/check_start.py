"""The door's dry run (:meth:`card.service.CardDoor.check`) in its two phases: the CA without the card,
then the card checks on the card thread (:class:`card.renewal.check.DryRun`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from card.config import Settings
from card.enrollment.base import Issuer
from card.journal import AuditLog, JournalStore
from card.piv import PivSession
from card.renewal.check import DryRun
from card.renewal.check_report import CheckReport, CheckRequest

Submit = Callable[[Callable[[PivSession], CheckReport]], "Future[CheckReport]"]
"""The card worker's ``submit``: runs a function on the card thread in one card transaction."""


def start_check(settings: Settings, issuer: Issuer | None, journals: JournalStore, audit: AuditLog, submit: Submit,
                request: CheckRequest, cancel: threading.Event,
                reset: Callable[[], object] | None = None) -> Future[CheckReport]:
    """The door's ``check`` (:meth:`card.service.CardDoor.check`): the CA is asked first on a thread of
    its own, so a CA that does not answer holds no card; then the card checks run through ``submit``.
    ``request.pin`` is wiped when the check ends. With a PIN, ``reset`` (the worker's disconnect) is
    queued right behind the card checks: the card forgets the verified PIN, so no program can use
    the holder's keys without it while the TUI stays logged on (as the logon does, tester F-4).

    Returns (future): the report. The future raises CardRemovedError, NoCardError,
    ReaderUnavailableError, OperationCancelled (``cancel``), ApduError (no PIV application); a
    failed check is in the report, not raised.
    """
    result: Future[CheckReport] = Future()

    def card_done(card: Future[CheckReport]) -> None:
        exc = card.exception()
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(card.result())

    def ask_ca_then_card() -> None:
        try:
            dry = DryRun(settings, issuer, journals, audit, issuer_error=request.issuer_error, cancel=cancel,
                         now=request.now)
            dry.check_issuer()
            with_pin = request.pin is not None
            card = submit(lambda session: dry.check_card(session, request.pin, refuse_last_try=request.refuse_last_try))
            if with_pin and reset is not None:
                reset()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
            if request.pin is not None:
                request.pin.wipe()
            result.set_exception(exc)
            return
        card.add_done_callback(card_done)

    threading.Thread(target=ask_ca_then_card, name="card-check-ca", daemon=True).start()
    return result
