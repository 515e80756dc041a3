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
from typing import TYPE_CHECKING

import platformdirs

from card import atomic
from card.config import Settings
from card.enrollment.local_settings import LocalIssuerSettings
from card.journal import AuditLog, JournalStore
from card.backend import Backend
from card.lazy import LazyIssuer, Once
from card.service import CardService

if TYPE_CHECKING:  # imported where used: they bring cryptography, which the first frame does without
    from card.emulator.card import SoftPivCard
    from card.enrollment.local import LocalCA

DEMO_PIN = "123456"
DEMO_FAULTS = ("none", "pull-card", "ca-refuses")
"""``pull-card``: the card is pulled while the second certificate is written;
``ca-refuses``: the CA refuses the renewal (nothing is changed on the card)."""


def demo_ca_dir() -> Path:
    return Path(platformdirs.user_data_dir("cardrenew")) / "demo-ca"


def demo_state_dir() -> Path:
    """Where the demo's audit log is kept across runs (``cardrenew audit --demo`` reads it): the
    demo's own state directory, never the real one. (Its journals stay with its throw-away card.)"""
    return Path(platformdirs.user_state_dir("cardrenew")) / "demo"


def demo_backend(settings: Settings | None = None, fault: str = "none", state_dir: Path | None = None,
                 expires_in_days: int = 30, now: Callable[[], dt.datetime] | None = None,
                 guid: bytes | None = None, reinsert_after_s: float | None = 15.0) -> tuple[Backend, SoftPivCard]:
    """Build the demo backend: in-process SoftPivCard + embedded CA.

    ``now`` (a clock, aware UTC) and ``guid`` make the card deterministic (snapshots, screenshots).

    Raises:
        ValueError: unknown ``fault``.
    """
    backend, card, ca = _demo(settings, fault, state_dir, expires_in_days, now, guid, reinsert_after_s)
    made = card.get()
    backend.issuer = ca.get()  # the LocalCA itself, as before (tests reach into it)
    return backend, made


DEMO_CARD_NAME = "Virtual card (demo)"


def lazy_demo_backend(settings: Settings | None = None, fault: str = "none") -> Backend:
    """The demo backend of ``cardrenew --demo``: as :func:`demo_backend`, but the embedded CA and the
    virtual card (two RSA-2048 key pairs, certificates) are made on the card thread when the logon
    pane first reads the card, after the first frame; until then the pane says it is looking for
    the card, exactly as with a slow reader.

    Raises:
        ValueError: unknown ``fault``.
    """
    backend, _, _ = _demo(settings, fault, None, 30, None, None, 15.0)
    return backend


def _demo(settings: Settings | None, fault: str, state_dir: Path | None, expires_in_days: int,
          now: Callable[[], dt.datetime] | None, guid: bytes | None,
          reinsert_after_s: float | None) -> tuple[Backend, Once[SoftPivCard], Once[LocalCA]]:
    if fault not in DEMO_FAULTS:
        raise ValueError(f"unknown demo fault {fault!r} (choose from {', '.join(DEMO_FAULTS)})")
    ca_dir = demo_ca_dir()
    workdir = Path(tempfile.mkdtemp(prefix="cardrenew-demo-"))
    atexit.register(shutil.rmtree, workdir, True)  # the demo card's state holds its private keys
    base = settings or Settings()
    settings = dataclasses.replace(base, issuer=LocalIssuerSettings(ca_dir, base.issuer.ca_fingerprint),
                                   management_key_source="default",
                                   state_dir=state_dir or workdir / "state")
    window_days = settings.window_days

    def make_ca() -> LocalCA:
        from card.enrollment.local import LocalCA, init_ca

        if not (ca_dir / "ca.pem").exists():
            atomic.make_directory(ca_dir, 0o700)  # it and the parents we create: ours alone
            init_ca(ca_dir, "cardrenew Demo CA")
        refuse = ("the Registration Authority has suspended renewals for this card (demo fault)"
                  if fault == "ca-refuses" else None)
        if now is None:
            return LocalCA(ca_dir, window_days, refuse_reason=refuse)
        return LocalCA(ca_dir, window_days, refuse_reason=refuse, now=now)

    ca: Once[LocalCA] = Once(make_ca)

    def make_card() -> SoftPivCard:
        from card.emulator.card import CardFaults, SoftPivCard
        from card.emulator.create import create_card_state

        # pull-card: the card is pulled while the 2nd certificate is written, and "the holder puts it
        # back" 15 s later (time to read *completed with errors*), so the demo can show the resume.
        faults = CardFaults(drop_at_put_data=2, reinsert_after_s=reinsert_after_s) if fault == "pull-card" else CardFaults()
        state = create_card_state(ca.get(), expires_in_days=expires_in_days, pin=DEMO_PIN, now=now() if now else None,
                                  guid=guid)
        card = SoftPivCard(state, workdir / "card.json", faults, name=DEMO_CARD_NAME)
        state.save(workdir / "card.json")
        return card

    card: Once[SoftPivCard] = Once(make_card)
    audit = AuditLog((state_dir or demo_state_dir()) / "audit.log")  # demo runs are audited too (issue 11)
    backend = Backend(settings, in_process_service(card), LazyIssuer(ca),  # type: ignore[arg-type]  # Once[LocalCA] is a Once[Issuer] (read-only use)
                      JournalStore(settings.state_dir, audit), audit,
                      DEMO_CARD_NAME, demo=True, demo_pin=DEMO_PIN)
    return backend, card, ca


def in_process_service(card: Once[SoftPivCard]) -> CardService:
    """The card service on an in-process virtual card that is made (or loaded) on first use, on the
    card thread or the presence watcher, whichever asks first; both are started after the first frame."""
    return CardService(card.get, lambda: card.get().presence())
