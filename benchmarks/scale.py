"""Section 5: N cards on N readers renewed concurrently by the headless command vs one; and the
cost of the status view as the number of populated slots grows (2, 4, 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (PIN, READERS, CardCounter, LatencyModel, TracingTransport, make_ca, make_state,
                               served, settings_for, summarize, wait_reader_free, write_config)


def _cli_renew(reader: str, config: Path, out: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tui", "renew", "--reader", reader, "--pin-stdin", "--yes", "--json"],
                          input=PIN + "\n", capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, CARDRENEW_CONFIG=str(config)))
    out.update(seconds=time.perf_counter() - t0, exit=proc.returncode,
               outcome=(json.loads(proc.stdout).get("outcome") if proc.stdout.strip().startswith("{") else proc.stderr[-300:]))


def _round(workdir: Path, ports: list[int], latency: LatencyModel | None, tag: str) -> dict[str, Any]:
    import contextlib

    from card.emulator.card import SoftPivCard

    cards, configs = [], []
    for port in ports:
        ca_dir = workdir / f"{tag}-ca-{port}"
        ca = make_ca(ca_dir)
        card = SoftPivCard(make_state(ca))
        CardCounter(card, latency)
        cards.append(card)
        configs.append(write_config(workdir / f"{tag}-{port}.toml", ca_dir))
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(served(c, p, quickack_fix=False)) for c, p in zip(cards, ports)]
        results: list[dict[str, Any]] = [{} for _ in ports]
        threads = [threading.Thread(target=_cli_renew, args=(r, cfg, res)) for r, cfg, res in zip(readers, configs, results)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    return {"readers": readers, "wall_s": round(wall, 3), "renewals_per_minute": round(60 * len(ports) / wall, 3),
            "per_process": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results]}


def readers(workdir: Path, latency: LatencyModel, wait_s: float = 90.0) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    out: dict[str, Any] = {"latency_model": latency.as_dict()}
    if not wait_reader_free(READERS[35963], wait_s):
        out["error"] = f"{READERS[35963]} held another card for {wait_s:.0f} s; not measured"
        return out
    free2 = wait_reader_free(READERS[35964], wait_s)
    for label, lat in (("latency_model", latency), ("no_latency", None)):
        one = _round(workdir, [35963], lat, f"one-{label}")
        row: dict[str, Any] = {"one_reader": one}
        if free2 and wait_reader_free(READERS[35964], 5):
            two = _round(workdir, [35963, 35964], lat, f"two-{label}")
            row["two_readers"] = two
            row["speedup"] = round(two["renewals_per_minute"] / one["renewals_per_minute"], 3)
        else:
            row["two_readers"] = None
            row["error"] = f"{READERS[35964]} held another engineer's card for {wait_s:.0f} s; two readers not measured"
        out[label] = row
    return out


def status_view(workdir: Path, latency: LatencyModel) -> dict[str, Any]:
    """read_card + the status JSON for 2 and 4 populated slots; 24 through the same commands."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509 import Name
    from cryptography.x509.oid import NameOID
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    import datetime as dt

    from card.certificates import decode_certificate_object, encode_certificate_object
    from card.config import ConfigError, SlotSetting, load_settings
    from card.emulator.card import SoftPivCard, install_key
    from card.piv import OBJECT_CHUID, PivSession, Slot
    from card.renewal import read_card
    from tui.cli.status import summary_json

    workdir.mkdir(parents=True)
    ca_dir = workdir / "ca"
    ca = make_ca(ca_dir)
    out: dict[str, Any] = {"latency_model_per_apdu_s": latency.per_apdu_s}
    all4 = (Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT, Slot.CARD_AUTH)
    for n in (2, 4):
        slots = all4[:n]
        card = SoftPivCard(make_state(ca, slots=slots))
        settings = settings_for(ca_dir, workdir / "state", tuple(SlotSetting(s, s.name) for s in slots))
        tr = TracingTransport(card, latency=latency)
        t0 = time.perf_counter()
        summary = read_card(PivSession(tr), settings, reader="bench")
        json.dumps(summary_json(summary, settings.window_days))
        total = time.perf_counter() - t0
        s = summarize(tr.records)
        out[str(n)] = {"apdus": s["apdus"], "bytes_in": s["bytes_in"], "seconds": round(total, 4),
                       "card_s": round(tr.clock.card_s, 4), "ours_s": round(total - tr.clock.card_s, 4)}
    # 24: 4 key slots + 20 retired key-management slots 82..95 (objects 5FC10D..5FC120).
    retired = [0x82 + i for i in range(20)]
    cfg = workdir / "24.toml"
    write_config(cfg, ca_dir, [s.hex for s in all4] + [f"{r:02X}" for r in retired])
    try:
        load_settings(cfg)
        out["24_config"] = "accepted"
    except ConfigError as exc:
        out["24_config"] = f"rejected: {exc}"
    state = make_state(ca, slots=all4)
    key = rsa.generate_private_key(65537, 2048)  # one key shared by the retired slots (status reads certificates only)
    subject = Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alex Example")])
    now = dt.datetime.now(dt.timezone.utc)
    objects = [s.object_id for s in all4]
    for i, ref in enumerate(retired):
        install_key(state, ref, key, 0x07)
        cert = ca.issue_initial(subject, key.public_key(), f"{ref:02X}", now - dt.timedelta(days=700), now + dt.timedelta(days=30), None)
        oid = bytes([0x5F, 0xC1, 0x0D + i])
        state.objects[oid.hex().upper()] = encode_certificate_object(cert.public_bytes(Encoding.DER)).hex().upper()
        objects.append(oid)
    card = SoftPivCard(state)
    tr = TracingTransport(card, latency=latency)
    session = PivSession(tr)
    t0 = time.perf_counter()
    session.select()  # what read_card would send for 24 configured slots
    for oid in objects:
        value = session.get_data(oid)
        decode_certificate_object(value)
    session.get_data(OBJECT_CHUID)
    session.get_pin_retries()
    total = time.perf_counter() - t0
    s = summarize(tr.records)
    out["24"] = {"apdus": s["apdus"], "bytes_in": s["bytes_in"], "seconds": round(total, 4),
                 "card_s": round(tr.clock.card_s, 4), "ours_s": round(total - tr.clock.card_s, 4),
                 "note": "projected: card.piv.Slot knows only 9A/9C/9D/9E, so the status view cannot be configured "
                         "for 24 slots; this is the same command sequence read_card would send"}
    return out
