"""The python-pkcs11 binding as card.pkcs11 uses it: the loaded modules of this process, and every
binding call counted in PKCS#11 functions (``Pkcs11Token.calls``, the benchmark's "PKCS#11 calls").

A PKCS#11 module is initialised once per process (``C_Initialize`` a second time answers
``CKR_CRYPTOKI_ALREADY_INITIALIZED``, and ``C_Finalize`` ends every session of the process), so
:func:`open_module` shares one loaded module between the tokens that name the same path and
:func:`close_module` finalises it when the last one closes. We initialise with no arguments
(``C_Initialize(NULL)``: the module may assume one thread at a time, PKCS#11 v2.40 §5.4), so every
call into a module holds that module's lock — two readers' worker threads on one ykcs11 take turns.

Counting (python-pkcs11 0.10, read from its source and checked against OpenSC's pkcs11-spy by
``tests/pkcs11/test_call_counts.py``): each method of :class:`Channel` adds the PKCS#11 functions
the binding calls for it — e.g. a search is ``C_FindObjectsInit``, ``C_FindObjects`` until it
returns nothing, ``C_FindObjectsFinal``, and two ``C_GetAttributeValue`` per object found (the
binding reads each object's class and capabilities to build its Python object). A call that fails
is counted as if it ran whole (an upper bound).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Attribute, Mechanism, MechanismFlag
from pkcs11.exceptions import PKCS11Error

from card.config_errors import ModuleLoadError
from card.secret import Secret

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Lib

SEARCH_BATCH = 64
"""Object handles asked for per ``C_FindObjects`` (a token holds a few dozen objects at most)."""


@dataclass
class LoadedModule:
    """One PKCS#11 module loaded in this process (``C_GetFunctionList``, ``C_Initialize``, ``C_GetInfo``)."""

    path: str
    lib: Lib
    refs: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    """Held for every call into the module (C_Initialize(NULL): one thread at a time)."""
    logins: dict[int, int] = field(default_factory=dict)
    """Slot id → how many of this process's tokens hold its (one, process-wide) login."""
    parked: list[Any] = field(default_factory=list)
    """Logged-in sessions whose close would log the other tokens out: left to ``C_Finalize``."""

    @property
    def manufacturer(self) -> str:
        """``CK_INFO.manufacturerID`` of the library (e.g. ``"Yubico (www.yubico.com)"``)."""
        return str(self.lib.manufacturer_id).strip()


_MODULES: dict[str, LoadedModule] = {}
_MODULES_LOCK = threading.Lock()
LOAD_CALLS = 3
"""``C_GetFunctionList``, ``C_Initialize``, ``C_GetInfo`` (a 3.0 module adds ``C_GetInterface``,
which the binding resolves as a symbol; not counted)."""


def open_module(path: str) -> tuple[LoadedModule, int]:
    """The module at ``path``, loaded and initialised unless this process has it already.

    Returns:
        The module and the PKCS#11 calls this made (3 when it was loaded now, else 0).

    Raises:
        ModuleLoadError: no such file, not a shared library, no ``C_GetFunctionList``, or
            ``C_Initialize`` / ``C_GetInfo`` failed (the message names the path and why).
    """
    with _MODULES_LOCK:
        module = _MODULES.get(path)
        calls = 0
        if module is None:
            try:
                lib = pkcs11.lib(path)
            except PKCS11Error as exc:
                raise ModuleLoadError(path, _load_reason(exc)) from exc
            module = _MODULES[path] = LoadedModule(path, lib)
            calls = LOAD_CALLS
        module.refs += 1
        return module, calls


def _load_reason(exc: PKCS11Error) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "cannot open shared object file" in text or "No such file" in text:
        return "no such file"
    if "C_GetFunctionList" in text or "undefined symbol" in text:
        return "not a PKCS#11 library: it has no C_GetFunctionList"
    if "Is a directory" in text:
        return "it is a directory, not a library"
    if "invalid ELF header" in text or "file too short" in text:
        return "not a shared library"
    return text.removeprefix("OS exception while loading ")


def close_module(module: LoadedModule) -> int:
    """Drop one user of ``module``; the last one finalises and unloads it. Returns the calls made (0 or 1)."""
    with _MODULES_LOCK:
        module.refs -= 1
        if module.refs > 0:
            return 0
        _MODULES.pop(module.path, None)
        with module.lock:
            pkcs11.unload(module.path)  # C_Finalize, then dlclose; the binding forgets its copy
        return 1


class Channel:
    """The binding calls of one token, counted in PKCS#11 functions (:attr:`calls`), each under
    the module's lock. Binding exceptions pass through unchanged (card.pkcs11.errors maps them)."""

    def __init__(self, module: LoadedModule, calls: int = 0) -> None:
        self.module = module
        self.calls = calls

    @contextmanager
    def _call(self, functions: int) -> Iterator[None]:
        self.calls += functions
        with self.module.lock:
            yield

    # -- slots and tokens ----------------------------------------------------------------------
    def slots(self) -> list[pkcs11.Slot]:
        """Every slot (``C_GetSlotList`` twice, ``C_GetSlotInfo`` per slot)."""
        with self._call(2):
            slots: list[pkcs11.Slot] = self.module.lib.get_slots()
        self.calls += len(slots) - (1 if not slots else 0)
        return slots

    def token(self, slot: pkcs11.Slot) -> pkcs11.Token:
        """The slot's token (``C_GetTokenInfo``): label, serial, flags as they are now."""
        with self._call(1):
            return slot.get_token()

    def mechanisms(self, slot: pkcs11.Slot) -> set[Mechanism]:
        """The slot's mechanisms (``C_GetMechanismList`` for the count, then the list; once if none)."""
        with self._call(2):
            mechanisms = set(slot.get_mechanisms())
        self.calls -= not mechanisms
        return mechanisms

    # -- sessions ------------------------------------------------------------------------------
    def open(self, token: pkcs11.Token, *, rw: bool, user: Secret | None = None,
             so: Secret | None = None) -> pkcs11.Session:
        """``C_OpenSession`` (+ ``C_Login`` as user or SO when a secret is given; it is revealed
        here, in the binding call that sends it: the binding takes a ``str`` and sends it as UTF-8)."""
        with self._call(1 + (user is not None or so is not None)):
            return token.open(rw=rw, user_pin=_reveal(user), so_pin=_reveal(so))

    def close(self, session: pkcs11.Session) -> None:
        """``C_Logout`` when the session logged in, then ``C_CloseSession``."""
        logged_in = getattr(session, "user_type", pkcs11.UserType.NOBODY) != pkcs11.UserType.NOBODY
        with self._call(1 + logged_in):
            session.close()

    # -- objects -------------------------------------------------------------------------------
    def find(self, session: pkcs11.Session, template: Mapping[Attribute, Any]) -> list[Any]:
        """Every object matching ``template`` (see the module docstring for the count)."""
        with self._call(2):
            found = list(session.get_objects(dict(template), batch_size=SEARCH_BATCH))  # type: ignore[call-arg]  # the binding's get_objects takes batch_size (0.10 _pkcs11.pyx); its stub omits it
        self.calls += math.ceil(len(found) / SEARCH_BATCH) + 1 + 2 * len(found)
        return found

    def attributes(self, obj: Any, keys: list[Attribute]) -> dict[Attribute, Any]:
        """The attributes of ``obj`` the token has (``C_GetAttributeValue`` for the lengths, then the values)."""
        with self._call(2):
            return dict(obj.get_attributes(keys))

    def create(self, session: pkcs11.Session, template: Mapping[Attribute, Any]) -> Any:
        """``C_CreateObject`` (+ 2 to read the new object's class)."""
        with self._call(3):
            return session.create_object(dict(template))

    def destroy(self, obj: Any) -> None:
        """``C_DestroyObject``."""
        with self._call(1):
            obj.destroy()

    def set_attribute(self, obj: Any, key: Attribute, value: Any) -> None:
        """``C_SetAttributeValue`` of one attribute."""
        with self._call(1):
            obj[key] = value

    def generate_keypair(self, session: pkcs11.Session, key_type: pkcs11.KeyType, key_length: int | None,
                         capabilities: MechanismFlag, public: Mapping[Attribute, Any],
                         private: Mapping[Attribute, Any]) -> tuple[Any, Any]:
        """``C_GenerateKeyPair`` (+ 2 per new object to read its class): (public key, private key)."""
        with self._call(5):
            return session.generate_keypair(key_type, key_length, store=True, capabilities=capabilities,
                                            public_template=dict(public), private_template=dict(private))

    # -- private-key operations ----------------------------------------------------------------
    def sign(self, key: Any, data: bytes, mechanism: Mechanism, pin: Secret | None) -> bytes:
        """``C_GetAttributeValue`` twice (the binding reads the key's ``CKA_KEY_TYPE``), ``C_SignInit``
        (+ ``C_Login(CKU_CONTEXT_SPECIFIC)`` with ``pin``), ``C_Sign`` twice (length, then value)."""
        with self._call(5 + (pin is not None)):
            return bytes(key.sign(data, mechanism=mechanism, pin=_reveal(pin)))

    def decrypt(self, key: Any, data: bytes, mechanism: Mechanism, pin: Secret | None) -> bytes:
        """``C_GetAttributeValue`` twice (``CKA_KEY_TYPE``), ``C_DecryptInit`` (+ context-specific
        ``C_Login``), ``C_Decrypt`` twice."""
        with self._call(5 + (pin is not None)):
            return bytes(key.decrypt(data, mechanism=mechanism, pin=_reveal(pin)))


def _reveal(secret: Secret | None) -> str | None:
    """The secret as python-pkcs11 takes it: a ``str`` it encodes as UTF-8 (the caller checked
    :attr:`~card.secret.Secret.is_text`). That short-lived ``str`` is the one copy outside the
    Secret; CPython cannot wipe it."""
    return None if secret is None else secret.reveal_text()
