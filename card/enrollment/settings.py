"""What every issuer's settings offer (DESIGN §4, §8), and the ``[issuer]`` keys issuers share.

Each issuer type parses the ``[issuer]`` table into its own frozen settings type (see
:mod:`card.enrollment.registry`); the rest of the program needs of them only what
:class:`IssuerSettings` names. A light module: no cryptography is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from card.config_schema import get


class IssuerSettings(Protocol):
    """One issuer type's settings, read from ``[issuer]``; frozen."""

    issuer_type: ClassVar[str]
    """The ``type`` this issuer is registered under (``"local"``, ``"scep"``)."""

    @property
    def ca_fingerprint(self) -> str | None:
        """``issuer.ca_fingerprint``: the SHA-256 of the CA certificate's DER (lower-case hex, no
        separators), checked before anything changes on the card; None: not pinned."""
        ...


def read_ca_fingerprint(table: Mapping[str, Any]) -> str | None:
    """``issuer.ca_fingerprint`` as lower-case hex without ``:`` or spaces, or None when absent.

    Raises:
        ConfigError: it is not a string.
    """
    fp = get(table, "ca_fingerprint", str, "issuer")
    return fp.replace(":", "").replace(" ", "").lower() if fp is not None else None
