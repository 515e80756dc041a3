"""Sections 1 and 2: card traffic per renewal with a computed lower bound, and wall time split into
card, CA and our own remainder (in-process emulator with a latency model; pcscd + vpcd)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (PIN, CardCounter, Clock, LatencyModel, TimedIssuer, TracingTransport, make_ca,
                               make_state, settings_for, summarize)


class _TimedJournals:
    """JournalStore / AuditLog proxies that count and time their writes (part of our remainder)."""

    def __init__(self, inner: Any, method: str, sink: dict[str, list[float]]) -> None:
        self._inner, self._method, self._sink = inner, method, sink

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in ("save", "write", "clear"):
            return attr

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self._sink.setdefault(f"{self._method}.{name}", []).append(time.perf_counter() - t0)

        return timed


def _n_apdus(cmd_len: int, resp_len: int) -> int:
    """Short APDUs needed: command chain blocks of 255 bytes, plus GET RESPONSE for each further 256."""
    return max(1, math.ceil(cmd_len / 255)) + max(0, math.ceil(resp_len / 256) - 1)


def lower_bound(key_type: Any, slots: list[Any], new_ders: dict[Any, bytes]) -> dict[str, Any]:
    """The commands a renewal of ``slots`` cannot do without, counted as short APDUs (ISO 7816-4:
    command chaining in blocks of 255 bytes, a GET RESPONSE for each further 256 bytes of answer).

    What DESIGN §3 requires, and nothing else:

    - SELECT the PIV application once (SP 800-73-4 Part 2 §3.1.1);
    - management-key authentication once (mutual, 2 APDUs, Part 2 Appendix A.1): it lasts for
      the card session, so one per renewal;
    - per slot: GENERATE (Part 2 §3.3.2), and three private-key operations — the old key's proof
      of possession for the CA (§3 step 2, authorise while the old key exists), the CSR signature,
      and the test signature with the new key that is verified with the new certificate (§3 step 3);
    - VERIFY: slot 9C is PIN-always (reference/piv-protocol.md §3.4 and §6; field report F08), so
      one VERIFY immediately before each of its three operations; the preflight PIN check can be
      the first of them, and the 9A operations ride on any verified PIN. Without 9C, one VERIFY;
    - the PUT DATA chunks of each new certificate object, and one read-back of it (GET DATA).

    Deliberately *not* counted, although the engine needs them: reading the CHUID and the old
    certificates (the card's GUID for the journal, the certificate the CA authorises) and the F7
    probe of the management-key algorithm (F14): they are left in the ratio as our cost rather
    than hidden in the bound (about 10 APDUs for RSA-2048, see the README's Performance section).
    """
    from card import tlv
    from card.certificates import encode_certificate_object
    from card.piv import Slot

    rsa = key_type.is_rsa
    sig_len = 256 if rsa else 72
    block = key_type.sign_bytes
    sign_cmd = len(tlv.tlv(0x7C, tlv.tlv(0x82, b"") + tlv.tlv(0x81, b"\0" * block)))
    sign_resp = len(tlv.tlv(0x7C, tlv.tlv(0x82, b"\0" * sig_len)))
    gen_resp = 269 if rsa else 70
    ops_per_slot = 3  # proof of possession (old key), CSR, test signature (new key)
    rows: dict[str, int] = {"SELECT": 1, "GENERAL AUTHENTICATE (management key)": 2}
    n9c = sum(1 for s in slots if s == Slot.SIGNATURE)
    rows["VERIFY"] = ops_per_slot * n9c if n9c else 1
    rows["GENERATE (+GET RESPONSE)"] = len(slots) * _n_apdus(7, gen_resp)
    rows["GENERAL AUTHENTICATE (signatures, chained, +GET RESPONSE)"] = (
        ops_per_slot * len(slots) * _n_apdus(sign_cmd, sign_resp))
    put = read = 0
    for slot in slots:
        obj = encode_certificate_object(new_ders[slot])
        put += _n_apdus(len(tlv.tlv(0x5C, slot.object_id) + tlv.tlv(0x53, obj)), 0)
        read += _n_apdus(5, len(tlv.tlv(0x53, obj)))
    rows["PUT DATA chunks"] = put
    rows["GET DATA read-back (+GET RESPONSE)"] = read
    return {"total": sum(rows.values()), "by_command": rows}


def run_inprocess(workdir: Path, key_type: Any, latency: LatencyModel | None) -> dict[str, Any]:
    """One full renewal (two slots) on the in-process SoftPivCard, traced and timed."""
    from card.emulator.card import SoftPivCard
    from card.enrollment.local import LocalCA
    from card.journal import AuditLog, JournalStore
    from card.piv import PivSession, Slot
    from card.renewal import RenewalContext, renew
    from card.secret import Secret

    workdir.mkdir(parents=True)
    ca_dir = workdir / "ca"
    ca = make_ca(ca_dir)
    card = SoftPivCard(make_state(ca, key_type))
    clock = Clock()
    transport = TracingTransport(card, clock, latency)
    settings = settings_for(ca_dir, workdir / "state")
    io: dict[str, list[float]] = {}
    ctx = RenewalContext(settings, TimedIssuer(LocalCA(ca_dir), clock),
                         _TimedJournals(JournalStore(settings.state_dir), "journal", io),  # type: ignore[arg-type]
                         _TimedJournals(AuditLog(settings.state_dir / "audit.log"), "audit", io))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    session = PivSession(transport)
    result = renew(session, ctx, Secret(PIN))
    total = time.perf_counter() - t0
    if not result.ok:
        raise RuntimeError(f"renewal failed: {result.error}")
    slots = [Slot.AUTHENTICATION, Slot.SIGNATURE]
    new_ders = {r.slot: r.new_certificate.public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                                                   fromlist=["Encoding"]).Encoding.DER)
                for r in result.slots}
    traffic = summarize(transport.records)
    traffic["emulator_apdu_count"] = card.apdu_count
    bound = lower_bound(key_type, slots, new_ders)
    remainder = total - clock.card_s - clock.ca_s
    return {
        "key_type": key_type.name,
        "traffic": traffic,
        "lower_bound": bound,
        "ratio_to_lower_bound": round(traffic["apdus"] / bound["total"], 3),
        "wall": {
            "latency_model": latency.as_dict() if latency else None,
            "total_s": round(total, 4), "card_s": round(clock.card_s, 4), "ca_s": round(clock.ca_s, 4),
            "ours_s": round(remainder, 4), "ours_fraction": round(remainder / total, 4),
            "ca_calls": dict(clock.ca_calls),
            "ours_journal_and_audit_io_s": round(sum(sum(v) for v in io.values()), 4),
            "ours_journal_and_audit_io_calls": {k: len(v) for k, v in io.items()},
        },
    }


def run_pcscd(workdir: Path, key_type: Any, port: int = 35963, quickack_fix: bool = False) -> dict[str, Any]:
    """The same renewal with the engine talking PC/SC (pyscard → pcscd → vpcd → the card in a thread)."""
    from card import pcsc
    from card.emulator.card import SoftPivCard
    from card.enrollment.local import LocalCA
    from card.journal import AuditLog, JournalStore
    from card.piv import PivSession
    from card.renewal import RenewalContext, renew
    from card.secret import Secret
    from benchmarks.common import served

    workdir.mkdir(parents=True)
    ca_dir = workdir / "ca"
    ca = make_ca(ca_dir)
    card = SoftPivCard(make_state(ca, key_type))
    counter = CardCounter(card)
    with served(card, port, quickack_fix=quickack_fix) as reader:
        clock = Clock()
        settings = settings_for(ca_dir, workdir / "state")
        ctx = RenewalContext(settings, TimedIssuer(LocalCA(ca_dir), clock), JournalStore(settings.state_dir),
                             AuditLog(settings.state_dir / "audit.log"))
        t0 = time.perf_counter()
        transport = TracingTransport(pcsc.PcscTransport(reader), clock)
        try:
            with transport.transaction():  # as the card service does: no other client in between
                result = renew(PivSession(transport), ctx, Secret(PIN))
        finally:
            transport.close()
        total = time.perf_counter() - t0
    if not result.ok:
        raise RuntimeError(f"renewal through pcscd failed: {result.error}")
    n = len(transport.records)
    remainder = total - clock.card_s - clock.ca_s
    return {
        "key_type": key_type.name, "reader": reader, "quickack_on_header": quickack_fix, "apdus": n, "emulator_apdu_count": card.apdu_count,
        "total_s": round(total, 4), "card_s": round(clock.card_s, 4),
        "card_model_s": round(counter.model_s, 4),
        "transport_s": round(clock.card_s - counter.model_s, 4),
        "transport_ms_per_apdu": round(1000 * (clock.card_s - counter.model_s) / max(n, 1), 2),
        "ca_s": round(clock.ca_s, 4), "ours_s": round(remainder, 4), "ours_fraction": round(remainder / total, 4),
    }
