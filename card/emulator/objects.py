"""The software card's data-object commands: SELECT, GET DATA, PUT DATA (SP 800-73-4 Part 2
§3.1.1, §3.1.2, §3.3.1) and the Yubico GET VERSION / GET SERIAL (piv-protocol.md §3.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from card import tlv
from card.emulator.commands import CardStatus, Response
from card.piv.model import PIV_AID
from card.sw import SW

if TYPE_CHECKING:
    from card.emulator.card import SoftPivCard

CERT_OBJECT_OVERHEAD = 9
"""``70 82 LL LL`` + ``71 01 00`` + ``FE 00``: a certificate of ``max_object_bytes`` fits with its tags."""
OBJECT_READ_NEEDS_PIN = {"5FC103", "5FC108", "5FC109", "5FC121"}


def select(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """SELECT by AID (a prefix of the PIV AID is enough); returns the Application Property Template."""
    if p1 != 0x04 or len(data) < 5 or not PIV_AID.startswith(data[: len(PIV_AID)]):
        raise CardStatus(SW.NOT_FOUND)  # another AID: stay selected, keep state (OpenSC probes)
    card.selected = True
    apt = tlv.tlv(0x4F, PIV_AID[5:]) + tlv.tlv(0x79, tlv.tlv(0x4F, PIV_AID[:5]))
    apt += tlv.tlv(0x50, b"cardrenew SoftPIV")
    algs = b"".join(tlv.tlv(0x80, bytes([a])) for a in card.state.supported_key_types) + tlv.tlv(0x06, b"\x00")
    apt += tlv.tlv(0xAC, algs)
    return tlv.tlv(0x61, apt), SW.OK


def get_version(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """Yubico GET VERSION: the 3-byte firmware version of the profile."""
    assert card.state.yubico_version is not None
    return bytes(card.state.yubico_version), SW.OK


def get_serial(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """Yubico GET SERIAL: the 4-byte serial number."""
    return card.state.serial.to_bytes(4, "big"), SW.OK


def _object_tag(data: bytes) -> str:
    items = tlv.parse(data)
    if not items or items[0][0] != b"\x5c":
        raise CardStatus(SW.INCORRECT_DATA)
    return items[0][1].hex().upper()


def get_data(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """GET DATA ``5C <tag>``: the object inside ``53`` (``7E`` for Discovery); PIN-protected objects
    need the PIN."""
    if (p1, p2) != (0x3F, 0xFF):
        raise CardStatus(SW.INCORRECT_P1_P2)
    tag = _object_tag(data)
    if tag in OBJECT_READ_NEEDS_PIN and not card.pin_verified:
        raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
    value = card.state.objects.get(tag)
    if value is None:
        raise CardStatus(SW.NOT_FOUND)
    wrap = 0x7E if tag == "7E" else 0x53
    return tlv.tlv(wrap, bytes.fromhex(value)), SW.OK


def put_data(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """PUT DATA ``5C <tag> 53 <value>`` (needs the management key); an empty value deletes the
    object; a value over the card's capacity is refused ``6A 84`` (F05)."""
    if (p1, p2) != (0x3F, 0xFF):
        raise CardStatus(SW.INCORRECT_P1_P2)
    if not card.mgmt_authenticated:
        raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
    items = tlv.parse(data)
    if len(items) != 2 or items[0][0] != b"\x5c" or items[1][0] not in (b"\x53", b"\x7e"):
        raise CardStatus(SW.INCORRECT_DATA)
    tag = items[0][1].hex().upper()
    value = items[1][1]
    if len(value) > card.state.max_object_bytes + CERT_OBJECT_OVERHEAD:  # F05: capacity
        raise CardStatus(SW.NOT_ENOUGH_MEMORY)
    if value:
        card.state.objects[tag] = value.hex().upper()
    else:
        card.state.objects.pop(tag, None)
    card.save()
    return b"", SW.OK
