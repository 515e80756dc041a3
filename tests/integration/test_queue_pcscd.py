"""The renewal queue (issue 15) through real pcscd + vpcd on four readers ("Virtual PCD 00 00/00 01"
and "Second PCD 00 00/00 01", scripts/vpcd-readers.sh): the *Readers* pane renews four cards
at once, each with its own PIN; a pulled card and a CA refusal in the same run leave the others
renewed and show their references; ``cardrenew queue --watch`` under a pty over the same, ended by
Ctrl-C; and an attacker's swap: the PIN typed for card A never reaches card B (B's APDU trace).

The cards are served in this process (``card.emulator.vpcd.serve`` in a thread), so each card's
APDU trace (``SoftPivCard.trace``) shows what reached it."""

from __future__ import annotations

import dataclasses
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from card import pcsc
from card.backend import pcsc_backend
from card.config import load_settings
from card.emulator import vpcd
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.piv import KeyType
from tests.queue_readers import verify_pins
from tests.tui.pty_tui import PtyTui
from tests.tui.test_readers_pane import open_readers, states, type_pins
from tui.app import make_app

pytestmark = pytest.mark.pcscd

PORTS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01", 35965: "Second PCD 00 00", 35966: "Second PCD 00 01"}
HOLDERS = {35963: ("Alice Anders", "111111"), 35964: ("Bob Brown", "222222"), 35965: ("Carol Chen", "333333"),
           35966: ("Dan Dunn", "444444")}


def wait_reader(reader: str, present: bool, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if dict(pcsc.list_readers()).get(reader, False) == present:
                return
        except Exception:  # noqa: BLE001 - pcscd may be starting
            pass
        time.sleep(0.05)
    raise AssertionError(f"reader {reader} did not show card present={present}")


class Cards:
    """Cards served on the four vpcd readers from this process; each stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.ca = LocalCA(workdir / "ca", 90)
        init_ca(workdir / "other-ca", "Another CA")
        self.other_ca = LocalCA(workdir / "other-ca", 90)
        self.served: dict[int, tuple[threading.Event, threading.Thread]] = {}

    def serve(self, port: int, *, holder: str | None = None, pin: str | None = None, foreign: bool = False,
              faults: CardFaults | None = None) -> SoftPivCard:
        holder, pin = holder or HOLDERS[port][0], pin or HOLDERS[port][1]
        state = create_card_state(self.other_ca if foreign else self.ca, pin=pin, holder=holder,
                                  guid=bytes([port & 0xFF, len(holder)]) * 8, key_type=KeyType.ECCP256)
        card = SoftPivCard(state, None, faults or CardFaults(), name=PORTS[port])
        stop = threading.Event()
        thread = threading.Thread(target=vpcd.serve, args=(card, "127.0.0.1", port, stop), daemon=True)
        thread.start()
        self.served[port] = (stop, thread)
        wait_reader(PORTS[port], True)
        return card

    def pull(self, port: int) -> None:
        stop, thread = self.served.pop(port)
        stop.set()
        thread.join(5)
        wait_reader(PORTS[port], False)

    def stop(self) -> None:
        for port in list(self.served):
            self.pull(port)


@pytest.fixture
def cards(pcscd: None, workdir: Path) -> Iterator[Cards]:
    try:
        listed = dict(pcsc.list_readers())
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"pcscd cannot be asked: {exc}")
    if not all(reader in listed for reader in PORTS.values()):
        pytest.skip("the running pcscd does not offer the four vpcd readers of scripts/vpcd-readers.sh "
                    "(the test session and .ci/run start pcscd with that configuration)")
    for reader in PORTS.values():
        try:
            wait_reader(reader, False, timeout_s=5)
        except AssertionError:
            pytest.skip(f"{reader} holds a card already (another test run is using the virtual readers)")
    served = Cards(workdir)
    yield served
    served.stop()


def tui_backend(workdir: Path):  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(load_settings(workdir / "config.toml"), state_dir=workdir / "state")
    return pcsc_backend(settings, wait_for_card=True)


def holders_pins() -> dict[str, tuple[str, str]]:
    return {holder: (PORTS[port], pin) for port, (holder, pin) in HOLDERS.items()}


async def test_readers_pane_renews_four_cards_at_once_each_with_its_pin(cards: Cards, workdir: Path) -> None:
    served = {port: cards.serve(port, faults=CardFaults(delays_s={0x47: 0.3})) for port in PORTS}
    app = make_app(tui_backend(workdir))
    async with app.run_test(size=(100, 30)) as pilot:
        await open_readers(pilot, app, 4)
        await pilot.press("a")
        await type_pins(pilot, app, holders_pins(), 4)
        await wait_for_states(pilot, app, lambda shown: set(shown.values()) == {"renewed"})
    for port, card in served.items():
        assert set(verify_pins(card)) == {HOLDERS[port][1].encode()}


async def test_a_pulled_card_and_a_ca_refusal_leave_the_others_renewed(cards: Cards, workdir: Path) -> None:
    pulled, refused = 35964, 35965
    for port in PORTS:
        cards.serve(port, foreign=port == refused,
                    faults=CardFaults(drop_at_put_data=2) if port == pulled else None)
    app = make_app(tui_backend(workdir))
    async with app.run_test(size=(100, 30)) as pilot:
        await open_readers(pilot, app, 4)
        await pilot.press("a")
        await type_pins(pilot, app, holders_pins(), 4)
        await wait_for_states(pilot, app, lambda shown: all(s == "renewed" or s.startswith("failed (ref ")
                                                            for s in shown.values()))
        shown = states(app)
    assert shown[PORTS[35963]] == shown[PORTS[35966]] == "renewed"
    assert re.fullmatch(r"failed \(ref [\w-]+\)", shown[PORTS[pulled]])
    assert re.fullmatch(r"failed \(ref [\w-]+\)", shown[PORTS[refused]])


async def wait_for_states(pilot, app, done, timeout_s: float = 90) -> None:  # type: ignore[no-untyped-def]
    from tests.tui.conftest import wait_for

    await wait_for(pilot, lambda: done(states(app)), timeout_s=timeout_s)


def answer_prompts(tui: PtyTui, count: int, start: int, pins: dict[str, str]) -> int:
    """Answer ``count`` PIN prompts (each names its holder and reader) with that holder's PIN."""
    prompt = re.compile(r"PIN of (.+?)'s card in (.+?) \(Enter to skip this card\): ")
    for _ in range(count):
        tui.wait_text("(Enter to skip this card): ", start=start)
        match = prompt.search(tui.text(start))
        assert match is not None
        holder, reader = match.groups()
        assert PORTS[next(p for p, (h, _) in HOLDERS.items() if h == holder)] == reader
        start = len(tui.output)
        tui.send(pins[holder] + "\r")
    return start


def test_queue_watch_under_a_pty_renews_the_cards_as_they_arrive(cards: Cards, workdir: Path) -> None:
    pulled, refused = 35964, 35965
    cards.serve(35963)
    cards.serve(pulled, faults=CardFaults(drop_at_put_data=2))
    pins = {holder: pin for holder, pin in HOLDERS.values()}
    with PtyTui(["queue", "--watch"], env={"CARDRENEW_CONFIG": str(workdir / "config.toml")}, cwd=workdir) as tui:
        start = answer_prompts(tui, 2, 0, pins)
        cards.serve(refused, foreign=True)  # the next holders arrive while the first cards renew
        cards.serve(35966)
        answer_prompts(tui, 2, start, pins)
        for holder in ("Alice Anders", "Dan Dunn"):
            tui.wait_text(f"| {holder} | renewed — Renewed, new expiry", timeout_s=90)
        tui.wait_text("| Bob Brown | FAILED (REF ", timeout_s=90)
        tui.wait_text("| Carol Chen | FAILED (REF ", timeout_s=90)
        sent = tui.signal(signal.SIGINT)
        code = tui.wait_exit(30)
        assert code == 13, tui.text()[-2000:]
        assert time.monotonic() - sent < 30
        text = tui.text()
    assert "Summary: 2 renewed, 2 failed, 0 not due" in text
    assert "123456" not in text and not any(pin in text for pin in pins.values())  # no PIN is ever echoed
    present = dict(pcsc.list_readers())
    for port in PORTS:  # every reader released: another program can take its card at once
        if present.get(PORTS[port]):
            with pcsc.PcscTransport(PORTS[port]).transaction():
                pass


def test_the_pin_typed_for_card_a_never_reaches_card_b(cards: Cards, workdir: Path) -> None:
    """Attacker: the queue asks Alice for her card's PIN; before she types it, her card is pulled and
    Mallory's put in the same reader. Nothing Alice types reaches Mallory's card: its APDU trace has
    no VERIFY with Alice's PIN, and its PIN counter is untouched."""
    cards.serve(35963)
    with PtyTui(["queue"], env={"CARDRENEW_CONFIG": str(workdir / "config.toml")}, cwd=workdir) as tui:
        tui.wait_text("PIN of Alice Anders's card in Virtual PCD 00 00")
        cards.pull(35963)
        mallory = cards.serve(35963, holder="Mallory Moss", pin="999999")
        start = len(tui.output)
        tui.send("111111\r")
        tui.wait_text("| Alice Anders | FAILED", start=start, timeout_s=60)
        tui.wait_text("PIN of Mallory Moss's card in Virtual PCD 00 00", start=start, timeout_s=30)
        tui.send("\r")  # Mallory's holder is not here: skipped
        assert tui.wait_exit(30) == 13
    assert b"111111" not in b"".join(apdu for apdu, _ in mallory.trace)
    assert verify_pins(mallory) == [] and mallory.state.pin_retries == 3
