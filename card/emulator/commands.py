"""What every command handler of the software card shares: the status-word exception, the
command's parts (ISO 7816-4 §5.1: short and extended cases) and the handler signature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from card.sw import SW

if TYPE_CHECKING:
    from card.emulator.card import SoftPivCard

Response = tuple[bytes, int]
"""Response data and SW1SW2."""

class Handler(Protocol):
    """``handler(card, p1, p2, data, le, pin_just_verified)``: one instruction's behaviour. It answers
    with a :data:`Response` or raises :class:`CardStatus`; ``pin_just_verified``: the command right
    before was a successful VERIFY (a PIN-always slot signs only then)."""

    def __call__(self, card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None,
                 pin_just_verified: bool, /) -> Response: ...


class CardStatus(Exception):
    """Raised inside a handler to answer with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def parse_command(apdu: bytes) -> tuple[int, int, int, int, bytes, int | None]:
    """CLA, INS, P1, P2, data and Le (None: absent; 256 / 65536 for a zero Le) of a command APDU.

    Raises:
        CardStatus: ``67 00`` when the length fields do not match the bytes.
    """
    if len(apdu) < 4:
        raise CardStatus(SW.WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:
        return cla, ins, p1, p2, b"", None
    if len(body) == 1:
        return cla, ins, p1, p2, b"", body[0] or 256
    if body[0] == 0 and len(body) >= 3:  # extended length
        lc = int.from_bytes(body[1:3], "big")
        data = body[3 : 3 + lc]
        if len(data) != lc:
            raise CardStatus(SW.WRONG_LENGTH)
        rest = body[3 + lc :]
        le = (int.from_bytes(rest, "big") or 65536) if rest else None
        return cla, ins, p1, p2, data, le
    lc = body[0]
    data = body[1 : 1 + lc]
    if len(data) != lc:
        raise CardStatus(SW.WRONG_LENGTH)
    rest = body[1 + lc :]
    if len(rest) > 1:
        raise CardStatus(SW.WRONG_LENGTH)
    le = (rest[0] or 256) if rest else None
    return cla, ins, p1, p2, data, le
