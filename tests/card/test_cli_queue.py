"""``cardrenew queue`` in process on four in-process readers (tests/queue_readers.py) behind the
real ``pcsc_backend`` seam: each holder's PIN asked by a prompt naming holder and reader, one line
per card, the summary and the exit code; ``--pin-stdin`` refused before any card is touched;
``--watch`` ended by SIGTERM releases every reader. Through pcscd and a pty:
tests/integration/test_queue_pcscd.py."""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from card.emulator.card import CardFaults
from card.service import ReaderQueue
from tests.queue_readers import HOLDERS, PINS, READERS, QueueReaders, verify_pins, wait_until
from tui.cli import main


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def use_readers(monkeypatch: pytest.MonkeyPatch, readers: QueueReaders, answers: dict[str, str] | None = None,
                prompts: list[str] | None = None) -> list:  # type: ignore[type-arg]
    built: list = []  # type: ignore[type-arg]

    def backend(settings, reader=None, *, cancel=None, **_):  # type: ignore[no-untyped-def]
        made = readers.backend()
        if cancel is not None:
            made.cancel_event = cancel
        built.append(made)
        return made

    def prompt_pin(text: str) -> str:
        if prompts is not None:
            prompts.append(text)
        holder = next(h for h in HOLDERS if h in text)
        answer = (answers or dict(zip(HOLDERS, PINS)))[holder]
        return answer.pop(0) if isinstance(answer, list) else answer

    monkeypatch.setattr("card.backend.pcsc_backend", backend)
    monkeypatch.setattr("tui.cli.queue.prompt_pin", prompt_pin)
    monkeypatch.setattr("sys.stdin", _Tty())
    monkeypatch.setattr("tui.cli.queue.POLL_S", 0.05)
    return built


def test_queue_renews_every_card_with_its_holders_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    readers = QueueReaders(tmp_path, 4)
    prompts: list[str] = []
    use_readers(monkeypatch, readers, prompts=prompts)
    assert main(["queue"]) == 0
    out = capsys.readouterr().out
    assert sorted(prompts) == sorted(f"PIN of {h}'s card in {r} (Enter to skip this card): "
                                     for h, r in zip(HOLDERS, READERS))
    for reader, holder in zip(READERS, HOLDERS):
        assert re.search(rf"^{reader} \| {holder} \| renewed — Renewed, new expiry \d{{4}}-", out, re.M), out
    assert "Summary: 4 renewed, 0 failed, 0 not due" in out
    for reader, card in readers.cards.items():
        assert set(verify_pins(card)) == {readers.pins[reader].encode()}


def test_a_pulled_card_and_a_ca_refusal_exit_13_with_their_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    readers = QueueReaders(tmp_path, 4, foreign=(READERS[2],), faults={READERS[1]: CardFaults(drop_at_put_data=2)})
    use_readers(monkeypatch, readers)
    assert main(["queue"]) == 13
    out = capsys.readouterr().out
    lines = {r: next(line for line in out.splitlines() if line.startswith(r + " |") and "|" in line
                     and ("renewed" in line or "FAILED" in line)) for r in READERS}
    assert "renewed —" in lines[READERS[0]] and "renewed —" in lines[READERS[3]]
    assert re.search(r"FAILED \(REF [\w-]+\) — The card was removed", lines[READERS[1]]), lines[READERS[1]]
    assert re.search(r"FAILED \(REF [\w-]+\) — .*not issued by this CA", lines[READERS[2]]), lines[READERS[2]]
    assert "Summary: 2 renewed, 2 failed, 0 not due" in out


def test_a_skipped_card_is_not_renewed_and_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    readers = QueueReaders(tmp_path, 2)
    use_readers(monkeypatch, readers, answers={HOLDERS[0]: PINS[0], HOLDERS[1]: ""})
    assert main(["queue"]) == 13
    out = capsys.readouterr().out
    assert f"{READERS[1]} | {HOLDERS[1]} | skipped — no PIN sent" in out
    assert "Summary: 1 renewed, 0 failed, 0 not due, 1 skipped" in out
    assert verify_pins(readers.cards[READERS[1]]) == []


def test_pin_stdin_is_refused_before_any_card_is_touched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    readers = QueueReaders(tmp_path, 2)
    built = use_readers(monkeypatch, readers)
    monkeypatch.setattr("sys.stdin", io.StringIO(PINS[0] + "\n"))
    assert main(["queue", "--pin-stdin"]) == 2
    err = capsys.readouterr().err
    assert "--pin-stdin is refused" in err and "one PIN must never be sent to several cards" in err
    assert built == [] and all(card.trace == [] for card in readers.cards.values())


def test_watch_waits_for_cards_and_sigterm_ends_it_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    readers = QueueReaders(tmp_path, 2)
    late = readers.cards[READERS[1]]
    late.remove()  # the second holder comes later
    use_readers(monkeypatch, readers)
    queues: list[ReaderQueue] = []
    doors: list = []  # type: ignore[type-arg]

    class Recorded(ReaderQueue):
        def __init__(self, door, on_change=None):  # type: ignore[no-untyped-def]
            queues.append(self)
            made = door.reader_door
            door.reader_door = lambda name: doors.append(made(name)) or doors[-1]
            super().__init__(door, on_change)

    monkeypatch.setattr("tui.cli.queue.ReaderQueue", Recorded)

    def holders_arrive_then_stop() -> None:
        wait_until(lambda: bool(queues) and queues[0].summary()["renewed"] == 1)
        late.insert()
        wait_until(lambda: queues[0].summary()["renewed"] == 2)
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=holders_arrive_then_stop, daemon=True)
    helper.start()
    code = main(["queue", "--watch"])
    helper.join(10)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Stopping: the card steps under way finish" in out
    assert "Summary: 2 renewed, 0 failed, 0 not due" in out
    assert len(doors) == 2 and all(door.close(wait=False) for door in doors)  # every reader's worker has ended


def test_an_arrow_key_at_the_prompt_spends_no_try_and_the_holder_is_asked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Tester F-22: Up then 5 digits at the PIN prompt was sent as 8 bytes ``ESC [ A 6 5 4 3 2``."""
    readers = QueueReaders(tmp_path, 1)
    use_readers(monkeypatch, readers, answers={HOLDERS[0]: ["\x1b[A11111", PINS[0]]})  # type: ignore[dict-item]
    assert main(["queue"]) == 0
    out = capsys.readouterr().out
    assert "PIN not sent — it holds a character a PIN cannot contain" in out and "No try was used" in out
    assert set(verify_pins(readers.cards[READERS[0]])) == {PINS[0].encode()}  # the arrow key's bytes never went


def test_watch_asks_again_for_a_skipped_card_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Tester F-15: a card whose holder skipped the prompt, pulled and put back, is a new arrival."""
    readers = QueueReaders(tmp_path, 1)
    card = readers.cards[READERS[0]]
    prompts: list[str] = []
    use_readers(monkeypatch, readers, answers={HOLDERS[0]: ["", PINS[0]]}, prompts=prompts)  # type: ignore[dict-item]

    def holder_comes_back_then_stop() -> None:
        wait_until(lambda: len(prompts) == 1)
        time.sleep(0.3)
        card.remove()
        time.sleep(0.3)
        card.insert()
        wait_until(lambda: sum(apdu[1] == 0xDB for apdu, _ in card.trace) >= 2)  # both certificates written
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=holder_comes_back_then_stop, daemon=True)
    helper.start()
    code = main(["queue", "--watch"])
    helper.join(10)
    out = capsys.readouterr().out
    assert len(prompts) == 2, out
    assert code == 0, out
    assert "skipped — no PIN sent" in out and "Summary: 1 renewed, 0 failed, 0 not due" in out


def test_a_pkcs11_configuration_is_refused_before_any_card_is_touched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Tester F-23: with `[card] interface = "pkcs11"` the queue offered to renew the PIV cards in the
    PC/SC readers instead of the configured token."""
    readers = QueueReaders(tmp_path, 2)
    built = use_readers(monkeypatch, readers)
    module = tmp_path / "libtoken.so"
    module.write_bytes(b"\x7fELF")  # the configuration only checks that the module is a file
    (tmp_path / "c.toml").write_text(f'[card]\ninterface = "pkcs11"\nmodule = "{module}"\n')
    assert main(["--config", str(tmp_path / "c.toml"), "queue"]) == 2
    err = capsys.readouterr().err
    assert "PKCS#11 token" in err and "cardrenew renew" in err
    assert built == [] and all(card.trace == [] for card in readers.cards.values())


def test_a_renewed_cards_line_is_printed_while_the_next_holders_prompt_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tester F-15, the rest: the line of a card that finished waited until the holder at another
    reader answered the open PIN prompt (for as long as that holder took). Now it is printed above
    the prompt while the prompt waits."""
    readers = QueueReaders(tmp_path, 2)
    use_readers(monkeypatch, readers)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    seen_while_waiting: list[bool] = []
    first_line = re.compile(rf"^{re.escape(READERS[0])} \| {HOLDERS[0]} \| renewed — ", re.M)

    def prompt_pin(text: str) -> str:
        if HOLDERS[1] in text:  # the second holder takes their time; the first card renews meanwhile
            deadline = time.monotonic() + 30  # a hang detector: the line comes within a poll or two
            while not first_line.search(out.getvalue()) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen_while_waiting.append(bool(first_line.search(out.getvalue())))
            return PINS[1]
        return PINS[0]

    monkeypatch.setattr("tui.cli.queue.prompt_pin", prompt_pin)
    assert main(["queue"]) == 0
    assert seen_while_waiting == [True], out.getvalue()
    assert "Summary: 2 renewed, 0 failed, 0 not due" in out.getvalue()
