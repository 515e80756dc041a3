"""Card write access for the engine: management-key (9B) authentication and the commands that need
it (GENERATE, PUT DATA; SP 800-73-4 Part 2 §3.2.4 and DESIGN §5)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TypeVar

from card.config import Settings
from card.errors import ApduError
from card.mgmtkey import authenticate_with_configured_key
from card.piv import PivSession
from card.piv.quirks import management_key_algorithm, management_key_forgotten

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CardAdministrator:
    """Authenticates the management key once per card session and re-authenticates only when the
    card says it has forgotten it.

    Args:
        session: the card session of this run.
        settings: where the management key comes from (``management_key`` table).
        guid: the card's GUID (CHUID), for a diversified key; None when the card has no CHUID.
    """

    def __init__(self, session: PivSession, settings: Settings, guid: bytes | None) -> None:
        self.session = session
        self.settings = settings
        self.guid = guid

    def authenticate(self) -> None:
        """Management-key authentication; the card's own answer (``F7`` metadata) beats the configured
        algorithm (F14).

        Raises:
            ManagementKeyError, CardRemovedError, ApduError.
        """
        s = self.settings
        card_alg = management_key_algorithm(s.management_key_algorithm, self.session.get_management_key_algorithm())
        if card_alg is not s.management_key_algorithm:
            s = dataclasses.replace(s, management_key_algorithm=card_alg)
        authenticate_with_configured_key(self.session, s, self.guid, s.management_key_algorithm)

    def run(self, command: Callable[[], T]) -> T:
        """Send a command that needs the management key (GENERATE, PUT DATA). The authentication of
        preflight lasts for the card session, so it is not repeated before each such command; only
        when the card answers ``69 82`` (security status not satisfied: it has forgotten it) is the
        key authenticated once more and the command sent again. A refused command changed nothing
        on the card, so sending it again is safe. A reconnect ends the run (CardRemovedError), and
        the resumed run authenticates in its own preflight."""
        try:
            return command()
        except ApduError as exc:
            if not management_key_forgotten(exc.sw):
                raise
        logger.info("the card asked for the management key again (69 82); authenticating once more")
        self.authenticate()
        return command()
