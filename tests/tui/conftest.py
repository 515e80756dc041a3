"""Fixtures for the TUI tests: a private XDG data dir (the demo CA), the demo backend, and
helpers that wait for the app by polling a condition (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from card.demo import demo_backend


@pytest.fixture(autouse=True)
def private_xdg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the demo CA (XDG data dir) and config out of the developer's home."""
    base = tmp_path_factory.getbasetemp() / "xdg"
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (base / name).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(base / name))
    monkeypatch.delenv("CARDRENEW_CONFIG", raising=False)
    return base


@pytest.fixture
def make_demo(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``make_demo(fault="none", expires_in_days=30) -> (backend, card)`` with state under tmp_path."""
    def make(fault: str = "none", expires_in_days: int = 30, reinsert_after_s: float | None = None):  # type: ignore[no-untyped-def]
        # Tests put the card back themselves unless they ask for the demo's automatic re-insertion.
        return demo_backend(fault=fault, state_dir=tmp_path / "state", expires_in_days=expires_in_days,
                            reinsert_after_s=reinsert_after_s)
    return make


async def wait_for(pilot: Pilot[object], condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Let the app run until ``condition()`` is true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(condition, '__name__', condition)}; "
                                 f"screen is {pilot.app.screen!r}")
        await pilot.pause(0.05)
    await pilot.pause()  # let the screen that satisfied the condition finish mounting


def screen_text(app) -> str:  # type: ignore[no-untyped-def]
    """All text visible on the current screen (plain)."""
    from textual.widgets import Label, Static

    parts = []
    for widget in app.screen.query("Static, Label"):
        if isinstance(widget, (Static, Label)):
            parts.append(str(widget.render()))
    return "\n".join(parts)
