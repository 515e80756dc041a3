"""The Card pane (after logon): a ``TabbedContent`` whose *Card* tab shows the card and its
certificates, with *Update My Card*, *Change passcode*, *Unlock card* (when configured) and *Log off*;
the *Certificates* tab shows the details of the selected certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Label, Markdown, Static, TabbedContent, Tabs

from card.service import CardSummary, RenewalResult, UpdateCheck, card_expiry_words, slot_condition, update_check
from card.secret import Secret
from card.words import NOT_WORKING, blocked_words, renewal_mode_words, token_name, update_words
from tui.messages import LogOffRequested, RenewalRequested
from tui.screens.base import Pane
from tui.screens.certificates import (CardTab, CertificatesTab, certificate_details, key_type_text,  # noqa: F401 - re-exported
                                      status_text)
from tui.widgets import PaneFooter, app_header
from tui.screens.dialogs import MessageDialog, PinDialog, format_date

HELP = """\
## Renewing your certificates

Your smartcard holds two certificates. They must be renewed before they expire;
you can renew them here once they are within the renewal window.

1. On the **Card** tab select **Update My Card** (key `u`).
2. Enter your PIN again and select **OK** (Cancel aborts; nothing is changed).
3. **Do not remove your smartcard** while the certificates are written.
4. Select **Next** after each certificate, then **OK**.
5. **Log off** (key `l`), remove your card, insert it and log on again to test it.

The **Certificates** tab (key `d`) shows each certificate's subject, issuer, serial number,
validity, key type and SHA-256 fingerprint. **Change passcode** (key `p`) changes your PIN.
This help is on the **Help** tab (key `h`).

If something goes wrong you get a reference code: quote it to your Registration Authority.
"""


class CardSummaryTab(CardTab):
    """The *Card* tab: holder, card GUID, and one row per certificate."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="card-details"):
            with Grid(id="card-facts"):
                yield Label("Holder", classes="fact-name", markup=False)
                yield Label("–", id="holder", classes="fact-value", markup=False)
                yield Label("Card GUID", id="card-id-name", classes="fact-name", markup=False)
                yield Label("–", id="card-guid", classes="fact-value", markup=False)
                yield Label("Reader", classes="fact-name", markup=False)
                yield Label("–", id="reader", classes="fact-value", markup=False)
                yield Label("Renewal", classes="fact-name", markup=False)
                yield Label("–", id="card-renewal-mode", classes="fact-value", markup=False)
            yield Grid(id="slot-grid")
            yield Static("", id="card-notice", markup=False)
            with Horizontal(id="card-buttons"):
                yield Button("Update My Card", id="update-button", variant="primary")
                yield Button("Change passcode", id="change-pin-button")
                yield Button("Check", id="check-button")  # the dry run (tui/screens/check.py)
                if self.settings.allow_unlock:
                    yield Button("Unlock card", id="unlock-button")
                yield Button("Log off", id="logoff-button")

    async def show(self, summary: CardSummary, renewed: RenewalResult | None = None, stopped: str | None = None) -> None:
        """Show ``summary``; ``renewed`` adds what the last renewal did, ``stopped`` why the last update
        stopped (with the reference to quote to the RA)."""
        info = summary.info
        piv = info.interface == "piv"
        self.query_one("#holder", Label).update(summary.holder or "(no name on the card)")
        self.query_one("#card-id-name", Label).update("Card GUID" if piv else "Token")
        self.query_one("#card-guid", Label).update((summary.guid_text or summary.card_id or "(none)") if piv
                                                   else token_name(info))
        self.query_one("#reader", Label).update(summary.reader)
        mode = renewal_mode_words(info.side_by_side)
        self.query_one("#card-renewal-mode", Label).update(f"{mode.title}: {mode.message}")
        for button in self.query("#change-pin-button").results(Button):
            button.display = piv  # a PKCS#11 token's PIN is changed with its own tool (tester F-16)
        grid = self.query_one("#slot-grid", Grid)
        await grid.remove_children()
        cells: list[Label] = [Label(text, classes=f"slot-header {css}", markup=False) for text, css in
                              (("Certificate", "slot-label"), ("Slot" if piv else "ID", "slot-id"), ("Expires", "slot-expiry"),
                               ("Days left", "slot-days"), ("Status", "slot-status"))]
        for status in summary.slots:
            words, css = status_text(status)
            if (condition := slot_condition(summary, status, self.settings.ra_contact)) is not None:
                words, css = NOT_WORKING[condition[0]], "-expired"  # as `status` says (tester finding F-1)
            cert = status.certificate
            cells += [
                Label(status.setting.label, classes="slot-label", markup=False),
                Label(status.name, classes="slot-id", markup=False),
                Label(format_date(cert.not_valid_after_utc) if cert else "–", classes="slot-expiry", markup=False),
                Label(str(status.days_left) if status.days_left is not None else "–", classes="slot-days", markup=False),
                Label(words, classes=f"slot-status {css}", id=f"status-{status.name.lower()}", markup=False),
            ]
        await grid.mount_all(cells)
        notice = self.query_one("#card-notice", Static)
        settings = self.settings
        card_words = card_expiry_words(summary.card_expiry, settings.window_days, dt.datetime.now(dt.timezone.utc),
                                       settings.ra_contact)
        if self.show_pin_state(summary):
            pass
        elif card_words is not None and summary.pending_journal is None and stopped is None:
            notice.update(card_words)  # the card itself expires within the renewal window, or has expired
            notice.set_class(True, "-warning")
        elif renewed is not None and renewed.ok:
            lines = ["Your certificates have been renewed:"] + [
                f"  {s.label} ({s.slot.hex}): valid until {format_date(s.new_certificate.not_valid_after_utc)}"
                for s in renewed.slots if s.new_certificate is not None]
            notice.update("\n".join(lines))
            notice.set_class(True, "-success")
        elif stopped is not None:
            resume = " Select Update My Card to resume it." if summary.pending_journal is not None else ""
            notice.update(stopped + resume)
            notice.set_class(True, "-warning")
        elif summary.pending_journal is not None:
            notice.update(f"An unfinished update was found (reference {summary.pending_journal.reference}). "
                          "Select Update My Card to resume it.")
            notice.set_class(True, "-warning")
        elif notes := [f"{s.setting.label} ({s.name}): {s.note}" for s in summary.slots if s.note]:
            notice.update("\n".join(notes))
        else:
            notice.update("")


    def show_pin_state(self, summary: CardSummary) -> bool:
        """With the PIN blocked, *Update My Card* is not offered and the notice says whom to contact.

        Returns:
            True when the PIN is blocked (the notice then shows that).
        """
        blocked = summary.pin_retries == 0
        for button in self.query("#update-button").results(Button):
            button.disabled = blocked
        if blocked:
            settings = self.settings
            unlock = " Support staff can unlock it here with the PUK (Unlock card)." if settings.allow_unlock else ""
            notice = self.query_one("#card-notice", Static)
            notice.update(f"Your card is blocked: the PIN was entered wrongly too many times. Your certificates "
                          f"cannot be updated until it is unlocked. Contact {settings.ra_contact} to unlock it.{unlock}")
            notice.set_class(True, "-warning")
        return blocked


class CardScreen(Pane):
    """The connected pane: the *Card* tab (and a *Help* tab)."""

    BINDINGS = [
        Binding("u", "update_card", "Update My Card", id="update", tooltip="Check the certificates and renew those due"),
        Binding("d", "show_certificates", "Details", id="certificates",
                tooltip="The details of each certificate (subject, issuer, serial, validity, key, fingerprint)"),
        Binding("p", "change_pin", "Passcode", id="change-pin", tooltip="Change passcode: change the card's PIN"),
        Binding("k", "unlock_card", "Unlock", id="unlock",
                tooltip="Set a new PIN with the PUK (support staff)"),
        Binding("l", "log_off", "Log off", id="log-off", tooltip="Log off; then remove the card"),
        Binding("c", "check_card", "Check", id="check", show=False,
                tooltip="Check: every check a renewal makes first; nothing on the card changes"),
        Binding("h", "show_help", "Help", id="help", tooltip="How to renew your certificates, and the keys"),
        Binding("ctrl+r", "reread_card", "Re-read", id="reread", tooltip="Read the card again"),
        Binding("ctrl+q", "app.quit", "Quit", id="quit", tooltip="Leave cardrenew"),
    ]

    def __init__(self, renewed: RenewalResult | None = None, stopped: str | None = None) -> None:
        super().__init__()
        self.renewed = renewed
        self.stopped = stopped
        """Why the last update stopped, with its reference: kept on the Card tab (re-reads too) so the
        holder can still quote the reference to the RA once the error dialog is closed."""
        self._reading: asyncio.Future[CardSummary] | None = None

    def compose(self) -> ComposeResult:
        yield app_header()
        with TabbedContent(initial="card-tab", id="card-tabs"):
            yield CardSummaryTab("Card", id="card-tab")
            yield CertificatesTab("Certificates", id="certificates-tab")
            with CardTab("Help", id="help-tab"):
                yield Markdown(HELP)
        yield PaneFooter()

    @property
    def card_tab(self) -> CardSummaryTab:
        return self.query_one("#card-tab", CardSummaryTab)

    @property
    def certificates_tab(self) -> CertificatesTab:
        return self.query_one("#certificates-tab", CertificatesTab)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "unlock_card" and not self.card_app.backend.settings.allow_unlock:
            return False
        if action in ("change_pin", "unlock_card") and self.card_app.summary is not None \
                and self.card_app.summary.info.interface != "piv":
            return False  # cardrenew changes PIV PINs only (README, Cards and tokens)
        if action == "update_card" and self.pin_blocked:
            return False
        return True

    @property
    def pin_blocked(self) -> bool:
        """The PIN is blocked (as last read or answered): no update can be offered."""
        summary = self.card_app.summary
        return summary is not None and summary.pin_retries == 0

    def pin_tries_changed(self) -> None:
        """The card answered a PIN entry (app.note_tries): show a blocked PIN at once, without card I/O."""
        summary = self.card_app.summary
        if summary is not None and self.is_mounted:
            self.card_tab.show_pin_state(summary)
            self.refresh_bindings()

    async def on_mount(self) -> None:
        if self.card_app.summary is not None:
            await self.card_tab.show(self.card_app.summary, self.renewed, self.stopped)
            self.certificates_tab.show(self.card_app.summary)
        self.query_one("#update-button", Button).focus()
        self.action_reread_card()

    def action_reread_card(self) -> None:
        self.refresh_card()

    async def read_card(self) -> CardSummary:
        """The card as read through the door; a read of this pane still under way is awaited, not
        queued again. Each press of *Update My Card* used to queue one more read behind the one
        waiting for another program's hold on the card, so the BUSY answer came 5 s later per press
        (tester F-7). Shielded: a worker replaced by a newer press does not cancel the read the newer
        one awaits.

        Raises:
            what :meth:`tui.app.CardRenewApp.read_summary` raises (CardBusyError: another program
            holds the card longer than the door waits, card.pcsc.BUSY_WAIT_S).
        """
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.ensure_future(self.card_app.read_summary())
            reading.add_done_callback(lambda done: done.cancelled() or done.exception())  # always retrieved
        return await asyncio.shield(reading)

    @work(exclusive=True, group="card", exit_on_error=False, description="Reading the card")
    async def refresh_card(self) -> CardSummary | None:
        summary = await self.read_card()
        await self.card_tab.show(summary, self.renewed, self.stopped)
        self.certificates_tab.show(summary)
        self.refresh_bindings()
        return summary

    @on(Button.Pressed, "#update-button")
    def _update_pressed(self) -> None:
        self.action_update_card()

    @on(Button.Pressed, "#logoff-button")
    def _logoff_pressed(self) -> None:
        self.action_log_off()

    @on(Button.Pressed, "#change-pin-button")
    def _change_pin_pressed(self) -> None:
        self.action_change_pin()

    @on(Button.Pressed, "#unlock-button")
    def _unlock_pressed(self) -> None:
        self.action_unlock_card()

    @on(Button.Pressed, "#check-button")
    def _check_pressed(self) -> None:
        self.action_check_card()

    def action_check_card(self) -> None:
        self.card_tab.activate()
        self.check_card()

    @work(exclusive=True, group="card", exit_on_error=False, description="Checking the card")
    async def check_card(self) -> None:
        """The dry run (tui/screens/check.py): nothing on the card changes."""
        from tui.screens.check import run_check

        await run_check(self)

    def action_show_certificates(self) -> None:
        self.certificates_tab.activate()
        self.query_one("#certificate-list", DataTable).focus()

    def action_show_help(self) -> None:
        self.query_one("#help-tab", CardTab).activate()
        self.query_one("#card-tabs", TabbedContent).query_one(Tabs).focus()  # not a button hidden on the Card tab

    def action_change_pin(self) -> None:
        self.offer_pin_change("change")

    def action_unlock_card(self) -> None:
        if self.card_app.backend.settings.allow_unlock:
            self.offer_pin_change("unlock")

    def pin_changed(self) -> None:
        self.action_reread_card()

    def action_log_off(self) -> None:
        self.app.post_message(LogOffRequested())

    def system_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Card: Update My Card", "Check the certificates and renew those due", self.action_update_card)
        yield SystemCommand("Card: Re-read", "Read the card again", self.action_reread_card)
        yield SystemCommand("Card: Certificates", "Details of each certificate", self.action_show_certificates)
        yield SystemCommand("Card: Change passcode", "Change the card's PIN", self.action_change_pin)
        yield SystemCommand("Card: Check", "Every check a renewal makes first; nothing changes", self.action_check_card)
        if self.card_app.backend.settings.allow_unlock:
            yield SystemCommand("Card: Unlock card", "Set a new PIN with the PUK", self.action_unlock_card)
        yield SystemCommand("Card: Log off", "Log off; then remove the card", self.action_log_off)

    def action_update_card(self) -> None:
        self.card_tab.activate()
        if self.pin_blocked:
            self._show_blocked()
            return
        self.check_for_updates()

    def _show_blocked(self) -> None:
        self.show_error(blocked_words(self.card_app.backend.settings.ra_contact), id="blocked-dialog")

    @work(exclusive=True, group="card", exit_on_error=False, description="Checking for updates")
    async def check_for_updates(self) -> None:
        app = self.card_app
        summary = await self.read_card()
        self.renewed = None
        await self.card_tab.show(summary, stopped=self.stopped)
        self.certificates_tab.show(summary)
        self.refresh_bindings()
        if summary.pin_retries == 0:
            self._show_blocked()
            return
        check = update_check(summary)
        settings = app.backend.settings
        problem = app.backend.issuer_problem if app.backend.issuer is None else None
        if problem is not None and check in (UpdateCheck.AVAILABLE, UpdateCheck.RESUME):
            self.show_error(problem)  # known since start-up: before the PIN is asked again (break-it B-2)
            return
        if check is UpdateCheck.AVAILABLE:
            due = "\n".join(f"  {s.setting.label} ({s.name}): expires {format_date(s.certificate.not_valid_after_utc)}"
                            for s in summary.due if s.certificate is not None)
            self.app.push_screen(MessageDialog("Updates are available for your card",
                                          f"These certificates are due for renewal:\n{due}",
                                          ok="OK", cancel="Cancel", id="updates-available-dialog"),
                            lambda ok: self._ask_pin(summary) if ok else None)
        elif check is UpdateCheck.RESUME:
            assert summary.pending_journal is not None
            reference = summary.pending_journal.reference
            self.app.push_screen(MessageDialog(
                f"An unfinished update was found (reference {reference})",
                f"An earlier update of this card (reference {reference}) did not finish. "
                "Select Resume update to complete it.", ok="Resume update", cancel="Cancel", id="resume-dialog"),
                lambda ok: self._ask_pin(summary) if ok else None)
        else:  # the words of a card with nothing to renew now (card.words, as the CLI's renew says it)
            words = update_words(summary, check, settings.window_days, settings.ra_contact)
            assert words is not None
            if check is UpdateCheck.UP_TO_DATE:
                self.app.push_screen(MessageDialog(words.title, words.message, id="up-to-date-dialog"))
            else:
                self.show_error(words, id="expired-dialog" if check is UpdateCheck.EXPIRED else "nothing-dialog")

    def _ask_pin(self, summary: CardSummary) -> None:
        def entered(pin: Secret | None) -> None:
            if pin:
                self.renew_after_guard(pin, summary)
            else:
                self.notify("Update cancelled. Nothing was changed on your card.", title="Cancelled")

        side_by_side = summary.info.side_by_side  # the PIV words stay the portal's; a token's say it keeps working
        self.app.push_screen(PinDialog(warning=renewal_mode_words(True).message) if side_by_side else PinDialog(), entered)

    @work(exclusive=True, group="card", exit_on_error=False, description="Checking the PIN tries left")
    async def renew_after_guard(self, pin: Secret, summary: CardSummary) -> None:
        """The last-try guard in front of *PIN again*, then the renewal (``pin`` is wiped unless
        the renewal took it)."""
        app = self.card_app
        started = False
        try:
            left = await app.tries_left("PIN")
            if left == 0:
                app.note_tries("PIN", 0)
                self._show_blocked()
                return
            if not await self.confirm_last_try("PIN", left):
                self.notify("PIN not sent. Nothing was changed on your card.", title="Cancelled")
                return
            if not app.renewing and not app.shutdown_event.is_set():
                self.app.post_message(RenewalRequested(pin, summary))  # the app starts it once
                started = True
        finally:
            if not started:
                pin.wipe()
