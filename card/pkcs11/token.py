"""The :class:`card.token.Token` of any PKCS#11 token (OASIS PKCS#11 v2.40), on python-pkcs11.

:class:`Pkcs11Token` opens the module, finds the one token ``[card] token_label`` /
``token_serial`` names, and keeps one session: public after :meth:`start`, the user's after
:meth:`log_in`, the security officer's after :meth:`log_in_admin` on modules that write only so
(libykcs11). Every binding call is counted (:attr:`calls`) and every binding error is mapped to
:mod:`card.errors` (:mod:`card.pkcs11.errors`). Reading and key generation are in this module;
certificates and objects in :mod:`card.pkcs11.objects`.

The PIN: :meth:`log_in` keeps a reference to the caller's :class:`~card.secret.Secret` (not a
copy; the caller wipes it at the end of the run) and reveals it only inside the binding call that
sends it — ``C_Login``, or the context-specific ``C_Login(CKU_CONTEXT_SPECIFIC)`` a key with
``CKA_ALWAYS_AUTHENTICATE`` (a PIV card's 9C through libykcs11 or OpenSC) needs between
``C_SignInit`` and ``C_Sign``: python-pkcs11 0.10 does that login itself when given the PIN
(``key.sign(data, pin=…)``: ``C_SignInit``, ``C_Login(CKU_CONTEXT_SPECIFIC)``, ``C_Sign``), so
such keys renew like any other. The binding takes the PIN as a ``str`` and encodes it as UTF-8:
that short-lived ``str`` is the one copy outside the Secret, which CPython cannot wipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Mechanism, ObjectClass, SlotFlag, TokenFlag
from pkcs11 import exceptions as p11

from card import words
from card.config_errors import SeveralTokensError
from card.errors import (
    BadResponseError,
    CardError,
    InvalidPinError,
    ManagementKeyError,
    NotSupportedError,
    PinBlockedError,
    PinFormatError,
    ReadOnlyTokenError,
    TokenNotFoundError,
)
from card.pkcs11.binding import Channel, close_module, open_module
from card.pkcs11.errors import mapped, translate
from card.pkcs11.keys import KEY_ATTRIBUTES, NAMES, PIV_IDS, keypair_templates, profile_for, public_key_of
from card.pkcs11.objects import ObjectsMixin
from card.piv.model import KeyType
from card.secret import Secret
from card.token.base import CardIdentity, KeyRef, TokenInfo, TokenInterface

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

PUBLIC, USER, SO = "public", "user", "so"


class Pkcs11Token(ObjectsMixin):
    """A token behind a PKCS#11 module.

    Args:
        module_path: the module (``[card] module``), e.g. ``/usr/lib/softhsm/libsofthsm2.so``.
        token_label, token_serial: ``CK_TOKEN_INFO.label`` / ``serialNumber`` of the token to use;
            neither: the module must show exactly one initialised token.
        admin_key: what :meth:`log_in_admin` sends on modules that write only as security officer
            (libykcs11: the PIV management key's raw bytes, sent as hex as libykcs11 wants); None
            elsewhere (SoftHSM2 and most tokens write in the user's session).
        read_only: open read-only sessions only (``status``, or a policy that nothing be changed);
            a write is then refused by the module (``CKR_SESSION_READ_ONLY``: ReadOnlyTokenError).

    Raises:
        ModuleLoadError: the module cannot be loaded (names the path and why).
        TokenNotFoundError: no such token (names the tokens the module shows).
        SeveralTokensError: more than one token could be meant.
        TokenRemovedError, TokenDeviceError: the module failed while listing its tokens.
    """

    def __init__(self, module_path: str | Path, token_label: str | None = None, token_serial: str | None = None,
                 *, admin_key: Secret | None = None, read_only: bool = False) -> None:
        self.module_path = str(module_path)
        module, calls = open_module(self.module_path)
        self._channel = Channel(module, calls)
        self._session: pkcs11.Session | None = None
        self._role = PUBLIC
        self._pin: Secret | None = None
        self._admin_key = admin_key
        self._admin_ok = False
        self._key_types: set[KeyType] | None = None
        self._closed = False
        try:
            self._slot, token = self._find(token_label, token_serial)
        except BaseException:
            close_module(module)
            raise
        self._token = token
        self.profile = profile_for(token.manufacturer_id)
        self._write_protected = bool(token.flags & TokenFlag.WRITE_PROTECTED)
        self._read_only = read_only or self._write_protected
        self._info = TokenInfo(TokenInterface.PKCS11, token.label.strip(), token.manufacturer_id.strip(),
                               token.model.strip(), _serial(token), self.profile.side_by_side,
                               self._slot.slot_description.strip())

    def __repr__(self) -> str:  # never the PIN or the admin key
        return f"Pkcs11Token({self.module_path!r}, {self._info.label!r}, role={self._role})"

    @property
    def info(self) -> TokenInfo:
        return self._info

    @property
    def calls(self) -> int:
        """PKCS#11 function calls made for this token so far (card.pkcs11.binding says how they are counted)."""
        return self._channel.calls

    # -- finding the token -----------------------------------------------------------------------
    def _find(self, label: str | None, serial: str | None) -> tuple[pkcs11.Slot, pkcs11.Token]:
        with mapped("C_GetSlotList", "listing its tokens"):
            slots = self._channel.slots()
        seen: list[str] = []
        matches: list[tuple[pkcs11.Slot, pkcs11.Token, str]] = []
        for slot in slots:
            if not slot.flags & SlotFlag.TOKEN_PRESENT:
                continue
            try:
                token = self._channel.token(slot)
            except (p11.TokenNotPresent, p11.TokenNotRecognised):
                continue  # pulled out (or unreadable) since the slot list was made
            except p11.PKCS11Error as exc:
                raise translate(exc, "C_GetTokenInfo", "reading the token") from exc
            initialised = bool(token.flags & TokenFlag.TOKEN_INITIALIZED)
            name = words.token_seen(token.label, _serial(token), initialised)
            seen.append(name)
            if initialised and label in (None, token.label.strip()) and serial in (None, _serial(token)):
                matches.append((slot, token, name))
        if not matches:
            raise TokenNotFoundError(words.token_not_found(self.module_path, words.token_wanted(label, serial), seen))
        if len(matches) > 1:
            raise SeveralTokensError(self.module_path, [name for _, _, name in matches])
        return matches[0][0], matches[0][1]

    # -- the session -----------------------------------------------------------------------------
    def start(self) -> set[KeyType] | None:
        """Open the session (read-write unless the token is write-protected); the key types the
        token can generate, from its mechanisms (``CKM_RSA_PKCS_KEY_PAIR_GEN``: RSA-2048;
        ``CKM_EC_KEY_PAIR_GEN``: P-256 and P-384)."""
        self._ensure_session()
        if self._key_types is None:
            with self._mapped("C_GetMechanismList", "listing its mechanisms"):
                mechanisms = self._channel.mechanisms(self._slot)
            types = {KeyType.RSA2048} if Mechanism.RSA_PKCS_KEY_PAIR_GEN in mechanisms else set()
            if Mechanism.EC_KEY_PAIR_GEN in mechanisms:
                types |= {KeyType.ECCP256, KeyType.ECCP384}
            self._key_types = types
        return set(self._key_types)

    def _ensure_session(self) -> pkcs11.Session:
        if self._session is None:
            self._open(PUBLIC)
        assert self._session is not None
        return self._session

    def _open(self, role: str, secret: Secret | None = None) -> None:
        """Close our session (``C_Logout`` if logged in) and open one as ``role``. Binding errors pass through.

        PKCS#11 keeps one login per token for the whole process (v2.40 §5.6): when another
        Pkcs11Token of this process is logged in as user on this token, ``C_Login`` answers
        ``CKR_USER_ALREADY_LOGGED_IN`` and our new session shares that login (the PIN is then not
        checked again)."""
        self._close_session()
        pins = {"user": secret} if role == USER else {"so": secret} if role == SO else {}
        logins = self._channel.module.logins
        try:
            self._session = self._open_session(pins)
        except p11.UserAlreadyLoggedIn:
            if role != USER or not logins.get(self._slot.slot_id):
                raise
            self._session = self._open_session({})
        self._role = role
        if role != PUBLIC:
            logins[self._slot.slot_id] = logins.get(self._slot.slot_id, 0) + 1

    def _open_session(self, pins: dict[str, Secret | None]) -> pkcs11.Session:
        try:
            return self._channel.open(self._token, rw=not self._read_only, **pins)
        except p11.TokenWriteProtected:
            self._read_only = True  # the flag did not say so; the session did
            return self._channel.open(self._token, rw=False, **pins)

    def _close_session(self) -> None:
        """Close our session; ``C_Logout`` only when no other Pkcs11Token of this process shares the
        login (its session is kept open until then: closing it would log the others out)."""
        session, role, self._session, self._role = self._session, self._role, None, PUBLIC
        if session is None:
            return
        module, slot = self._channel.module, self._slot.slot_id
        if role != PUBLIC:
            module.logins[slot] = others = module.logins.get(slot, 1) - 1
            if others > 0 and getattr(session, "user_type", pkcs11.UserType.NOBODY) != pkcs11.UserType.NOBODY:
                module.parked.append(session)  # closed by C_Finalize when the module is released
                return
        try:
            self._channel.close(session)
        except p11.PKCS11Error:
            pass  # a session the token already dropped (removal) is closed either way

    def close(self) -> None:
        """Log out, close the session and release the module (the last token of it finalises it)."""
        self._close_session()
        self._pin = None
        if not self._closed:
            self._closed = True
            self._channel.calls += close_module(self._channel.module)

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- PIN -------------------------------------------------------------------------------------
    def pin_tries_left(self) -> int | None:
        """0 when the token says the PIN is locked, 1 on its final try, else None: PKCS#11 gives no
        count (``CKF_USER_PIN_COUNT_LOW`` only says a wrong PIN was entered; see :meth:`pin_count_low`)."""
        flags = self._token_flags()
        if flags & TokenFlag.USER_PIN_LOCKED:
            return 0
        return 1 if flags & TokenFlag.USER_PIN_FINAL_TRY else None

    def pin_count_low(self) -> bool:
        """The token says a wrong PIN was entered since the last good one (``CKF_USER_PIN_COUNT_LOW``)."""
        return bool(self._token_flags() & TokenFlag.USER_PIN_COUNT_LOW)

    def _token_flags(self) -> TokenFlag:
        with self._mapped("C_GetTokenInfo", "reading the token"):
            self._token = self._channel.token(self._slot)
        return TokenFlag(self._token.flags)

    def log_in(self, pin: Secret) -> None:
        """``C_Login(CKU_USER)`` in a new read-write session; keeps a reference to ``pin``.

        Raises:
            PinFormatError (not UTF-8; the token refused its length), InvalidPinError (tries left
            where the token says), PinBlockedError, TokenRemovedError, TokenDeviceError.
        """
        try:
            self._open(USER, _as_text(pin, "PIN"))
        except p11.PinIncorrect as exc:
            raise self._wrong_pin() from exc
        except p11.PKCS11Error as exc:
            raise self._translate(exc, "C_Login", "logging in") from exc
        self._pin = pin

    def _wrong_pin(self) -> CardError:
        flags = self._token_flags()
        if flags & TokenFlag.USER_PIN_LOCKED:
            return PinBlockedError("the token says the PIN is now locked (CKF_USER_PIN_LOCKED)")
        if flags & TokenFlag.USER_PIN_FINAL_TRY:
            return InvalidPinError(1)
        return InvalidPinError(None, few_left=bool(flags & TokenFlag.USER_PIN_COUNT_LOW))

    def log_in_admin(self) -> None:
        """Write access. Most tokens write in the user's session: nothing is sent. libykcs11 writes
        only as security officer: ``C_Login(CKU_SO)`` with the management key in hex (signatures then
        log the PIN in for each operation, ``CKU_CONTEXT_SPECIFIC``, which libykcs11 allows).

        Raises:
            ManagementKeyError: no key configured, or the token refused it; ReadOnlyTokenError.
        """
        if not self.profile.so_writes or self._role == SO:
            self._admin_ok = True
            return
        if self._admin_key is None:
            raise ManagementKeyError("no management key (security officer PIN) is configured for this token",
                                     next_step=words.ADMIN_NEXT)
        so = Secret(self._admin_key.reveal().hex()) if self.profile.piv else _as_text(self._admin_key, "SO PIN")
        try:
            self._open(SO, so)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange) as exc:
            raise ManagementKeyError("the token refused the management key", next_step=words.ADMIN_NEXT) from exc
        except p11.PinLocked as exc:
            raise ManagementKeyError("the token's security officer PIN is locked", next_step=words.ADMIN_NEXT) from exc
        except p11.PKCS11Error as exc:
            raise self._translate(exc, "C_Login", "logging in as security officer") from exc
        finally:
            if so is not self._admin_key:
                so.wipe()
        self._admin_ok = True

    def _for_writing(self) -> pkcs11.Session:
        """The session to change the token in (SO on libykcs11, once :meth:`log_in_admin` was allowed).

        Raises:
            ReadOnlyTokenError: the token is write-protected (nothing is sent).
        """
        if self._write_protected:  # the token says so: nothing is sent
            raise ReadOnlyTokenError(f"the token '{self._info.label}' is write-protected (CKF_WRITE_PROTECTED)")
        if self.profile.so_writes and self._role != SO:
            if not self._admin_ok:
                raise ManagementKeyError("writing to this token needs the management key first",
                                         next_step=words.ADMIN_NEXT)
            self._admin_ok = False
            self.log_in_admin()
        return self._ensure_session()

    def _pin_for(self, always_authenticate: bool) -> Secret | None:
        """The PIN for a context-specific login, when the key or our SO session needs one."""
        if not (always_authenticate or self._role == SO):
            return None
        if self._pin is None:
            raise CardError("the key asks for the PIN before each use, and no PIN was given")
        return self._pin

    # -- reading ---------------------------------------------------------------------------------
    def card_identity(self) -> CardIdentity | None:
        """None: a PKCS#11 token has no CHUID (a PIV card's is not reachable through the module)."""
        return None

    def _logged_in(self) -> bool:
        """Whether private objects are visible now: logged in, or a token that needs no login."""
        return self._role != PUBLIC or not self._token.flags & TokenFlag.LOGIN_REQUIRED

    def _ref(self, key_id: bytes, label: str) -> KeyRef:
        return KeyRef(key_id, label, PIV_IDS.get(key_id) if self.profile.piv else None)

    def public_key(self, ref: KeyRef) -> PublicKeyTypes | None:
        """The public key at ``ref``: its public-key object, else what its private key shows (an RSA
        private key holds the modulus); None when neither says."""
        for cls in (ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY):
            for obj in self._find_objects(ref.key_id, cls):
                with self._mapped("C_GetAttributeValue", "reading a key"):
                    key = public_key_of(self._channel.attributes(obj, KEY_ATTRIBUTES))
                if key is not None:
                    return key
        return None

    # -- key generation --------------------------------------------------------------------------
    def generate_key(self, ref: KeyRef, key_type: KeyType) -> PublicKeyTypes:
        """``C_GenerateKeyPair`` at ``ref.key_id`` labelled ``ref.label``: a token object, private,
        sensitive, never extractable, signing (RSA also deciphering). Side by side the id must be
        unused (nothing is replaced); on a PIV card behind PKCS#11 the new key replaces the slot's.

        Raises:
            NotSupportedError (the token cannot make ``key_type``: nothing changed), ReadOnlyTokenError,
            TokenFullError, ManagementKeyError, CardError (the id is in use), BadResponseError.
        """
        if self._key_types is not None and key_type not in self._key_types:  # F13: asked before, nothing sent
            raise NotSupportedError(f"{words.not_supported_by_token(NAMES[key_type] + ' key generation')} "
                                    "(not among its mechanisms)")
        session = self._for_writing()
        if self.profile.piv and ref.key_id not in PIV_IDS:
            raise NotSupportedError(f"CKA_ID {ref.hex} is none of the PIV slots 9A, 9C, 9D, 9E on this card")
        if not self.profile.piv and self._find_objects(ref.key_id, None):
            raise CardError(f"the token already holds objects with CKA_ID {ref.hex}; nothing was changed")
        args = keypair_templates(key_type, ref.key_id, ref.label, self.profile)
        with self._mapped("C_GenerateKeyPair", f"{NAMES[key_type]} key generation"):
            public, _private = self._channel.generate_keypair(session, *args)
            attrs = self._channel.attributes(public, KEY_ATTRIBUTES)
        key = public_key_of(attrs)
        if key is None or KeyType.of(key) is not key_type:
            raise BadResponseError(f"the token made no {NAMES[key_type]} public key at CKA_ID {ref.hex}")
        return key


def _serial(token: Any) -> str:
    return bytes(token.serial).decode("ascii", "replace").strip()


def _as_text(secret: Secret, what: str) -> Secret:
    """``secret``, checked to be text: the binding sends a PIN as UTF-8.

    Raises:
        PinFormatError: not valid UTF-8 (nothing was sent, no try used).
    """
    if not secret.is_text:
        raise PinFormatError(f"the {what} is not valid text", next_step="Enter it again; no try was used.")
    return secret
