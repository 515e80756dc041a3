"""Card behaviours we work around, in one place.

Each function here serves one behaviour of real cards that the spec alone does not predict; its
docstring starts with the field report (``shared/cases/field-reports.md``), the cards that behave so,
and what we do. :mod:`card.piv.session` and the renewal engine call these instead of testing status
words themselves, so a new card's oddity is one function here and one call site.

Field reports handled elsewhere, because they are the layer's own job rather than a card's oddity:
F01/F02/F03/F15 certificate objects (:func:`card.certificates.decode_certificate_object`: CertInfo
``01`` or ``80``, gzip sniffed, one bad slot never stops the others), F04/F06 ``61 XX`` chains
(:meth:`card.apdu.ApduProtocol.send`), F05 the size check before writing
(:func:`card.certificates.fit_certificate_object`), F07 PIN length
(:func:`card.piv.encoding.check_pin_format`), F11 DER signatures kept as is (:mod:`card.csr`), F12 key
and certificate compared before writing (:func:`card.certificates.key_matches`), F17–F21 PC/SC
(:mod:`card.pcsc`), F22 presence watching (:mod:`card.service`).

Adding a quirk: a function here (report, cards, what we do), its call site, and a test in
``tests/card/test_field_reports.py`` (or the emulator profile that reproduces it).
"""

from __future__ import annotations

from card import tlv
from card.errors import BadResponseError
from card.piv.model import KeyType, ManagementKeyAlgorithm, Slot
from card.sw import SW

_ALGORITHM_REFUSED = frozenset({SW.INCORRECT_DATA, SW.INCORRECT_P1_P2})


def retries_from_sw(sw: int) -> int | None:
    """PIN/PUK tries left in a VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER answer.

    Cards: the standard ``63 CX`` (SP 800-73-4 Part 2 §3.2.1); an old YubiKey NEO answers ``63 0X``;
    ``63 00`` without a count is taken as none left. Returns None for any other status word.
    """
    if sw & 0xFFF0 == SW.VERIFY_FAILED_TRIES:
        return sw & 0x0F
    if sw & 0xFFF0 == SW.VERIFY_FAILED and sw != SW.VERIFY_FAILED:
        return sw & 0x0F
    if sw == SW.VERIFY_FAILED:
        return 0
    return None


def management_key_algorithm_from_metadata(metadata: bytes) -> ManagementKeyAlgorithm:
    """F14 — YubiKey 5.7 ships the default management key as AES-192, older ones as 3DES: the
    ``9B`` key's algorithm is read from GET METADATA tag ``01`` (piv-protocol.md §3.2); firmware
    whose metadata has no tag ``01`` has a 3DES key.

    Raises:
        BadResponseError: malformed TLV, a tag ``01`` that is not 1 byte, or an unknown algorithm.
    """
    alg = tlv.parse_dict(metadata).get(b"\x01")
    if alg is None:
        return ManagementKeyAlgorithm.TDES
    if len(alg) != 1:
        raise BadResponseError("management key metadata: algorithm (tag 01) must be 1 byte")
    try:
        return ManagementKeyAlgorithm(alg[0])
    except ValueError:
        raise BadResponseError(f"management key metadata: unknown algorithm {alg[0]:02X}") from None


def management_key_algorithm_refused(sw: int) -> bool:
    """F14 — a card whose ``9B`` key is another algorithm than the P1 we sent (YubiKey 5.7 AES-192
    against a 3DES request) answers the first GENERAL AUTHENTICATE with ``6A 80`` or ``6A 86``:
    we say the key is of another algorithm, not that it is wrong."""
    return sw in _ALGORITHM_REFUSED


def generate_algorithm_refused(sw: int) -> bool:
    """F13 — a card that cannot generate the asked algorithm (a Gemalto PIV card and RSA-2048,
    YubiKey < 5.7 and RSA-3072/4096) answers GENERATE with ``6A 80`` or ``6A 86``: nothing was
    destroyed, and we say the card cannot make this key type."""
    return sw in _ALGORITHM_REFUSED


def private_key_needs_pin(sw: int) -> bool:
    """F10 — a private-key GENERAL AUTHENTICATE without the PIN verified (or, on a PIN-always slot,
    not verified immediately before) is answered ``69 82``: we say "PIN not verified" with the slot
    instead of a bare status word."""
    return sw == SW.SECURITY_STATUS_NOT_SATISFIED


def pin_always(slot: Slot) -> bool:
    """F08 — slot ``9C`` is "PIN always" (piv-protocol.md §3.4; YubiKey's default, PivApplet and our
    emulator enforce it): the card signs only when the command right before was the VERIFY.
    The engine sends VERIFY immediately before every private-key operation with such a slot."""
    return slot == Slot.SIGNATURE


def management_key_forgotten(sw: int) -> bool:
    """A card that has dropped the management-key authentication within the card session answers
    GENERATE or PUT DATA with ``69 82``: the refused command changed nothing, so the engine
    authenticates once more and sends it again (once)."""
    return sw == SW.SECURITY_STATUS_NOT_SATISFIED


def certificate_too_large(sw: int) -> bool:
    """F05 — a card whose certificate object is smaller than configured refuses PUT DATA with
    ``6A 84`` (not enough memory; PivApplet, YubiKey) or ``67 00`` (wrong length, on the last block
    of the chain): "certificate too large for this card", nothing was written."""
    return sw in (SW.NOT_ENOUGH_MEMORY, SW.WRONG_LENGTH)


def no_key_of_this_type(sw: int) -> bool:
    """Test signature during a resume: a slot without a key, or with a key of another type, is
    answered ``6A 88`` (referenced data not found), ``6A 80`` (wrong algorithm for the key) or
    ``6A 82`` (some cards: no such key), depending on the card. Each means "not this key": the next
    candidate key type is tried."""
    return sw in (SW.REFERENCE_NOT_FOUND, SW.INCORRECT_DATA, SW.NOT_FOUND)



def card_lists_key_type(listed: set[KeyType] | None, key_type: KeyType) -> bool:
    """F13 — a card that lists its algorithms in the Application Property Template SELECT returns
    (``AC { 80 <alg> … }``) is asked before GENERATE, so a type it does not list is refused with
    nothing changed; a card that lists none (None) is tried, and :func:`generate_algorithm_refused`
    reads its answer."""
    return listed is None or key_type in listed


def management_key_algorithm(configured: ManagementKeyAlgorithm,
                             on_card: ManagementKeyAlgorithm | None) -> ManagementKeyAlgorithm:
    """F14 — the card's own answer (GET METADATA, :func:`management_key_algorithm_from_metadata`)
    beats the configured algorithm; a card without metadata (None) has the configured one."""
    return on_card if on_card is not None else configured
