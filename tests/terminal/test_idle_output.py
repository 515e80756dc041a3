"""Slow links (issue 15): while nobody types, the TUI writes nothing to its terminal on any pane —
over an SSH link every byte of an idle screen is paid for. Was: the logon pane's blinking PIN cursor
redrew the field twice a second, ~1,400 bytes/s for as long as the pane waited. Counted bytes, not
time (benchmarks/terminal_bytes.py reports the same figures beside the others)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.terminal_bytes import measure


@pytest.mark.sweep  # a whole renewal on the real process, with idle windows: ~40 s
def test_no_pane_writes_anything_while_idle(tmp_path: Path) -> None:
    figures = measure(tmp_path)
    assert figures["idle_bytes_per_s"] == dict.fromkeys(figures["idle_bytes_per_s"], 0.0), figures
    assert figures["bytes_whole_renewal"] > 0  # the measurement saw the renewal being drawn
