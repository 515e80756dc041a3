"""A small driver of :class:`card.renewal.beside.BesideSteps` for the side-by-side tests: one run
renews every due certificate of the token (or resumes the token's journal), as the engine does
around the per-key steps — without the engine's PIV preflight, so that the per-key order and its
resume are tested on their own on a real SoftHSM2 token."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.certificates import fingerprint
from card.config import Settings
from card.config_token import TokenSettings
from card.enrollment.local import LocalCA
from card.errors import CardError
from card.journal import AuditLog, Journal, JournalStep, JournalStore, SlotJournal
from card.renewal.beside import BesideSteps
from card.renewal.beside_resume import is_leftover_label
from card.renewal.context import RenewalContext
from card.renewal.records import RunRecords
from card.renewal.results import EndedBeforeChange, SlotChangedError
from card.pkcs11.token import Pkcs11Token
from card.secret import Secret
from card.token import KeyRef

PEM = serialization.Encoding.PEM


@dataclass
class RunOutcome:
    renewed: dict[str, x509.Certificate] = field(default_factory=dict)
    ended: dict[str, CardError] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    error: BaseException | None = None


def context(state: Path, ca_dir: Path, old_keys: str = "delete", **ca_options: object) -> RenewalContext:
    settings = Settings(state_dir=state, token=TokenSettings("pkcs11", old_keys=old_keys))  # type: ignore[arg-type]
    audit = AuditLog(state / "audit.log")
    return RenewalContext(settings, LocalCA(ca_dir, **ca_options), JournalStore(state, audit, fallback=None), audit,  # type: ignore[arg-type]
                          issuer_retry_delays_s=())


def open_token(module: Path, label: str, pin: str) -> Pkcs11Token:
    """The product's PKCS#11 token (card.pkcs11), started and logged in with the user PIN."""
    token = Pkcs11Token(module, label)
    token.start()
    token.log_in(Secret(pin))
    return token


def run_on(module: Path, label: str, pin: str, ctx: RenewalContext, card_id: str) -> RunOutcome:
    """:func:`run` on a token opened for it and closed after it (PKCS#11 login state is per process)."""
    token = open_token(module, label, pin)
    try:
        return run(token, ctx, card_id)
    finally:
        token.close()


def due_keys(token, window_days: int = 90) -> list[tuple[KeyRef, x509.Certificate]]:  # noqa: ANN001
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for held in token.certificates():
        cert = held.certificate
        if cert is None or not held.has_private_key or is_leftover_label(held.ref.label):
            continue
        if cert.not_valid_after_utc - now <= dt.timedelta(days=window_days):
            out.append((held.ref, cert))
    return out


def run(token, ctx: RenewalContext, card_id: str) -> RunOutcome:  # noqa: ANN001
    """One run: resume the journal of ``card_id`` or start one for the due keys; per key the
    side-by-side steps; the journal removed when every key is final."""
    outcome = RunOutcome()
    journal = ctx.journals.load(card_id)
    if journal is None:
        journal = Journal(card_id, interface="pkcs11")
        for ref, cert in due_keys(token):
            journal.slots[ref.hex] = SlotJournal(ref.hex, fingerprint(cert), cert.public_bytes(PEM).decode(),
                                                 label=ref.label)
        if not journal.slots:
            return outcome
        ctx.journals.save(journal)
    steps = BesideSteps(token, ctx, RunRecords(ctx))
    for name, sj in list(journal.slots.items()):
        if sj.step in (JournalStep.DONE, JournalStep.ENDED):
            continue
        ref = KeyRef(bytes.fromhex(name), sj.label or "")
        try:
            outcome.renewed[name] = steps.renew_key(ref, sj, journal)
        except EndedBeforeChange as ended:
            sj.step, sj.error = JournalStep.ENDED, str(ended.error)
            ctx.journals.save(journal)
            outcome.ended[name] = ended.error
        except SlotChangedError:
            sj.step = JournalStep.ENDED
            ctx.journals.save(journal)
            outcome.changed.append(name)
        except BaseException as exc:  # the journal keeps the key resumable
            outcome.error = exc
            return outcome
    RunRecords(ctx).flush(journal)
    ctx.journals.clear(card_id)
    return outcome


@dataclass
class EngineOutcome:
    result: object | None = None  # card.renewal.RenewalResult
    error: BaseException | None = None


def engine_context(state: Path, ca_dir: Path, module: Path, label: str, old_keys: str = "delete",
                   **ca_options: object) -> RenewalContext:
    """The engine's context for a PKCS#11 token (``[card] interface = "pkcs11"``) and the embedded CA."""
    token = TokenSettings("pkcs11", module=module, token_label=label, old_keys=old_keys)  # type: ignore[arg-type]
    settings = Settings(state_dir=state, token=token)
    audit = AuditLog(state / "audit.log")
    return RenewalContext(settings, LocalCA(ca_dir, **ca_options), JournalStore(state, audit, fallback=None), audit,  # type: ignore[arg-type]
                          issuer_retry_delays_s=())


def engine_run(ctx: RenewalContext, pin: str) -> EngineOutcome:
    """One run of the real engine (``card.renewal.renew``) on the token of ``ctx.settings.token``,
    opened for it and closed after it; what it returned or raised."""
    from card.renewal import renew

    settings = ctx.settings.token
    assert settings.module is not None
    token = Pkcs11Token(settings.module, settings.token_label)
    try:
        return EngineOutcome(result=renew(token, ctx, Secret(pin)))
    except Exception as exc:  # noqa: BLE001 - the test looks at what the user would be told
        return EngineOutcome(error=exc)
    finally:
        token.close()
