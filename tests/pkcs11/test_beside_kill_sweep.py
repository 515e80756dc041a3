"""The kill sweep of issue 14 (Done-when): a side-by-side renewal process on SoftHSM2 is killed with
SIGKILL at every PKCS#11 call that changes the token — before the call reaches the token and right
after it did it — by faultshim.c, a forwarding PKCS#11 module (no test hook in the product; the
kill lands at an exact call). After each kill the real pkcs11-tool shows, for every certificate
label, a working key with its matching certificate (old or new) and no certificate without its key;
the next run finishes and leaves each label on a working renewed pair and nothing "(renewing)".

The process is the real ``cardrenew renew --pin-stdin --yes`` with ``[card] interface = "pkcs11"`` and
``module`` = the shim (which forwards to SoftHSM2): the engine, card.pkcs11, the journal and the audit
log on disk, as a user runs it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from card.enrollment.local import LocalCA
from tests.pkcs11 import judge
from tests.pkcs11.beside_faults import KILLS, build_shim, shim_env
from tests.pkcs11.softhsm import DEFAULT_KEYS, KeySpec, SoftHsm, clone_softhsm, make_softhsm

P256_KEYS = (KeySpec(b"\x01", "Authentication certificate", "ECCP256", "9A"),
             KeySpec(b"\x02", "Signature certificate", "ECCP256", "9C"))


CARDRENEW = Path(sys.executable).with_name("cardrenew")


def child(hsm: SoftHsm, shim: Path, state: Path, ca_dir: Path, old_keys: str = "delete",
          log: Path | None = None, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``cardrenew renew`` on the token through the shim (``[card] module``), the PIN on stdin."""
    state.mkdir(parents=True, exist_ok=True)
    config = state / "config.toml"
    config.write_text(f'[issuer]\ntype = "local"\ndirectory = "{ca_dir}"\n\n[card]\ninterface = "pkcs11"\n'
                      f'module = "{shim}"\ntoken_label = "{hsm.label}"\nold_keys = "{old_keys}"\n', encoding="utf-8")
    env = {**hsm.env(), **shim_env(log, fault), "XDG_STATE_HOME": str(state / "xdg-state"),
           "XDG_DATA_HOME": str(state / "xdg-data"), "XDG_CONFIG_HOME": str(state / "xdg-config")}
    return subprocess.run([str(CARDRENEW), "renew", "--config", str(config), "--pin-stdin", "--yes"], input=hsm.pin + "\n",
                          env=env, capture_output=True, text=True, timeout=120)


def assert_every_label_works(hsm: SoftHsm, labels: set[str], *, finished: bool) -> None:
    pairs = judge.working_pairs(hsm)
    assert not judge.certificates_without_key(hsm), "a certificate without its key"
    for label in labels:
        held = [lab for lab, _ in pairs.values() if lab == label or lab.startswith(label + " (")]
        assert held, f"{label}: no working key with its certificate"
        if finished:
            assert label in held
    if finished:
        assert not [o for o in judge.objects(hsm) if o.label.endswith("(renewing)")]


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"))


def sweep(template: SoftHsm, shim: Path, ca_dir: Path, tmp_path: Path, points: list[tuple[str, int]] | None,
          old_keys: str = "delete") -> list[str]:
    """Count the token-changing calls of a clean run, then kill at each point; returns the calls."""
    labels = {c.label for c in template.certificates}
    counted = clone_softhsm(template, tmp_path / "count")
    log = tmp_path / "calls.log"
    done = child(counted, shim, tmp_path / "count-state", ca_dir, old_keys, log=log)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text().split()
    assert_every_label_works(counted, labels, finished=True)
    for mode, n in points or [(m, n) for m in KILLS for n in range(1, len(calls) + 1)]:
        where = tmp_path / f"{mode}-{n}"
        hsm = clone_softhsm(template, where / "hsm")
        killed = child(hsm, shim, where / "state", ca_dir, old_keys, fault=f"{mode}:{n}")
        assert killed.returncode == -signal.SIGKILL, f"{mode} {n} ({calls[n - 1]}): not killed: {killed.stdout}{killed.stderr}"
        assert_every_label_works(hsm, labels, finished=False)
        again = child(hsm, shim, where / "state", ca_dir, old_keys)
        assert again.returncode == 0, f"{mode} {n} ({calls[n - 1]}): the next run did not finish: {again.stdout}{again.stderr}"
        assert_every_label_works(hsm, labels, finished=True)
        assert not list((where / "state").rglob("journal-*.json")), "a finished run leaves no journal"
    return calls


@pytest.mark.sweep
def test_kill_at_every_token_changing_call_p256(tmp_path: Path, ca_dir: Path, shim: Path) -> None:
    template = make_softhsm(tmp_path / "template", LocalCA(ca_dir), P256_KEYS)
    calls = sweep(template, shim, ca_dir, tmp_path, None)
    assert calls.count("C_GenerateKeyPair") == 2 and calls.count("C_CreateObject") == 2
    print(f"token-changing PKCS#11 calls per renewal of two keys: {len(calls)} ({' '.join(calls)})", file=sys.stderr)


@pytest.mark.sweep
def test_kill_at_a_few_calls_rsa_and_keep_mode(tmp_path: Path, ca_dir: Path, shim: Path) -> None:
    template = make_softhsm(tmp_path / "template", LocalCA(ca_dir), DEFAULT_KEYS)
    sweep(template, shim, ca_dir, tmp_path, [("kill-before", 1), ("kill-after", 1), ("kill-after", 4),
                                            ("kill-before", 9), ("kill-after", 12)], old_keys="keep")

