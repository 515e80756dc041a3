"""``python -m benchmarks --out report.json``: run every section, write the JSON report, print a table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import LatencyModel, private_xdg

TARGETS = {"apdu_ratio": 1.25, "overhead_fraction": 0.05, "startup_ratio": 1.5, "two_reader_speedup": 1.8,
           "four_reader_speedup": 3.6,
           "runtime_s": 300}


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def _ensure_pcscd() -> dict[str, Any]:
    if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode == 0:
        return {"started_by_benchmark": False}
    log = open("/tmp/bench-pcscd.log", "w")
    script = Path(__file__).resolve().parent.parent / "scripts" / "vpcd-readers.sh"  # four vpcd readers
    conf = subprocess.run([str(script), "/tmp/bench-readers"], check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen(["pcscd", "--foreground", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.5)
    return {"started_by_benchmark": True, "pid": proc.pid}


def _section(report: dict[str, Any], name: str, fn: Any, *args: Any) -> Any:
    t0 = time.perf_counter()
    print(f"[bench] {name} …", file=sys.stderr, flush=True)
    try:
        value = fn(*args)
    except Exception as exc:  # noqa: BLE001 - a failed section is reported, the others still run
        value = {"error": f"{type(exc).__name__}: {exc}"}
    report.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 2)
    report[name] = value
    return value


def _miss(value: float | None, target: float, higher_is_better: bool, why: str) -> dict[str, Any]:
    if value is None:
        return {"met": None, "target": target, "why": why}
    met = value >= target if higher_is_better else value <= target
    out: dict[str, Any] = {"met": met, "target": target, "value": value}
    if not met:
        out["missed_by"] = round(abs(value - target), 4)
        out["missed_by_percent"] = round(100 * abs(value - target) / target, 1)
        out["why"] = why
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--out", default="report.json", type=Path)
    parser.add_argument("--reader-wait", type=float, default=60.0,
                        help="seconds to wait for a virtual reader another engineer is using (default 60)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out_path = args.out.resolve()
    base = private_xdg()

    from card.piv import KeyType

    from benchmarks import peers, pkcs11, queue, renewal, scale, terminal_bytes, tui_bench

    latency = LatencyModel()
    report: dict[str, Any] = {"machine": _machine(), "pcscd": _ensure_pcscd(), "latency_model": latency.as_dict()}
    rsa = _section(report, "traffic_rsa2048", renewal.run_inprocess, base / "t-rsa", KeyType.RSA2048, None)
    _section(report, "traffic_eccp256", renewal.run_inprocess, base / "t-ec", KeyType.ECCP256, None)
    lat_rsa = _section(report, "wall_latency_rsa2048", renewal.run_inprocess, base / "w-rsa", KeyType.RSA2048, latency)
    _section(report, "wall_latency_eccp256", renewal.run_inprocess, base / "w-ec", KeyType.ECCP256, latency)
    _section(report, "pkcs11_softhsm_rsa2048_p256", pkcs11.run_softhsm, base / "k-mixed", ("RSA2048", "ECCP256"))
    _section(report, "pkcs11_softhsm_p256", pkcs11.run_softhsm, base / "k-ec", ("ECCP256", "ECCP256"))
    _section(report, "wall_pcscd_vpcd", renewal.run_pcscd, base / "p1", KeyType.RSA2048, 35963, False)
    _section(report, "wall_pcscd_vpcd_quickack_on_header", renewal.run_pcscd, base / "p2", KeyType.RSA2048, 35963, True)
    y = _section(report, "peer_yubico_piv_tool", peers.yubico, base / "py")
    o = _section(report, "peer_opensc_piv_tool", peers.opensc, base / "po")
    tui = _section(report, "tui", tui_bench.run, base / "tui")
    _section(report, "terminal_bytes", terminal_bytes.run, base / "tb")  # issue 15: slow links; idle target 0
    _section(report, "status_view", scale.status_view, base / "st", latency)
    sc = _section(report, "readers", scale.readers, base / "sc", latency, args.reader_wait)
    four = _section(report, "four_readers", queue.four_readers, base / "q4", latency, args.reader_wait)
    four_speed = (four.get("queue") or {}).get("speedup")

    apdus = rsa.get("traffic", {}).get("apdus")
    bound = rsa.get("lower_bound", {}).get("total")
    overhead = lat_rsa.get("wall", {}).get("ours_fraction")
    startup = tui.get("startup_ratio_vs_bare_textual")
    speed = sc.get("latency_model", {}).get("speedup") if isinstance(sc.get("latency_model"), dict) else None
    report.update({
        "apdus": apdus,
        "apdu_lower_bound": bound,
        "apdu_ratio": round(apdus / bound, 3) if apdus and bound else None,
        "overhead_fraction": overhead,
        "startup_ratio_vs_bare_textual": startup,
        "two_reader_speedup": speed,
        "two_reader_speedup_no_latency": sc.get("no_latency", {}).get("speedup") if isinstance(sc.get("no_latency"), dict) else None,
        "four_reader_speedup": four_speed,
        "four_reader_speedup_cli_processes": (four.get("cli_processes") or {}).get("speedup"),
        "peers": {"cardrenew": apdus, "yubico-piv-tool": y.get("apdus"), "opensc-piv-tool": o.get("apdus")},
    })
    vpcd_ms = report.get("wall_pcscd_vpcd", {}).get("transport_ms_per_apdu")
    report["targets"] = {
        "apdus_le_1.25x_lower_bound": _miss(report["apdu_ratio"], TARGETS["apdu_ratio"], False,
            "above the bound: reading the CHUID and the two old certificates at preflight (GET DATA with their "
            "GET RESPONSEs, 7-9 APDUs: the GUID keys the journal, the old certificates are what the CA "
            "authorises) and the F7 probe of the management-key algorithm (F14, 1); the bound leaves them out "
            "on purpose (see lower_bound's docstring)"),
        "overhead_le_5pct": _miss(overhead, TARGETS["overhead_fraction"], False,
            "journal saves (fsync'd atomic writes) and certificate checks between card steps"),
        "startup_le_1.5x_bare": _miss(startup, TARGETS["startup_ratio"], False,
            "the logon pane itself: importing tui.app and the widgets it composes (Select, Button, Static), "
            "card.config, and Textual applying app.tcss to more widgets than the bare app's four; the card, "
            "the CA and the engine are made and imported after the first frame (startup_to_logon_card_read_s)"),
        "two_readers_ge_1.8x": _miss(speed, TARGETS["two_reader_speedup"], True,
            sc.get("latency_model", {}).get("error") or sc.get("error") or
            "concurrency limited by the 2 cores (two CLI processes, pcscd and the emulators in one interpreter) "
            f"and by vpcd's ~{vpcd_ms} ms per APDU"),
        "four_readers_ge_3.6x": _miss(four_speed, TARGETS["four_reader_speedup"], True,
            four.get("error") or "the card workers share 2 cores with pcscd and the four served cards"),
    }
    runtime = round(time.perf_counter() - started, 1)
    report["runtime_s"] = runtime
    report["targets"]["runtime_le_300s"] = _miss(runtime, TARGETS["runtime_s"], False, "see section_seconds")
    out_path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    print(table(report))
    print(f"\nreport: {out_path}")
    return 0


def table(r: dict[str, Any]) -> str:
    def g(*path: str) -> Any:
        cur: Any = r
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return cur

    def f(v: Any, fmt: str = "{}") -> str:
        return "n/a" if v is None else fmt.format(v)

    def ok(key: str) -> str:
        met = g("targets", key, "met")
        return {True: "met", False: "MISSED", None: "n/a"}[met]

    rows = [
        ("APDUs per renewal, RSA-2048 (2 slots)", f"{f(r['apdus'])} (lower bound {f(r['apdu_lower_bound'])}, "
                                                  f"ratio {f(r['apdu_ratio'])})", "≤ 1.25×", ok("apdus_le_1.25x_lower_bound")),
        ("APDUs per renewal, P-256 (2 slots)", f"{f(g('traffic_eccp256', 'traffic', 'apdus'))} (lower bound "
                                              f"{f(g('traffic_eccp256', 'lower_bound', 'total'))})", "", ""),
        ("PKCS#11 calls per renewal, SoftHSM2 RSA-2048 + P-256 / 2× P-256 (side by side, 2 keys)",
            f"{f(g('pkcs11_softhsm_rsa2048_p256', 'pkcs11_calls_renewal'))} / "
            f"{f(g('pkcs11_softhsm_p256', 'pkcs11_calls_renewal'))} (reading the token: "
            f"{f(g('pkcs11_softhsm_p256', 'pkcs11_calls_read'))})", "", ""),
        ("Bytes out / in, RSA-2048", f"{f(g('traffic_rsa2048', 'traffic', 'bytes_out'))} / "
                                     f"{f(g('traffic_rsa2048', 'traffic', 'bytes_in'))}", "", ""),
        ("Wall, latency model, RSA (card/CA/ours s)", f"{f(g('wall_latency_rsa2048', 'wall', 'total_s'))} "
            f"({f(g('wall_latency_rsa2048', 'wall', 'card_s'))}/{f(g('wall_latency_rsa2048', 'wall', 'ca_s'))}/"
            f"{f(g('wall_latency_rsa2048', 'wall', 'ours_s'))})", "", ""),
        ("Our overhead, latency model RSA / P-256", f"{f(r['overhead_fraction'], '{:.2%}')} / "
            f"{f(g('wall_latency_eccp256', 'wall', 'ours_fraction'), '{:.2%}')}", "≤ 5 %", ok("overhead_le_5pct")),
        ("Wall via pcscd+vpcd, RSA (ms/APDU transport)", f"{f(g('wall_pcscd_vpcd', 'total_s'))} s "
            f"({f(g('wall_pcscd_vpcd', 'transport_ms_per_apdu'))} ms; QUICKACK on header: "
            f"{f(g('wall_pcscd_vpcd_quickack_on_header', 'total_s'))} s, "
            f"{f(g('wall_pcscd_vpcd_quickack_on_header', 'transport_ms_per_apdu'))} ms)", "", ""),
        ("Peers: APDUs cardrenew / yubico-piv-tool / piv-tool", f"{f(g('peers', 'cardrenew'))} / "
            f"{f(g('peers', 'yubico-piv-tool'))} / {f(g('peers', 'opensc-piv-tool'))}", "", ""),
        ("TUI start to logon / bare Textual (s)", f"{f(g('tui', 'startup_to_logon_s'))} / "
            f"{f(g('tui', 'bare_textual_startup_s'))} = {f(r['startup_ratio_vs_bare_textual'])}×", "≤ 1.5×",
            ok("startup_le_1.5x_bare")),
        ("TUI start to the card shown on the logon pane (s)", f(g("tui", "startup_to_logon_card_read_s")), "", ""),
        ("First frame of Write Certificates (s)", f(g("tui", "first_frame_write_certificates_s")), "", ""),
        ("Peak RSS of the TUI during a renewal (MiB)",
            f((g("tui", "peak_rss_kib") or 0) / 1024 if g("tui", "peak_rss_kib") else None, "{:.1f}"), "", ""),
        ("Two readers vs one, latency model / none", f"{f(r['two_reader_speedup'])}× / "
            f"{f(r['two_reader_speedup_no_latency'])}×", "≥ 1.8×", ok("two_readers_ge_1.8x")),
        ("Four readers vs one, latency model: queue / 4 processes", f"{f(r.get('four_reader_speedup'))}× / "
            f"{f(r.get('four_reader_speedup_cli_processes'))}×", "≥ 3.6×", ok("four_readers_ge_3.6x")),
        ("Status view 2 / 4 / 24 slots (APDUs)", f"{f(g('status_view', '2', 'apdus'))} / "
            f"{f(g('status_view', '4', 'apdus'))} / {f(g('status_view', '24', 'apdus'))} (24: projected)", "", ""),
        ("Status view 2 / 4 / 24 slots (s, latency model)", f"{f(g('status_view', '2', 'seconds'))} / "
            f"{f(g('status_view', '4', 'seconds'))} / {f(g('status_view', '24', 'seconds'))}", "", ""),
        ("Benchmark run time (s)", f(r.get("runtime_s")), "< 300", ok("runtime_le_300s")),
    ]
    w0 = max(len(a) for a, *_ in rows)
    w1 = max(len(b) for _, b, *_ in rows)
    lines = [f"| {'measure'.ljust(w0)} | {'value'.ljust(w1)} | target | result |",
             f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|--------|--------|"]
    lines += [f"| {a.ljust(w0)} | {b.ljust(w1)} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
