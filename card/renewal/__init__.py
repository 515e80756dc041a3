"""The renewal engine (DESIGN §3) as a package; this module is its public face.

Importers use ``from card.renewal import …`` for the names below; the modules inside the package
are the engine's own business and may move. Where each part lives:

- ``model``: the read model the Card tab and ``status`` show (CardSummary, SlotStatus, UpdateCheck);
- ``reading``: ``read_card`` (no PIN) and the match of an unfinished journal to the card;
- ``results``: progress steps, per-slot and run outcomes, the refusals the engine raises;
- ``context``: ``RenewalContext`` and the one way the engine calls the issuer (``ask_ca``);
- ``engine``: ``renew`` and the run's order; ``preflight`` (nothing destructive), ``authorise``
  (grants while the old keys exist), ``steps`` (one slot), ``resume`` (the resume decision),
  ``plan`` (the typed ``SlotPlan``), ``signer`` (the token's keys: key types, test signatures),
  ``keys`` (journal names and slots → ``KeyRef``), ``admin`` (the PIV token's management key from
  the settings: ``piv_token``) and ``records`` (journal and audit writes). The engine works on a
  ``card.token.Token``; a bare ``PivSession`` is taken as ``piv_token(session, settings)``.
"""

from card.issued_checks import CertificateMismatchError
from card.enrollment.base import IssuerError
from card.renewal.admin import as_token, piv_token
from card.renewal.context import RenewalContext
from card.renewal.engine import renew
from card.renewal.model import (CardSummary, SlotState, SlotStatus, UpdateCheck, card_expiry_status, card_expiry_words,
                                slot_condition, update_check)
from card.renewal.reading import card_id_for, journal_slot_matches, read_card
from card.renewal.results import (CardExpiredError, NullReporter, ProgressKey, RenewalRefused, RenewalReporter,
                                  RenewalResult, RenewalStep, SlotChangedError, SlotKeyMismatchError, SlotResult, key_name)

__all__ = [
    "CardExpiredError",
    "CardSummary",
    "CertificateMismatchError",
    "IssuerError",
    "NullReporter",
    "ProgressKey",
    "RenewalContext",
    "RenewalRefused",
    "RenewalReporter",
    "RenewalResult",
    "RenewalStep",
    "SlotChangedError",
    "SlotKeyMismatchError",
    "SlotResult",
    "SlotState",
    "SlotStatus",
    "slot_condition",
    "UpdateCheck",
    "as_token",
    "card_expiry_status",
    "card_expiry_words",
    "card_id_for",
    "journal_slot_matches",
    "key_name",
    "piv_token",
    "read_card",
    "renew",
    "update_check",
]
