"""Values made on first use: :class:`Once` and the :class:`LazyIssuer` built on it.

The TUI uses them to make what is slow to make (an issuer, the demo's virtual card with its RSA
keys) on a worker thread after the first frame instead of before it (issue 7: start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # the issuers import cryptography; the TUI builds them after its first frame
    from card.enrollment.base import Issuer

T = TypeVar("T")


class Once(Generic[T]):
    """A value made by ``make()`` the first time :meth:`get` is called, on whichever thread calls it
    first; other threads wait for it. A failure is raised to that caller and ``make`` is tried again
    at the next call.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None
        self._made = False

    @property
    def made(self) -> bool:
        """True once the value exists (never blocks)."""
        return self._made

    def get(self) -> T:
        """The value, made now if it was not yet (blocks while another thread makes it)."""
        if self._made:
            return self._value  # type: ignore[return-value]  # made: it is a T (None only when T allows it)
        with self._lock:
            if not self._made:
                self._value = self._make()
                self._made = True
        return self._value


class LazyIssuer:
    """An :class:`~card.enrollment.base.Issuer` made on first use (``Once``): every attribute is
    the made issuer's, so the renewal engine cannot tell the difference. The first use is on the
    card thread (the renewal asks for the CA certificates), never before the TUI's first frame."""

    def __init__(self, make: Callable[[], Issuer] | Once[Issuer]) -> None:
        self._once = make if isinstance(make, Once) else Once(make)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_once":
            raise AttributeError(name)
        return getattr(self._once.get(), name)
