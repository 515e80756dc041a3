"""Section 5b (issue 15): four cards on four readers renewed at once vs one, under the latency
model — by the renewal queue in one process (``card.service.ReaderQueue``: one card worker per
reader, the PIN given per card) and by four ``renew`` processes side by side (as the two-reader
figure is measured, :func:`benchmarks.scale.readers`). Needs the four vpcd readers of
scripts/vpcd-readers.sh (``python -m benchmarks`` starts pcscd with them when none runs)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (PIN, READERS, CardCounter, LatencyModel, make_ca, make_state, served, settings_for,
                               wait_reader_free)
from benchmarks.scale import _round

PORTS = [35963, 35964, 35965, 35966]


def _queue_round(workdir: Path, ports: list[int], latency: LatencyModel | None, tag: str) -> dict[str, Any]:
    """Serve one card per port, then renew them all through one ReaderQueue; wall time from the first
    PIN given to the last renewal ended (the PINs are given at once: no holder's typing is timed)."""
    from card.backend import pcsc_backend
    from card.emulator.card import SoftPivCard
    from card.secret import Secret
    from card.service import EntryState, ReaderQueue

    ca_dir = workdir / f"{tag}-ca"
    ca = make_ca(ca_dir)
    cards = []
    for _ in ports:
        card = SoftPivCard(make_state(ca))
        CardCounter(card, latency)
        cards.append(card)
    with contextlib.ExitStack() as stack:
        names = [stack.enter_context(served(c, p)) for c, p in zip(cards, ports)]
        backend = pcsc_backend(settings_for(ca_dir, workdir / f"{tag}-state"), wait_for_card=True)
        queue = ReaderQueue(backend)
        deadline = time.monotonic() + 60
        while sum(e.state is EntryState.DUE for e in queue.poll() if e.reader in names) < len(names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cards were not read as due: {queue.entries()}")
            time.sleep(0.05)
        t0 = time.perf_counter()
        futures = []
        for name in names:
            entry = queue.ask_pin(name)
            assert entry is not None
            futures.append(queue.renew(name, entry.card_id, Secret(PIN)))
        ended = [f.result(timeout=600) for f in futures]
        wall = time.perf_counter() - t0
        queue.close()
        backend.close()
    return {"readers": names, "wall_s": round(wall, 3), "renewals_per_minute": round(60 * len(ports) / wall, 3),
            "states": [e.state.value for e in ended]}


def four_readers(workdir: Path, latency: LatencyModel, wait_s: float = 60.0) -> dict[str, Any]:
    """Four readers vs one, latency model: through the queue (one process) and four CLI processes."""
    workdir.mkdir(parents=True)
    out: dict[str, Any] = {"latency_model": latency.as_dict()}
    busy = [READERS[p] for p in PORTS if not wait_reader_free(READERS[p], wait_s)]
    if busy:
        out["error"] = f"{', '.join(busy)} held a card (or is not configured: scripts/vpcd-readers.sh); not measured"
        return out
    one = _queue_round(workdir, PORTS[:1], latency, "q1")
    four = _queue_round(workdir, PORTS, latency, "q4")
    out["queue"] = {"one_reader": one, "four_readers": four,
                    "speedup": round(four["renewals_per_minute"] / one["renewals_per_minute"], 3)}
    cli_one = _round(workdir, PORTS[:1], latency, "c1")
    cli_four = _round(workdir, PORTS, latency, "c4")
    out["cli_processes"] = {"one_reader": cli_one, "four_readers": cli_four,
                            "speedup": round(cli_four["renewals_per_minute"] / cli_one["renewals_per_minute"], 3)}
    return out
