"""Section 4: TUI start-up (ours vs a bare Textual app, same harness, same run), first frame of
Write Certificates, peak RSS of the TUI process during a renewal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, make_ca, make_state, median


def _child(mode: str, *args: str) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "benchmarks._tui_child", mode, *args], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    line = next((out for out in proc.stdout.splitlines() if out.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"TUI child {mode} failed: {proc.stderr[-800:]}")
    return t0, json.loads(line[7:])


def run(workdir: Path, repeats: int = 5) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    ca_dir = workdir / "ca"
    ca = make_ca(ca_dir)
    ours, ours_card, bare = [], [], []
    _child("bare")  # warm the file cache for both
    for i in range(repeats):
        state = workdir / f"card{i}.json"
        make_state(ca).save(state)
        t0, r = _child("startup", str(state), str(ca_dir), str(workdir / f"state{i}"))
        ours.append(r["ready"] - t0)
        ours_card.append(r["card_read"] - t0)
        t0, r = _child("bare")
        bare.append(r["ready"] - t0)
    state = workdir / "card-renew.json"
    make_state(ca).save(state)
    _, renew = _child("renew", str(state), str(ca_dir), str(workdir / "state-renew"))
    return {
        "harness": "Textual run_test (headless Pilot) in a fresh interpreter; time from spawning the process to "
                   "the pane's PIN Input having focus (then a key press must reach it); the backend is built as "
                   "cardrenew --demo builds it: card and CA made on first use, after the first frame",
        "repeats": repeats,
        "startup_to_logon_s": round(median(ours), 4),
        "startup_to_logon_card_read_s": round(median(ours_card), 4),
        "bare_textual_startup_s": round(median(bare), 4),
        "startup_ratio_vs_bare_textual": round(median(ours) / median(bare), 3),
        "samples": {"ours": [round(x, 4) for x in ours], "bare": [round(x, 4) for x in bare]},
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in renew.items()},
    }
