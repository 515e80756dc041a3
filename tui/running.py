"""Running the app in a terminal: signals end it with 128 + signal, and the card step under way
finishes on the card thread after the terminal is restored (issue 12)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui.app import CardRenewApp

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
"""Signals that end the TUI with 128 + signal after the current card step (SIGHUP: an SSH session dropped)."""

CARD_STEP_WAIT_S = 60.0
"""After the UI has closed, the longest wait for the card step under way (a key generation on a
real card takes ~10 s, a CA request up to its own deadline); then the process ends regardless and
the journal resumes the step at the next logon."""



def run_app(app: CardRenewApp, *, cancel: threading.Event | None = None,
            card_step_wait_s: float = CARD_STEP_WAIT_S) -> int:
    """Run ``app`` in this terminal and return the process exit code.

    SIGTERM, SIGHUP and SIGINT end the UI at once (terminal restored) with ``128 + signal``;
    the card step under way finishes on the card thread (the engine journals it and stops before
    the next certificate), then the reader is released. The wait for that step is bounded by
    ``card_step_wait_s``; nothing here ever waits for the UI from the card thread.

    Args:
        cancel: also set by a signal (the backend's token: a wait for the CA, the RA hook or
            another program's hold on the card ends at once).

    Returns:
        The app's return code: 0, 1 (crash, also one that left no return code), or 128 + the
        signal that ended it.
    """
    def on_signal(signum: int, frame: object) -> None:
        if cancel is not None:
            cancel.set()
        app.exit_on_signal(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in EXIT_SIGNALS}
    try:
        try:
            app.run()
        finally:
            app.shutdown_event.set()
            backend = app.backend
            if not backend.close(wait=True, timeout_s=0.5):
                _say("cardrenew: finishing the current card step before exiting…")
                if not backend.close(wait=True, timeout_s=card_step_wait_s):
                    _say("cardrenew: the card did not answer in time; exiting. "
                         "Log on again and select Update My Card: an unfinished update resumes where it stopped.")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if app.exit_signal is not None:
        return 128 + app.exit_signal
    # None: the app ended without App.exit() — Textual's panic path (a crash in a driver thread)
    # leaves no return code, and a crash must never look like success to a script or a kiosk.
    return 1 if app.return_code is None else int(app.return_code)


def _say(text: str) -> None:
    """One line to stderr, if there is still a terminal to write to (SIGHUP: maybe not)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
