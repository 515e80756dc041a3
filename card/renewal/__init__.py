"""The renewal engine (DESIGN §3) as a package; this module is its public face.

Importers use ``from card.renewal import …`` for the names below; the modules inside the package
are the engine's own business and may move.
"""

from card.renewal.engine import (
    CardExpiredError,
    CardSummary,
    CertificateMismatchError,
    IssuerError,
    NullReporter,
    RenewalContext,
    RenewalRefused,
    RenewalReporter,
    RenewalResult,
    RenewalStep,
    SlotChangedError,
    SlotResult,
    SlotState,
    SlotStatus,
    UpdateCheck,
    card_expiry_status,
    card_expiry_words,
    card_id_for,
    journal_slot_matches,
    read_card,
    renew,
    update_check,
)

__all__ = [
    "CardExpiredError",
    "CardSummary",
    "CertificateMismatchError",
    "IssuerError",
    "NullReporter",
    "RenewalContext",
    "RenewalRefused",
    "RenewalReporter",
    "RenewalResult",
    "RenewalStep",
    "SlotChangedError",
    "SlotResult",
    "SlotState",
    "SlotStatus",
    "UpdateCheck",
    "card_expiry_status",
    "card_expiry_words",
    "card_id_for",
    "journal_slot_matches",
    "read_card",
    "renew",
    "update_check",
]
