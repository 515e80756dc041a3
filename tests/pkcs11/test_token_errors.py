"""What the user is told when a PKCS#11 token says no, and that nothing was lost: each error of the
issue's list from a real SoftHSM2 token (or, where SoftHSM2 cannot produce it, from the binding's
own exception for that return value), judged by pkcs11-tool.

SoftHSM2 never locks a PIN and never sets CKF_USER_PIN_FINAL_TRY / CKF_USER_PIN_LOCKED: it sets
CKF_USER_PIN_COUNT_LOW after any wrong PIN and clears it after a good one (measured with 2.6.1).
So "locked" and "final try" are proven here on the flags and return values as the module would
give them (C_GetTokenInfo answered with those flags; the binding's PinLocked), and on a real
module through libykcs11 over the PIV emulator in tests/ykcs11 (which maps 1 try left to
FINAL_TRY and 0 to LOCKED).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pkcs11 import TokenFlag
from pkcs11 import exceptions as p11

from card.config_errors import ConfigError, ModuleLoadError, SeveralTokensError
from card.enrollment.local import LocalCA
from card.errors import (
    CardRemovedError,
    InvalidPinError,
    NoCardError,
    NotSupportedError,
    PinBlockedError,
    PinFormatError,
    ReadOnlyTokenError,
    TokenDeviceError,
    TokenNotFoundError,
    TokenRemovedError,
)
from card.pkcs11 import Pkcs11Token
from card.pkcs11.binding import Channel
from card.pkcs11.errors import translate
from card.piv.model import KeyType
from card.secret import Secret
from card.token import KeyRef
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import SO_PIN, SoftHsm
from tests.pkcs11.tokens import issue_der, open_token

AUTH, NEW = KeyRef(b"\x01", "Authentication certificate"), KeyRef(b"\x03", "new")


def test_a_wrong_pin_says_so_and_what_the_token_says_of_the_tries(softhsm: SoftHsm) -> None:
    token = open_token(softhsm, log_in=False)
    assert token.pin_tries_left() is None and not token.pin_count_low()
    with pytest.raises(InvalidPinError) as wrong:
        token.log_in(Secret("654321"))
    assert str(wrong.value) == "The PIN was not accepted. The token says few tries are left."
    assert wrong.value.attempts_remaining is None and wrong.value.few_left
    assert token.pin_count_low() and token.pin_tries_left() is None  # PKCS#11 gives no number here
    token.log_in(Secret(softhsm.pin))
    assert not token.pin_count_low()
    assert sorted(judge.working_pairs(softhsm)) == [b"\x01", b"\x02"]
    token.close()


def test_a_pin_that_is_not_text_is_never_sent(softhsm: SoftHsm) -> None:
    token = open_token(softhsm, log_in=False)
    calls = token.calls
    with pytest.raises(PinFormatError, match="the PIN is not valid text"):
        token.log_in(Secret(b"\xff\xfe123456"))
    assert token.calls == calls and not token.pin_count_low()  # no C_Login: no try spent
    token.close()


@pytest.mark.parametrize(("flags", "raised", "words", "left"), [
    (TokenFlag.USER_PIN_FINAL_TRY, InvalidPinError, "The PIN was not accepted. 1 try left before your card is blocked.", 1),
    (TokenFlag.USER_PIN_LOCKED, PinBlockedError, "the token says the PIN is now locked (CKF_USER_PIN_LOCKED)", 0),
])
def test_final_try_and_locked_come_from_the_token_flags(softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch,
                                                        flags: TokenFlag, raised: type[Exception], words: str,
                                                        left: int) -> None:
    real = Channel.token

    class Flagged:  # C_GetTokenInfo as libykcs11 answers it with 1 try / no try left
        def __init__(self, token: object) -> None:
            self._token = token

        def __getattr__(self, name: str) -> object:
            return getattr(self._token, name)

        @property
        def flags(self) -> int:
            return int(self._token.flags) | int(flags)  # type: ignore[attr-defined]

    monkeypatch.setattr(Channel, "token", lambda self, slot: Flagged(real(self, slot)))
    token = open_token(softhsm, log_in=False)
    assert token.pin_tries_left() == left
    with pytest.raises(raised) as err:
        token.log_in(Secret("654321"))
    assert str(err.value) == words
    token.close()


def test_the_modules_pin_locked_is_the_blocked_card() -> None:
    err = translate(p11.PinLocked(), "C_Login", "logging in")
    assert isinstance(err, PinBlockedError) and "CKR_PIN_LOCKED" in str(err)
    assert "Contact your Registration Authority" in err.next_step


def test_an_unknown_module_path_is_named(tmp_path: Path) -> None:
    for path, why in [(tmp_path / "vendor-pkcs11.so", "no such file"), (Path("/etc/hostname"), "not a shared library"),
                      (tmp_path, "it is a directory, not a library")]:
        with pytest.raises(ModuleLoadError) as err:
            Pkcs11Token(path)
        assert isinstance(err.value, ConfigError)
        assert str(err.value) == f"the PKCS#11 module {path} cannot be loaded ({why})"
        assert "Set [card] module to the path of your token's PKCS#11 library" in err.value.next_step


def test_a_library_that_is_no_pkcs11_module_is_named() -> None:
    libz = next(Path(p) for p in ("/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1") if Path(p).exists())
    with pytest.raises(ModuleLoadError, match="not a PKCS#11 library: it has no C_GetFunctionList"):
        Pkcs11Token(libz)


def test_no_such_token_names_the_tokens_the_module_shows(softhsm: SoftHsm) -> None:
    with pytest.raises(TokenNotFoundError) as err:
        Pkcs11Token(softhsm.module, "Work token")
    with Pkcs11Token(softhsm.module, softhsm.label) as right:
        serial = right.info.serial
    assert isinstance(err.value, NoCardError)
    assert str(err.value) == (f"The PKCS#11 module {softhsm.module} shows no token labelled 'Work token'; it shows "
                              f"'{softhsm.label}' (serial {serial}), an uninitialised token.")
    with pytest.raises(TokenNotFoundError, match="shows no token with serial 0000"):
        Pkcs11Token(softhsm.module, token_serial="0000")


def test_several_tokens_are_never_guessed_between(softhsm: SoftHsm) -> None:
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "second", "--pin", "1111", "--so-pin", SO_PIN],
                   env=softhsm.env(), check=True, capture_output=True)
    with pytest.raises(SeveralTokensError) as err:
        Pkcs11Token(softhsm.module)
    assert f"'{softhsm.label}' (serial" in str(err.value) and "'second' (serial" in str(err.value)
    assert "Set [card] token_label (or token_serial)" in err.value.next_step
    with Pkcs11Token(softhsm.module, "second") as second:
        assert second.info.label == "second"


def test_a_read_only_session_changes_nothing(softhsm: SoftHsm, ca: LocalCA) -> None:
    token = open_token(softhsm, read_only=True)
    public = softhsm.certificates[0].certificate.public_key()
    before = judge.objects(softhsm)
    for change in (lambda: token.generate_key(NEW, KeyType.ECCP256), lambda: token.relabel(AUTH, "x"),
                   lambda: token.delete(AUTH), lambda: token.write_certificate(AUTH, issue_der(ca, public), "x")):
        with pytest.raises(ReadOnlyTokenError) as err:
            change()
        assert "CKR_SESSION_READ_ONLY" in str(err.value) and err.value.title == "The token is read-only"
        assert err.value.next_step.startswith("Nothing was changed on the token.")
    assert judge.objects(softhsm) == before
    assert token.sign(AUTH, KeyType.RSA2048, b"reading and signing still work")
    token.close()


def test_a_write_protected_token_is_not_even_asked(softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Channel.token

    class Protected:
        def __init__(self, token: object) -> None:
            self._token = token

        def __getattr__(self, name: str) -> object:
            return getattr(self._token, name)

        @property
        def flags(self) -> int:
            return int(self._token.flags) | TokenFlag.WRITE_PROTECTED  # type: ignore[attr-defined]

    monkeypatch.setattr(Channel, "token", lambda self, slot: Protected(real(self, slot)))
    token = open_token(softhsm)
    calls = token.calls
    with pytest.raises(ReadOnlyTokenError, match="is write-protected"):
        token.generate_key(NEW, KeyType.ECCP256)
    assert token.calls == calls
    token.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None
                    or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
                    reason="needs root and unshare -m for a read-only bind mount")
def test_a_token_on_read_only_storage_stops_the_run_and_loses_nothing(softhsm: SoftHsm) -> None:
    script = (
        "import sys\n"
        "from card.pkcs11 import Pkcs11Token\nfrom card.secret import Secret\nfrom card.token import KeyRef\n"
        "from card.piv.model import KeyType\n"
        f"t = Pkcs11Token({str(softhsm.module)!r}, {softhsm.label!r}); t.start(); t.log_in(Secret({softhsm.pin!r}))\n"
        "try:\n    t.generate_key(KeyRef(b'\\x03', 'new'), KeyType.ECCP256)\n"
        "except Exception as e:\n    print(type(e).__name__, '|', e, '|', isinstance(e, __import__('card.errors').errors.CardRemovedError))\n"
    )
    tokens = softhsm.token_dir
    result = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{tokens}" "{tokens}" && exec "$0" -c "$1"',
                             sys.executable, script], env=softhsm.env(), capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parents[2])
    assert result.stdout.strip() == ("TokenStorageError | the token could not store the change (C_GenerateKeyPair: "
                                     "CKR_GENERAL_ERROR); SoftHSM2 answers so when its token directory is on read-only "
                                     "storage | True"), result.stderr
    assert sorted(judge.working_pairs(softhsm)) == [b"\x01", b"\x02"]
    assert [o for o in judge.objects(softhsm) if o.key_id == b"\x03"] == []


def _token_without(softhsm: SoftHsm, *mechanisms: str) -> None:
    """SoftHSM2's ``slots.mechanisms`` deny list: "-A,B,C" (2.6.1 ignores its first entry, so A is one we
    never use)."""
    deny = "-CKM_MD5," + ",".join(mechanisms)
    softhsm.conf.write_text(softhsm.conf.read_text().replace("slots.mechanisms = ALL", f"slots.mechanisms = {deny}"))


def test_a_mechanism_the_token_lacks_is_not_supported_and_changes_nothing(softhsm: SoftHsm) -> None:
    _token_without(softhsm, "CKM_EC_KEY_PAIR_GEN", "CKM_RSA_X_509", "CKM_ECDSA")
    token = open_token(softhsm)
    assert token.start() == {KeyType.RSA2048}
    before = judge.objects(softhsm)
    calls = token.calls
    with pytest.raises(NotSupportedError) as err:  # SoftHSM2 would still make it: asked from its list, nothing sent
        token.generate_key(NEW, KeyType.ECCP256)
    assert str(err.value) == "the token does not support P-256 key generation (not among its mechanisms)"
    assert token.calls == calls
    with pytest.raises(NotSupportedError) as raw:  # the module's own refusal (C_DecryptInit)
        token.decipher(AUTH, b"\x00" * 256)
    assert str(raw.value) == "the token does not support raw RSA (CKM_RSA_X_509) (C_Decrypt: CKR_MECHANISM_INVALID)"
    with pytest.raises(NotSupportedError, match=r"does not support CKM_ECDSA signatures \(C_Sign: CKR_MECHANISM_INVALID\)"):
        token.sign(KeyRef(b"\x02", ""), KeyType.ECCP256, b"m")
    assert judge.objects(softhsm) == before
    token.close()


def test_without_sha256_rsa_pkcs_the_module_pads_a_digest_info(softhsm: SoftHsm) -> None:
    _token_without(softhsm, "CKM_SHA256_RSA_PKCS")
    token = open_token(softhsm)
    calls = []
    for _ in range(2):  # the first is refused at C_SignInit and sent again; the second goes straight to CKM_RSA_PKCS
        before = token.calls
        signature = token.sign(AUTH, KeyType.RSA2048, b"message")
        calls.append(token.calls - before)
        assert judge.verifies(softhsm.certificates[0].certificate, signature, b"message")
    assert calls[0] > calls[1]
    token.close()


@pytest.mark.parametrize(("exc", "raised", "title"), [
    (p11.DeviceRemoved(), TokenRemovedError, "The token was removed"),
    (p11.TokenNotPresent(), TokenRemovedError, "The token was removed"),
    (p11.SessionHandleInvalid(), TokenRemovedError, "The token was removed"),
    (p11.DeviceError(), TokenDeviceError, "The token reported a device error"),
])
def test_a_token_gone_or_failing_stops_the_run_like_a_pulled_card(exc: p11.PKCS11Error, raised: type[Exception],
                                                                   title: str) -> None:
    err = translate(exc, "C_Sign", "signatures")
    assert isinstance(err, raised) and isinstance(err, CardRemovedError) and err.title == title
    assert "run cardrenew again; an unfinished update is resumed" in err.next_step


@pytest.mark.parametrize(("present", "raised", "message"), [
    (False, TokenRemovedError, "the token was removed during C_Sign (CKR_DEVICE_ERROR)"),
    (True, TokenDeviceError, "C_Sign failed: CKR_DEVICE_ERROR"),
])
def test_a_device_error_from_a_token_no_longer_in_its_slot_is_a_removal(
        softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch, present: bool, raised: type[Exception], message: str) -> None:
    """libykcs11 answers a pulled card with CKR_DEVICE_ERROR (tests/ykcs11): the token asks the
    module whether the token is still in its slot and says which it was."""
    token = open_token(softhsm)

    def failing_sign(*args: object) -> bytes:
        raise p11.DeviceError()

    monkeypatch.setattr(token._channel, "sign", failing_sign)
    monkeypatch.setattr(token, "_present", lambda: present)
    with pytest.raises(raised) as err:
        token.sign(AUTH, KeyType.RSA2048, b"m")
    assert type(err.value) is raised and str(err.value) == message
    token.close()
