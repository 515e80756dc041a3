"""Child process for the TUI measurements (its own interpreter: start-up and peak RSS are its own).

``python -m benchmarks._tui_child startup STATE CA_DIR STATE_DIR`` → prints the monotonic time at
which the logon pane accepts input (LogonScreen current, PIN input focused) and when the card was read.
``python -m benchmarks._tui_child bare`` → the same for a bare Textual app with one focused Input.
``python -m benchmarks._tui_child renew STATE CA_DIR STATE_DIR`` → a full renewal through the TUI
(Pilot): seconds from submitting the PIN to the first frame of Write Certificates, and VmHWM.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def _vm(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _until(pilot, cond, timeout=60.0, step=0.002):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out; screen {pilot.app.screen!r}")
        await pilot.pause(step)


def _backend(state: str, ca_dir: str, state_dir: str):  # type: ignore[no-untyped-def]
    """The backend on the card in ``state``, built as ``cardrenew --demo`` builds its own
    (card.demo.lazy_demo_backend): the card is loaded and the CA opened on first use, on the card
    thread after the first frame, not before it."""
    from pathlib import Path

    from card.config import Settings
    from card.enrollment.local_settings import LocalIssuerSettings
    from card.demo import in_process_service
    from card.journal import AuditLog, JournalStore
    from card.backend import Backend
    from card.lazy import LazyIssuer, Once

    def load_card():  # type: ignore[no-untyped-def]
        from card.emulator.card import SoftPivCard

        return SoftPivCard.from_file(Path(state))

    def open_ca():  # type: ignore[no-untyped-def]
        from card.enrollment.local import LocalCA

        return LocalCA(Path(ca_dir))

    settings = Settings(issuer=LocalIssuerSettings(Path(ca_dir)), management_key_source="default",
                        state_dir=Path(state_dir))
    card = Once(load_card)
    return Backend(settings, in_process_service(card), LazyIssuer(open_ca), JournalStore(settings.state_dir),
                   AuditLog(settings.state_dir / "audit.log"), "Virtual PCD 00 00"), card


async def startup(args: list[str]) -> dict[str, float]:
    from textual.widgets import Input

    from tui.app import make_app
    from tui.screens.logon import LogonScreen

    backend, _ = _backend(*args)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, LogonScreen) and isinstance(app.focused, Input)
                     and app.focused.id == "pin-input")
        ready = time.monotonic()
        await _until(pilot, lambda: app.summary is not None)
        card_read = time.monotonic()
        await pilot.press("1")  # it really accepts input (checked after the measured point)
        assert app.focused.value == "1", "the PIN field did not take the key"
    return {"ready": ready, "card_read": card_read}


async def bare() -> dict[str, float]:
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Header, Input, Label

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Header()
            yield Label("Enter your Passcode (PIN):")
            yield Input(password=True, id="pin-input")
            yield Footer()

        def on_mount(self) -> None:
            self.query_one(Input).focus()

    app = Bare()
    async with app.run_test(size=(100, 32)) as pilot:
        await _until(pilot, lambda: isinstance(app.focused, Input))
        ready = time.monotonic()
        await pilot.press("1")
        assert app.focused.value == "1", "the PIN field did not take the key"
    return {"ready": ready}


async def renew(args: list[str]) -> dict[str, float]:
    from textual.widgets import Input

    from tui.app import make_app
    from tui.screens import CardScreen, LogonScreen, MessageDialog, NextDialog, PinDialog, WriteCertificatesScreen

    backend, card = _backend(*args)
    app = make_app(backend)
    rss_before = 0
    async with app.run_test(size=(100, 32)) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*"123456", "enter")
        await _until(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("u")
        await _until(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*"123456")
        rss_before = _vm("VmRSS")
        t0 = time.monotonic()
        await pilot.press("enter")
        await _until(pilot, lambda: any(isinstance(s, WriteCertificatesScreen) and s.is_mounted for s in app.screen_stack))
        await pilot.pause()  # let it paint
        first_frame = time.monotonic() - t0
        while True:
            await _until(pilot, lambda: isinstance(app.screen, (NextDialog, MessageDialog)), step=0.01)
            if isinstance(app.screen, MessageDialog):
                break
            dialog = app.screen
            await pilot.press("enter")
            await _until(pilot, lambda: app.screen is not dialog, step=0.01)
        done = time.monotonic() - t0
        ok = app.last_result is not None and app.last_result.ok
    return {"first_frame_write_certificates_s": first_frame, "renewal_via_tui_s": done, "ok": ok,
            "rss_before_renewal_kib": rss_before, "peak_rss_kib": _vm("VmHWM")}


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "startup":
        out = asyncio.run(startup(args))
    elif mode == "bare":
        out = asyncio.run(bare())
    else:
        out = asyncio.run(renew(args))
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
