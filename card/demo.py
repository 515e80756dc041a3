"""The ``--demo`` environment: a fresh virtual card each run (certificates due in 30 days),
issued by an embedded CA kept under the XDG data directory, PIN ``123456``."""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path

import platformdirs

from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.journal import AuditLog, JournalStore
from card.service import Backend, CardService

DEMO_PIN = "123456"
DEMO_FAULTS = ("none", "pull-card", "ca-refuses")
"""``pull-card``: the card is pulled while the second certificate is written;
``ca-refuses``: the CA refuses the renewal (nothing is changed on the card)."""


def demo_ca_dir() -> Path:
    return Path(platformdirs.user_data_dir("cardrenew")) / "demo-ca"


def demo_backend(settings: Settings | None = None, fault: str = "none", state_dir: Path | None = None,
                 expires_in_days: int = 30, now: Callable[[], dt.datetime] | None = None,
                 guid: bytes | None = None, reinsert_after_s: float | None = 15.0) -> tuple[Backend, SoftPivCard]:
    """Build the demo backend: in-process SoftPivCard + embedded CA.

    ``now`` (a clock, aware UTC) and ``guid`` make the card deterministic (snapshots, screenshots).

    Raises:
        ValueError: unknown ``fault``.
    """
    if fault not in DEMO_FAULTS:
        raise ValueError(f"unknown demo fault {fault!r} (choose from {', '.join(DEMO_FAULTS)})")
    ca_dir = demo_ca_dir()
    if not (ca_dir / "ca.pem").exists():
        init_ca(ca_dir, "cardrenew Demo CA")
    workdir = Path(tempfile.mkdtemp(prefix="cardrenew-demo-"))
    atexit.register(shutil.rmtree, workdir, True)  # the demo card's state holds its private keys
    base = settings or Settings()
    settings = dataclasses.replace(base, issuer_type="local", issuer_directory=ca_dir, management_key_source="default",
                                   state_dir=state_dir or workdir / "state")
    ca = LocalCA(ca_dir, settings.window_days, refuse_reason=(
        "the Registration Authority has suspended renewals for this card (demo fault)" if fault == "ca-refuses" else None),
        **({"now": now} if now else {}))
    # pull-card: the card is pulled while the 2nd certificate is written, and "the holder puts it
    # back" 15 s later (time to read *completed with errors*), so the demo can show the resume.
    faults = CardFaults(drop_at_put_data=2, reinsert_after_s=reinsert_after_s) if fault == "pull-card" else CardFaults()
    state = create_card_state(ca, expires_in_days=expires_in_days, pin=DEMO_PIN, now=now() if now else None, guid=guid)
    card = SoftPivCard(state, workdir / "card.json", faults, name="Virtual card (demo)")
    state.save(workdir / "card.json")
    service = CardService(lambda: card, card.presence)
    backend = Backend(settings, service, ca, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"),
                      card.name, demo=True, demo_pin=DEMO_PIN)
    return backend, card
