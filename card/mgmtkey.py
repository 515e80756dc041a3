"""Where the card management key (``9B``) comes from (DESIGN §5), tried in the configured order:

- ``diversified``: derived from a deployment master key and the card's CHUID GUID, as card
  management systems do, with the SP 800-108 counter-mode KDF (HMAC-SHA-256), so that no two
  cards share a key and the master never reaches a card;
- ``pin-protected``: the key stored on the card in the PIN-protected data object ``5FC109``
  as ``88 { 89 <key> }`` (the layout ykman uses); needs the PIN verified first;
- ``file``: a key file (hex); ``default``: the well-known factory key, only where configured.

Keys are never logged. The ``9B`` key has no retry counter, so trying sources in order costs
no tries.
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.kbkdf import CounterLocation, KBKDFHMAC, Mode

from card import tlv
from card.config import ConfigError, Settings, read_hex_key_file
from card.errors import BadResponseError, CardError, ManagementKeyError
from card.piv import DEFAULT_MANAGEMENT_KEY, ManagementKeyAlgorithm, PivSession
from card.secret import Secret, require_secret

OBJECT_PIN_PROTECTED = b"\x5f\xc1\x09"
DIVERSIFY_LABEL = b"cardrenew PIV card management key"


def diversify(master: Secret, guid: bytes, algorithm: ManagementKeyAlgorithm) -> Secret:
    """The card's key: KBKDF in counter mode (NIST SP 800-108r1 §4.1) with HMAC-SHA-256,
    label :data:`DIVERSIFY_LABEL`, context = the 16-byte CHUID GUID; ``algorithm.key_bytes`` long.

    Raises:
        ValueError: a master key shorter than 16 bytes or a GUID that is not 16 bytes.
        TypeError: ``master`` is not a Secret.
    """
    require_secret(master, "master key")
    if len(master) < 16 or len(guid) != 16:
        raise ValueError("the master key must be at least 16 bytes and the GUID 16 bytes")
    kdf = KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=algorithm.key_bytes, rlen=4,
                    llen=4, location=CounterLocation.BeforeFixed, label=DIVERSIFY_LABEL, context=guid, fixed=None)
    return Secret(kdf.derive(master.reveal()))


def encode_pin_protected(key: Secret) -> bytes:
    """The value of object ``5FC109`` holding a PIN-protected management key (``88 { 89 <key> }``)."""
    return tlv.tlv(0x88, tlv.tlv(0x89, require_secret(key, "management key").reveal()))


def read_pin_protected(session: PivSession) -> Secret | None:
    """The PIN-protected management key on the card, or None when the card holds none.

    Needs the PIN verified. Raises BadResponseError when the object is malformed. (The APDU
    trace never shows this object's value: :mod:`card.apdu` redacts it.)
    """
    value = session.get_data(OBJECT_PIN_PROTECTED)
    if not value:
        return None
    outer = tlv.parse_dict(value).get(b"\x88")
    if outer is None:
        return None
    key = tlv.parse_dict(outer).get(b"\x89")
    if not key:
        raise BadResponseError("the PIN-protected data object holds no management key")
    return Secret(key)


def _key_from(source: str, settings: Settings, session: PivSession, guid: bytes | None,
              algorithm: ManagementKeyAlgorithm) -> Secret | None:
    if source == "default":
        return Secret(DEFAULT_MANAGEMENT_KEY)
    if source == "file":
        return dataclasses.replace(settings, management_key_source="file").management_key()
    if source == "pin-protected":
        return read_pin_protected(session)
    if source == "diversified":
        if settings.master_key_file is None:
            raise ConfigError("management_key.source \"diversified\" needs management_key.master_key_file")
        if guid is None:
            raise ManagementKeyError("this card has no CHUID GUID, so its management key cannot be diversified")
        with read_hex_key_file(settings.master_key_file, "master key file") as master:
            return diversify(master, guid, algorithm)
    raise ConfigError(f"unknown management key source {source!r}")


def authenticate_with_configured_key(session: PivSession, settings: Settings, guid: bytes | None,
                                     algorithm: ManagementKeyAlgorithm) -> str:
    """Authenticate with the first configured source whose key the card accepts; returns its name.

    Raises:
        ManagementKeyError: no source gave a key the card accepts (the message lists them).
        ConfigError: a source is misconfigured.
    """
    tried = []
    for source in settings.sources:
        key = _key_from(source, settings, session, guid, algorithm)
        if key is None:
            tried.append(f"{source} (none on the card)")
            continue
        try:
            session.authenticate(key, algorithm)
            return source
        except ManagementKeyError:
            tried.append(f"{source} (refused)")
        except CardError:
            raise
        finally:
            key.wipe()
    raise ManagementKeyError("the card did not accept the management key from: " + ", ".join(tried))
