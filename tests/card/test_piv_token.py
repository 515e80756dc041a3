"""Issue 14: :class:`card.token.piv.PivToken` honours the :class:`card.token.Token` contract over the
in-process emulator, judged by the emulator's own state (its keys and objects), never by the token:

- ``generate_key`` → ``sign`` verifies with the public key it returned (every slot, EC P-256 / P-384,
  any message; the 9C PIN-always VERIFY is the token's own job);
- ``write_certificate`` → ``certificate`` / ``certificates`` read exactly those bytes back (any size
  up to the card's capacity, gzip where only that fits; too large: CertificateTooLargeError and
  nothing written);
- ``log_in`` with a wrong PIN → the tries left go down by one, then blocked;
- the card pulled at every APDU of ``log_in_admin`` + ``generate_key`` / ``write_certificate``: the
  slot holds either the old or the new key / certificate, whole;
- the engine uses nothing but the protocol: the renewal state machine (issue 11) run through a proxy
  that offers only the Token members still keeps its invariants.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.certificates import decode_certificate_object, verify_signature
from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.errors import CardRemovedError, CertificateTooLargeError, InvalidPinError, PinBlockedError
from card.piv import KeyType, PivSession, Slot
from card.renewal.admin import piv_token
from card.secret import Secret
from card.token import KeyRef, Token, TokenInterface
from card.token.piv import PivToken

PIN = "123456"
_BASE = Path(tempfile.mkdtemp(prefix="cardrenew-token-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
init_ca(_BASE / "ca", "cardrenew Token CA")
CA = LocalCA(_BASE / "ca")
SETTINGS = Settings(state_dir=_BASE / "state")
_SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
EC_TYPES = (KeyType.ECCP256, KeyType.ECCP384)
SIGNING = {KeyType.ECCP256: ec.ECDSA(hashes.SHA256()), KeyType.ECCP384: ec.ECDSA(hashes.SHA256())}


def new_card(key_type: KeyType = KeyType.ECCP256) -> SoftPivCard:
    return SoftPivCard(create_card_state(CA, key_type=key_type))


def token_on(card: SoftPivCard) -> PivToken:
    return piv_token(PivSession(card), SETTINGS)


def key_pem(card: SoftPivCard, slot: Slot) -> str | None:
    held = card.state.keys.get(slot.hex)
    return held.private_pem if held is not None else None


def object_on(card: SoftPivCard, slot: Slot) -> str | None:
    return card.state.objects.get(slot.object_id.hex().upper())


def public_of(card: SoftPivCard, slot: Slot) -> PublicKeyTypes:
    pem = key_pem(card, slot)
    assert pem is not None
    key = serialization.load_pem_private_key(pem.encode(), None)
    return key.public_key()  # type: ignore[return-value]  # an EC or RSA key: both have public_key()


def certificate_of(size: int, key: PublicKeyTypes, *, compressible: bool = False) -> bytes:
    """A certificate for ``key`` of about ``size`` bytes, padded by an extension of random bytes (gzip
    cannot shrink it) or, ``compressible``, of zeros."""
    signer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token test")])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key)  # type: ignore[arg-type]
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + dt.timedelta(days=1)))
    base = len(builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    if size > base + 16:
        blob = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), bytes(size - base - 16) if compressible else os.urandom(size - base - 16))
        builder = builder.add_extension(blob, critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_piv_token_is_a_token_in_the_piv_order() -> None:
    token = token_on(new_card())
    assert isinstance(token, Token)
    assert token.info.interface is TokenInterface.PIV and not token.info.side_by_side
    assert [ref.hex for ref in token.key_refs()] == ["9A", "9C", "9D", "9E"]  # the journal's names, unchanged
    assert KeyRef.piv(Slot.SIGNATURE) == KeyRef(b"\x9c", "another label")  # identity is the key id alone


@settings(max_examples=12, **_SETTINGS)
@given(slot=st.sampled_from(list(Slot)), key_type=st.sampled_from(EC_TYPES), message=st.binary(max_size=300))
def test_generate_then_sign_verifies_with_the_returned_key(slot: Slot, key_type: KeyType, message: bytes) -> None:
    card = new_card()
    token = token_on(card)
    token.start()
    token.log_in_admin()
    token.log_in(Secret(PIN))
    ref = KeyRef.piv(slot)
    public = token.generate_key(ref, key_type)
    assert public.public_numbers() == public_of(card, slot).public_numbers()  # the card's key, not another
    for _ in range(2):  # 9C is PIN-always: the token sends the VERIFY before each signature itself
        assert verify_signature(public, token.sign(ref, key_type, message), message)


@settings(max_examples=16, **_SETTINGS)
@given(slot=st.sampled_from([Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT]),
       size=st.integers(min_value=300, max_value=6000), compressible=st.booleans())
def test_write_certificate_reads_back_the_same_bytes_or_writes_nothing(slot: Slot, size: int,
                                                                        compressible: bool) -> None:
    card = new_card()
    token = token_on(card)
    token.start()
    token.log_in_admin()
    der = certificate_of(size, public_of(card, Slot.AUTHENTICATION), compressible=compressible)
    before = object_on(card, slot)
    ref = KeyRef.piv(slot)
    limit = SETTINGS.max_certificate_bytes
    if len(der) > limit and len(gzip.compress(der, mtime=0)) > limit:  # F05: nothing written
        with pytest.raises(CertificateTooLargeError):
            token.write_certificate(ref, der, ref.label)
        assert object_on(card, slot) == before
        return
    token.write_certificate(ref, der, ref.label)
    assert token.certificate(ref).raw == der
    assert decode_certificate_object(bytes.fromhex(object_on(card, slot) or "")).public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.DER) == der
    assert der in [c.raw for c in token.certificates()]


@settings(max_examples=6, **_SETTINGS)
@given(wrong=st.lists(st.text(alphabet="0123456789", min_size=6, max_size=8).filter(lambda p: p != PIN),
                      min_size=1, max_size=4))
def test_a_wrong_pin_costs_one_try_each_then_blocks(wrong: list[str]) -> None:
    card = new_card()
    token = token_on(card)
    token.start()
    left = token.pin_tries_left()
    assert left == 3
    for pin in wrong:
        if left == 0:
            with pytest.raises(PinBlockedError):
                token.log_in(Secret(pin))
            break
        try:
            token.log_in(Secret(pin))
        except InvalidPinError as exc:
            assert exc.attempts_remaining == left - 1
        except PinBlockedError:
            assert left == 1
        left -= 1
        assert token.pin_tries_left() == left == card.state.pin_retries


def _pull_at(card: SoftPivCard, k: int) -> None:
    card.power_on()
    card.faults = CardFaults(drop_after_apdus=card.apdu_count + k)


@pytest.mark.parametrize("slot", [Slot.AUTHENTICATION, Slot.SIGNATURE])
def test_a_pull_at_every_apdu_of_generate_leaves_the_old_or_the_new_key(slot: Slot) -> None:
    card = new_card()
    old = key_pem(card, slot)
    k = 0
    while True:
        _pull_at(card, k)
        token = token_on(card)
        try:
            token.start()
            token.log_in_admin()
            token.generate_key(KeyRef.piv(slot), KeyType.ECCP256)
        except CardRemovedError:
            card.insert()
            now = key_pem(card, slot)
            assert now == old or now is not None  # old, or a whole new key: never none, never torn
            if now != old:  # the card made the new key and the answer was lost: the slot holds it
                break
            k += 1
            continue
        break
    assert key_pem(card, slot) != old and k >= 3  # SELECT, the management key's exchange, then GENERATE


@pytest.mark.parametrize("size", [1200, 2900])
def test_a_pull_at_every_apdu_of_write_leaves_the_old_or_the_new_certificate(size: int) -> None:
    card = new_card()
    slot = Slot.AUTHENTICATION
    old = object_on(card, slot)
    der = certificate_of(size, public_of(card, slot))
    ref = KeyRef.piv(slot)
    k = 0
    while True:
        _pull_at(card, k)
        token = token_on(card)
        try:
            token.start()
            token.log_in_admin()
            token.write_certificate(ref, der, ref.label)
        except CardRemovedError:
            card.insert()
            now = object_on(card, slot)
            assert now == old or decode_certificate_object(bytes.fromhex(now or "")).public_bytes(  # type: ignore[union-attr]
                serialization.Encoding.DER) == der
            k += 1
            continue
        break
    card.faults = CardFaults()
    token = token_on(card)
    token.start()
    assert token.certificate(ref).raw == der
    assert k >= 5  # the chained PUT DATA was cut at each of its blocks, every time leaving the old object


class ProtocolOnly:
    """A token that offers the :class:`Token` members and nothing else (no ``session``, no PIV
    extras): what an engine that needs more than the protocol would trip over."""

    def __init__(self, inner: Token) -> None:
        self._inner = inner
        self.used: set[str] = set()

    def __getattr__(self, name: str) -> object:
        if name not in TOKEN_MEMBERS:
            raise AttributeError(f"the engine asked the token for {name!r}, which is not in the Token protocol")
        self.used.add(name)
        return getattr(self._inner, name)


TOKEN_MEMBERS = frozenset({"info", "calls", "start", "card_identity", "key_refs", "certificates", "certificate",
                           "public_key", "pin_tries_left", "log_in", "log_in_admin", "generate_key", "sign",
                           "decipher", "write_certificate", "delete", "relabel", "close"})


def test_token_members_are_the_protocol() -> None:
    """The proxy's list is the protocol's (a member added to the protocol is added here too)."""
    declared = {name for name in vars(Token) if not name.startswith("_")}
    assert declared == TOKEN_MEMBERS


def test_the_engine_state_machine_holds_through_nothing_but_the_token_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11's state machine (pulls, stops, CA and disk faults, foreign changes between runs) with the
    engine given a token that is only the protocol: every invariant still holds."""
    import tests.card.test_engine_state_machine as machine
    from card.renewal import renew

    used: set[str] = set()

    def renew_through_the_protocol(card: PivSession, ctx, pin, **kw):  # type: ignore[no-untyped-def]
        token = ProtocolOnly(piv_token(card, ctx.settings))
        try:
            return renew(token, ctx, pin, **kw)  # type: ignore[arg-type]  # duck-typed: the protocol's members only
        finally:
            used.update(token.used)

    monkeypatch.setattr(machine, "renew", renew_through_the_protocol)
    machine._run(int(os.environ.get("CARDRENEW_TOKEN_SM_EXAMPLES", "25")), 8)
    assert {"start", "log_in", "log_in_admin", "generate_key", "sign", "write_certificate", "certificate"} <= used


class _Refs:
    """Only ``key_refs``: a PKCS#11 module over a PIV card (libykcs11 numbers its keys 01..04)."""

    def __init__(self, refs: list[KeyRef]) -> None:
        self.refs = refs

    def key_refs(self) -> list[KeyRef]:
        return self.refs


def test_journal_and_issuer_names_find_the_token_key() -> None:
    """A journal written before the token boundary names slots "9A"/"9C": a PIV token's refs have those
    names; a token whose key ids are not slot bytes is matched by its refs' slots; anything else is a
    ValueError (the engine's "not this token's key"), never another key."""
    from card.renewal.keys import TokenKeys

    piv = TokenKeys(token_on(new_card()))  # type: ignore[arg-type]
    assert piv.named("9A") == piv.named("0x9a") == KeyRef.piv(Slot.AUTHENTICATION)
    assert piv.of_slot(Slot.SIGNATURE).hex == "9C"
    ykcs11 = TokenKeys(_Refs([KeyRef(bytes([i + 1]), f"key {i}", slot) for i, slot in enumerate(Slot)]))  # type: ignore[arg-type]
    assert ykcs11.named("9C").key_id == b"\x02" and ykcs11.named("02").slot is Slot.SIGNATURE
    soft = TokenKeys(_Refs([KeyRef(b"\x9a\x01", "beside")]))  # type: ignore[arg-type]
    for name in ("9A", "zz", ""):
        with pytest.raises(ValueError):
            soft.named(name)
    assert soft.named("9a01").label == "beside"
