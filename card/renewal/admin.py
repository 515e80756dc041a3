"""Card write access for the engine: the PIV token's management key from the settings (DESIGN §5).

:class:`~card.token.piv.PivToken` does the card's side (F14: the algorithm from the card's metadata;
one re-authentication when the card answers ``69 82``); this module gives it the configured key
sources (``card.mgmtkey``), which read the configuration the token layer never imports.
"""

from __future__ import annotations

import dataclasses

from card.config import Settings
from card.mgmtkey import authenticate_with_configured_key
from card.piv import ManagementKeyAlgorithm, PivSession
from card.token import Token
from card.token.piv import PivToken, PivWriteAccess


def piv_write_access(settings: Settings) -> PivWriteAccess:
    """The management key sources of ``settings`` (``[management_key]``) and the certificate capacity
    (``card.max_certificate_bytes``) as a PIV token's write access."""

    def authenticate(token: PivToken, algorithm: ManagementKeyAlgorithm) -> object:
        s = settings if algorithm is settings.management_key_algorithm else dataclasses.replace(
            settings, management_key_algorithm=algorithm)
        identity = token.card_identity() if "diversified" in s.sources else None  # read once per run
        return authenticate_with_configured_key(token.session, s, identity.guid if identity else None, algorithm)

    return PivWriteAccess(authenticate, settings.management_key_algorithm, settings.max_certificate_bytes)


def piv_token(session: PivSession, settings: Settings) -> PivToken:
    """The PIV card of ``session`` as a token that can write with the configured management key."""
    return PivToken(session, piv_write_access(settings))


def as_token(card: Token | PivSession, settings: Settings) -> Token:
    """``card`` as the engine's token: a bare :class:`PivSession` (callers before issue 14, the tests)
    becomes :func:`piv_token`; a token is used as it is."""
    return piv_token(card, settings) if isinstance(card, PivSession) else card
