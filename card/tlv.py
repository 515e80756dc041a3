"""BER-TLV encoding and parsing as used by PIV (SP 800-73-4 Part 2 §3.3, ISO 7816-4 §5.2).

Tags are bytes (one to three bytes, e.g. ``b"\\x5f\\xc1\\x05"``); lengths use the short
form below 128 and the ``81 xx`` / ``82 xx xx`` / ``83 xx xx xx`` long forms above.

The parser is total and linear: any byte string either parses or raises
:class:`~card.errors.BadResponseError` (a truncated tag, length or value; the indefinite form
``80`` and the forms ``84``–``FF``; a tag longer than 4 bytes), and each byte is read once. It
parses one level; callers descend one known level at a time, so nesting depth costs no recursion.
``tests/card/test_parsers_fuzz.py`` fuzzes it and counts its work.
"""

from __future__ import annotations

from card.errors import BadResponseError


def encode_length(length: int) -> bytes:
    """Encode a BER length. Raises ValueError for negative or over-16 MiB lengths."""
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return b"\x81" + bytes([length])
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    if length <= 0xFFFFFF:
        return b"\x83" + length.to_bytes(3, "big")
    raise ValueError("length too large")


def tlv(tag: bytes | int, value: bytes) -> bytes:
    """Encode one TLV. ``tag`` is the tag bytes (an int is taken as a one-byte tag)."""
    if isinstance(tag, int):
        tag = bytes([tag])
    return tag + encode_length(len(value)) + value


def _read_tag(data: bytes, pos: int) -> tuple[bytes, int]:
    start = pos
    if pos >= len(data):
        raise BadResponseError("TLV truncated: tag missing")
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:  # multi-byte tag: continue while b8 is set
        while True:
            if pos >= len(data):
                raise BadResponseError("TLV truncated inside a tag")
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start > 4:
                raise BadResponseError("TLV tag longer than 4 bytes")
    return data[start:pos], pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise BadResponseError("TLV truncated: length missing")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 3:
        raise BadResponseError(f"TLV length form {first:02X} not supported")
    if pos + count > len(data):
        raise BadResponseError("TLV truncated inside a length")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def parse(data: bytes) -> list[tuple[bytes, bytes]]:
    """Parse concatenated TLVs into ``[(tag, value), ...]`` in order.

    Raises:
        BadResponseError: a tag, length or value runs past the end of ``data``.
    """
    items: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        if pos + length > len(data):
            raise BadResponseError(
                f"TLV {tag.hex().upper()} claims {length} bytes, only {len(data) - pos} present"
            )
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def parse_dict(data: bytes) -> dict[bytes, bytes]:
    """Parse TLVs into a dict (the first occurrence of a tag wins)."""
    out: dict[bytes, bytes] = {}
    for tag, value in parse(data):
        out.setdefault(tag, value)
    return out


def unwrap(data: bytes, tag: bytes | int) -> bytes:
    """Return the value of a single outer TLV with the given tag.

    Raises:
        BadResponseError: the data is not exactly one TLV with that tag.
    """
    if isinstance(tag, int):
        tag = bytes([tag])
    items = parse(data)
    if len(items) != 1 or items[0][0] != tag:
        raise BadResponseError(f"expected one TLV {tag.hex().upper()}")
    return items[0][1]
