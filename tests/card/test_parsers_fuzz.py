"""Fuzz tests of every parser of card data and of the configuration (issue 11: "every parser is
total … fuzz tests with at least 10,000 inputs each in CI: only documented errors, no hang (each
input bounded), no quadratic blow-up").

Each parser gets Hypothesis's ``binary()`` and mutations (bytes set, deleted, inserted, cut,
repeated) of real replies captured from the emulator: SELECT's APT, CHUID, certificate objects
plain and gzip, certificates with positive and negative serials, GENERATE templates (RSA-2048,
P-256, P-384), GENERAL AUTHENTICATE and GET METADATA replies. The property is always the same:
the parser returns a value the app can use in full, or raises the one documented error.

Two budgets: the default run tries :data:`QUICK` inputs per parser; ``-m sweep`` (``.ci/run``'s
second step) tries :data:`SWEEP` (10,000) per parser. Inputs are bounded (at most a few KiB, one
big-input case each with a counted-work check), so no input can hang.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card import tlv
from card.apdu import MAX_GET_RESPONSE_ROUNDS, ApduProtocol, CommandApdu
from card.certificates import (
    days_left,
    decode_certificate_object,
    encode_certificate_object,
    fingerprint,
    holder_name,
    load_certificate,
    serial_note,
)
from card.config import ConfigError, load_settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.errors import BadResponseError, CardError, CertificateObjectError
from card.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KeyType,
    ManagementKeyAlgorithm,
    PivSession,
    Slot,
    parse_chuid,
    parse_public_key,
    parse_supported_key_types,
)
from card.secret import Secret

QUICK = 300
SWEEP = 10_000
BUDGET = pytest.mark.parametrize("budget", [pytest.param(QUICK, id="quick"),
                                            pytest.param(SWEEP, id="10k", marks=pytest.mark.sweep)])


def fuzz(budget: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(max_examples=budget, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# -- the corpus: real replies from the emulator ------------------------------------------------------
class RecordingSession(PivSession):
    """A PIV session that keeps every (INS, reply data) of the card (after GET RESPONSE)."""

    def __init__(self, card: SoftPivCard) -> None:
        super().__init__(card)
        self.replies: list[tuple[int, bytes]] = []

    def _send(self, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0) -> tuple[bytes, int]:
        resp, sw = super()._send(ins, p1, p2, data, le)
        self.replies.append((ins, resp))
        return resp, sw


@functools.lru_cache(maxsize=1)
def corpus() -> dict[str, list[bytes]]:
    """Real replies, by kind: ``apt``, ``chuid``, ``object``, ``certificate``, ``template-<KeyType>``,
    ``auth`` (GENERAL AUTHENTICATE ``7C``), ``metadata``, ``get-data`` (whole ``53``/``7E`` replies)."""
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    out: dict[str, list[bytes]] = {}

    def keep(kind: str, value: bytes) -> None:
        out.setdefault(kind, []).append(value)

    directory = Path(tempfile.mkdtemp(prefix="cardrenew-fuzz-ca-"))
    init_ca(directory, "cardrenew Fuzz CA")
    ca = LocalCA(directory)
    for key_type, profile in ((KeyType.RSA2048, "piv"), (KeyType.ECCP256, "yubikey5"), (KeyType.ECCP384, "piv")):
        card = SoftPivCard(create_card_state(ca, key_type=key_type, profile=profile))
        session = RecordingSession(card)
        keep("apt", session.select())
        for object_id in (b"\x5f\xc1\x02", b"\x7e", b"\x5f\xc1\x05", b"\x5f\xc1\x0a"):
            value = session.get_data(object_id)
            assert value is not None
            keep("get-data", session.replies[-1][1])
            if object_id == b"\x5f\xc1\x02":
                keep("chuid", value)
            elif object_id != b"\x7e":
                keep("object", value)
                cert = decode_certificate_object(value)
                assert cert is not None
                der = cert.public_bytes(Encoding.DER)
                keep("certificate", der)
                keep("object", encode_certificate_object(der, compress=True))
                # the same certificate with a negative serial, signed again by the CA
                parsed = asn1_x509.Certificate.load(der)
                tbs = parsed["tbs_certificate"].copy()
                tbs["serial_number"] = -0x1234567
                keep("certificate", asn1_x509.Certificate({
                    "tbs_certificate": tbs, "signature_algorithm": parsed["signature_algorithm"],
                    "signature_value": ca.key.sign(tbs.dump(), ec.ECDSA(hashes.SHA384()))}).dump())  # type: ignore[call-arg]
        algorithm = session.get_management_key_algorithm() or ManagementKeyAlgorithm.TDES
        if session.replies[-1][1]:
            keep("metadata", session.replies[-1][1])
        session.authenticate(Secret(DEFAULT_MANAGEMENT_KEY), algorithm)
        keep("auth", session.replies[-2][1])
        keep("auth", session.replies[-1][1])
        session.generate_key(Slot.KEY_MANAGEMENT, key_type)
        keep(f"template-{key_type.name}", session.replies[-1][1])
        session.verify_pin(Secret("123456"))
        session.sign(Slot.KEY_MANAGEMENT, key_type, b"fuzz")
        keep("auth", session.replies[-1][1])
    return out


MUTATIONS = st.binary(min_size=4, max_size=16)
"""A mutation script: each 4 bytes (operation, position high, position low, byte) is one mutation.
One draw per script keeps Hypothesis's own work small, so 10,000 inputs per parser stay cheap."""
_OPS = ("set", "set", "set-length", "delete", "insert", "cut", "repeat", "flip")
_LENGTH_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x8F, 0xFF, 0x1F, 0x5F)


def mutate(original: bytes, script: bytes) -> bytes:
    """``original`` with the mutations of ``script`` (see :data:`MUTATIONS`) applied in turn."""
    data = bytearray(original)
    for n in range(0, len(script) - 3, 4):
        op, high, low, byte = _OPS[script[n] % len(_OPS)], script[n + 1], script[n + 2], script[n + 3]
        i = ((high << 8) | low) % len(data) if data else 0
        count = byte % 16 + 1
        if op == "set" and data:
            data[i] = byte
        elif op == "set-length" and data:
            data[i] = _LENGTH_BYTES[byte % len(_LENGTH_BYTES)]
        elif op == "flip" and data:
            data[i] ^= 1 << (byte % 8)
        elif op == "delete":
            del data[i:i + count]
        elif op == "insert":
            data[i:i] = bytes([byte]) * count
        elif op == "cut":
            del data[i:]
        elif op == "repeat":
            data[i:i] = data[i:i + 4 * count]
    return bytes(data)


@functools.lru_cache(maxsize=None)
def mutated(kinds: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """A real reply of one of ``kinds`` with one to four mutations."""
    pool = [value for kind in kinds for value in corpus()[kind]]
    return st.builds(mutate, st.sampled_from(pool), MUTATIONS)


def inputs(*kinds: str, max_size: int = 600) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=max_size), mutated(kinds))


# -- TLV (SP 800-73-4 Part 2 §3.3, ISO 7816-4 §5.2) ----------------------------------------------
@BUDGET
def test_tlv_parse_is_total(budget: int) -> None:
    @fuzz(budget)
    @given(inputs("get-data", "object", "chuid", "apt", "auth", "metadata", "template-RSA2048", "template-ECCP256"))
    def run(data: bytes) -> None:
        try:
            items = tlv.parse(data)
        except BadResponseError as exc:
            assert str(exc)
            return
        assert sum(len(v) for _, v in items) + 2 * len(items) <= len(data)
        assert all(1 <= len(tag) <= 4 for tag, _ in items)
        try:
            tlv.unwrap(data, b"\x53")
        except BadResponseError:
            pass

    run()


class CountingBytes(bytes):
    """Bytes that count the bytes read through indexing and slicing (the parser's work)."""

    read = 0

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        value = bytes.__getitem__(self, key)
        CountingBytes.read += len(value) if isinstance(key, slice) else 1
        return value


@pytest.mark.parametrize("item", [tlv.tlv(0x70, b"\x00" * 3), tlv.tlv(b"\x5f\xc1\x05", b"\x01" * 300)],
                         ids=["small-items", "300-byte-items"])
def test_tlv_work_grows_linearly_with_the_input(item: bytes) -> None:
    """No quadratic blow-up: doubling a 0.5-1 MiB input doubles the bytes the parser touches."""
    def work(count: int) -> int:
        CountingBytes.read = 0
        items = tlv.parse(CountingBytes(item * count))
        assert len(items) == count
        return CountingBytes.read

    small = max(1, (1 << 19) // len(item))
    one, two = work(small), work(2 * small)
    assert 1.9 <= two / one <= 2.1, (one, two)


# -- certificate objects and certificates (SP 800-73-4 Part 1 Appendix A; RFC 5280) ----------------
def usable(cert: Any) -> None:
    """Everything the Card tab, the JSON output and the engine read from a certificate."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from tui.screens.card import key_type_text

    now = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    assert fingerprint(cert) and cert.public_bytes(Encoding.DER)
    holder_name(cert)
    days_left(cert, now)
    cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), f"{cert.serial_number:X}", serial_note(cert)
    cert.not_valid_before_utc.isoformat(), cert.not_valid_after_utc.isoformat()
    list(cert.extensions)
    cert.subject.public_bytes()

    class Status:  # what key_type_text reads of a SlotStatus
        certificate = cert

    key_type_text(Status)  # type: ignore[arg-type]


@BUDGET
def test_certificate_object_decoding_is_total(budget: int) -> None:
    @fuzz(budget)
    @given(st.one_of(inputs("object", max_size=300), mutated(("certificate",)).map(lambda d: tlv.tlv(0x70, d))))
    def run(value: bytes) -> None:
        try:
            cert = decode_certificate_object(value)
        except CertificateObjectError as exc:
            assert str(exc).startswith("unreadable object") or "compressed certificate" in str(exc), str(exc)
            return
        if cert is not None:
            usable(cert)

    run()


@BUDGET
def test_certificate_loading_is_total(budget: int) -> None:
    @fuzz(budget)
    @given(inputs("certificate", max_size=300))
    def run(der: bytes) -> None:
        try:
            cert = load_certificate(der)
        except CertificateObjectError as exc:
            assert str(exc).startswith("not an X.509 certificate"), str(exc)
            return
        usable(cert)

    run()


def test_a_certificate_object_claiming_16_mib_or_inflating_to_gigabytes_is_refused_at_once() -> None:
    """The big-input cases: a length beyond the data, and a gzip bomb (1 GiB of zeros packs to ~1 MiB,
    inflated only up to the 64 KiB cap)."""
    with pytest.raises(CertificateObjectError, match="claims 16777215 bytes"):
        decode_certificate_object(b"\x70\x83\xff\xff\xff" + b"\x00" * 1000)
    bomb = gzip.compress(b"\x00" * (64 << 20), compresslevel=9)  # 64 MiB of zeros, ~64 KiB packed
    with pytest.raises(CertificateObjectError, match="beyond 64 KiB"):
        decode_certificate_object(tlv.tlv(0x70, bomb) + tlv.tlv(0x71, b"\x01"))


# -- GENERATE, CHUID, APT ------------------------------------------------------------------------
@BUDGET
@pytest.mark.parametrize("key_type", list(KeyType), ids=lambda k: k.name)
def test_generate_reply_parsing_is_total(budget: int, key_type: KeyType) -> None:
    kinds = ("template-RSA2048", "template-ECCP256", "template-ECCP384")

    @fuzz(budget // 3 + 1)  # three key types share the 10,000
    @given(inputs(*kinds, max_size=300))
    def run(reply: bytes) -> None:
        try:
            key = parse_public_key(key_type, reply)
        except BadResponseError as exc:
            assert str(exc)
            return
        assert KeyType.of(key) is key_type

    run()


@BUDGET
def test_chuid_and_apt_parsing_is_total(budget: int) -> None:
    @fuzz(budget)
    @given(inputs("chuid", "apt", "get-data", max_size=200))
    def run(value: bytes) -> None:
        try:
            chuid = parse_chuid(value)
            assert len(chuid.guid) == 16 and chuid.guid_text and chuid.guid_hex
        except BadResponseError:
            pass
        listed = parse_supported_key_types(value)  # never raises: None when the card lists nothing
        assert listed is None or listed <= set(KeyType)

    run()


# -- APDU responses and every PIV reply through the session ---------------------------------------
class FuzzCard:
    """A card that answers with the given (data, SW) list in turn, then ``6A 82`` forever."""

    name = "fuzz"

    def __init__(self, answers: list[tuple[bytes, int]]) -> None:
        self.answers = list(answers)
        self.sent = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent += 1
        return self.answers.pop(0) if self.answers else (b"", 0x6A82)

    def transaction(self):  # type: ignore[no-untyped-def]
        import contextlib

        return contextlib.nullcontext()

    def close(self) -> None:
        pass


SWS = st.one_of(st.sampled_from([0x9000, 0x6100, 0x6101, 0x61FF, 0x6C00, 0x6C10, 0x6A82, 0x6982, 0x6983, 0x63C0,
                                 0x63C1, 0x6300, 0x6A80, 0x6A86, 0x6D00, 0x6700, 0x6A84]),
                st.integers(0, 0xFFFF))
ANSWERS = st.deferred(lambda: st.lists(st.tuples(  # deferred: the corpus is made when a test first draws
    st.one_of(st.binary(max_size=300), mutated(("get-data", "auth", "apt", "metadata", "template-RSA2048",
                                                "template-ECCP256"))), SWS), max_size=4))


@BUDGET
def test_apdu_responses_are_total_and_bounded(budget: int) -> None:
    @fuzz(budget)
    @given(ANSWERS, st.booleans())
    def run(answers: list[tuple[bytes, int]], long_command: bool) -> None:
        card = FuzzCard(answers)
        data = b"\x01" * (600 if long_command else 3)
        try:
            resp, sw = ApduProtocol(card).send(CommandApdu(0x00, 0xCB, 0x3F, 0xFF, data))
        except BadResponseError:
            return
        finally:
            assert card.sent <= 3 + 1 + MAX_GET_RESPONSE_ROUNDS + 1
        assert 0 <= sw <= 0xFFFF
        if not long_command:  # (a chain block refused midway is returned with its own SW, whatever it is)
            assert sw >> 8 != 0x61  # GET RESPONSE followed every 61 XX

    run()


def piv_operations(session: PivSession) -> list[Callable[[], object]]:
    return [
        session.select,
        session.read_chuid,
        lambda: session.get_data(b"\x7e"),
        lambda: session.read_certificate(Slot.AUTHENTICATION),
        session.get_pin_retries,
        lambda: session.verify_pin(Secret("123456")),
        session.get_version,
        session.get_management_key_algorithm,
        lambda: session.authenticate(Secret(DEFAULT_MANAGEMENT_KEY), ManagementKeyAlgorithm.TDES),
        lambda: session.authenticate(Secret(DEFAULT_MANAGEMENT_KEY), ManagementKeyAlgorithm.AES192),
        lambda: session.generate_key(Slot.AUTHENTICATION, KeyType.RSA2048),
        lambda: session.generate_key(Slot.SIGNATURE, KeyType.ECCP256),
        lambda: session.generate_key(Slot.SIGNATURE, KeyType.ECCP384),
        lambda: session.sign(Slot.SIGNATURE, KeyType.ECCP256, b"m"),
        lambda: session.rsa_decipher(Slot.AUTHENTICATION, b"\x00" * 256),
        lambda: session.change_pin(Secret("123456"), Secret("654321")),
        lambda: session.put_data(b"\x5f\xc1\x05", b"\x70\x00"),
    ]


@BUDGET
def test_every_piv_reply_is_parsed_or_a_card_error(budget: int) -> None:
    """Whatever the card answers to any PIV command, the session returns or raises a CardError."""
    from card.mgmtkey import read_pin_protected

    count = len(piv_operations(PivSession(FuzzCard([])))) + 1

    @fuzz(budget)
    @given(st.integers(0, count - 1), ANSWERS)
    def run(which: int, answers: list[tuple[bytes, int]]) -> None:
        session = PivSession(FuzzCard(answers))
        operation = (piv_operations(session) + [lambda: read_pin_protected(session)])[which]
        try:
            result = operation()
        except CardError as exc:
            assert exc.title and exc.next_step
            return
        if hasattr(result, "certificate") and result.certificate is not None:  # a SlotCertificate
            usable(result.certificate)

    run()


# -- a whole card read: one mutated slot never hides the other (F15) ---------------------------------
@functools.lru_cache(maxsize=1)
def base_card_state() -> Any:
    directory = Path(tempfile.mkdtemp(prefix="cardrenew-fuzz-card-"))
    init_ca(directory, "cardrenew Fuzz CA")
    return create_card_state(LocalCA(directory), key_type=KeyType.ECCP256)


@pytest.mark.parametrize("budget", [pytest.param(100, id="quick"),
                                    pytest.param(2000, id="2k", marks=pytest.mark.sweep)])
def test_reading_a_card_with_one_mutated_object_never_fails(budget: int) -> None:
    """``read_card`` (status, the Card tab) with a mutated 9A object and CHUID: the summary is made,
    9A is readable or unreadable with a reason, 9C is still due, and the JSON output is made."""
    import copy

    from card.config import Settings
    from card.renewal import SlotState, read_card
    from tui.cli.status import summary_json
    from tui.screens.card import certificate_details

    @fuzz(budget)
    @given(inputs("object", max_size=300), inputs("chuid", max_size=100))
    def run(nine_a: bytes, chuid: bytes) -> None:
        state = copy.deepcopy(base_card_state())
        state.objects["5FC105"] = nine_a.hex()
        state.objects["5FC102"] = chuid.hex()
        summary = read_card(PivSession(SoftPivCard(state)), Settings(state_dir=Path(tempfile.gettempdir()) / "unused"))
        by_slot = {s.slot: s for s in summary.slots}
        assert by_slot[Slot.SIGNATURE].state is SlotState.DUE
        if by_slot[Slot.AUTHENTICATION].state is SlotState.UNREADABLE:
            assert by_slot[Slot.AUTHENTICATION].error
        summary_json(summary, 90)
        for status in summary.slots:
            certificate_details(status)

    run()


# -- the configuration ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def readme_toml() -> str:
    import re

    readme = Path(__file__).resolve().parents[2] / "README.md"
    return re.findall(r"```toml\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S)[0]


TEXT_PIECES = list("[]{}=\",.#\n 0123456789aeintfu_-") + ["nan", "inf", "\\", "'", "\x00", "é", "[[", "{a = "]


def mutate_text(script: bytes) -> str:
    """The README's TOML example with each 4 bytes of ``script`` (operation, position high,
    position low, piece) applied in turn: set, delete or insert one of :data:`TEXT_PIECES`."""
    text = readme_toml()
    for n in range(0, len(script) - 3, 4):
        op, at, piece = script[n] % 3, (script[n + 1] << 8) | script[n + 2], TEXT_PIECES[script[n + 3] % len(TEXT_PIECES)]
        i = at % (len(text) + 1)
        if op == 0:
            text = text[:i] + piece + text[i + 1:]
        elif op == 1:
            text = text[:i] + text[i + script[n + 3] % 20 + 1:]
        else:
            text = text[:i] + piece * (script[n + 3] % 30 + 1) + text[i:]
    return text


MUTATED_TEXT = st.builds(mutate_text, st.binary(min_size=4, max_size=24))


@BUDGET
def test_configuration_loading_is_total(budget: int, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"

    @fuzz(budget)
    @given(st.one_of(st.text(max_size=200), MUTATED_TEXT, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
    def run(text: str) -> None:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_settings(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}: ") and str(path) in exc.next_step, str(exc)

    run()
