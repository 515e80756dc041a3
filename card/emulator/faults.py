"""Fault injection for the software card: pull it after N commands or at a named renewal step,
delay chosen instructions (the demo's and the sweeps' switches)."""

from __future__ import annotations

from dataclasses import dataclass, field

from card.apdu import INS, KEY_REF_MANAGEMENT


class CardDropped(Exception):
    """Fault injection: the card has just been pulled (the server closes its connection)."""


FAULT_STEPS = ("select", "verify", "mgmt-auth", "generate", "sign", "put-data", "get-data")
"""Named renewal steps at which the card can be pulled (see :attr:`CardFaults.drop_at`)."""


@dataclass
class CardFaults:
    """Fault injection switches.

    Attributes:
        drop_after_apdus: process this many commands, then the card is gone (None: never).
        drop_at: pull the card when the N-th command of a named renewal step arrives, before
            it is applied: ``{"generate": 2}`` pulls it at the second GENERATE. Step names are
            :data:`FAULT_STEPS` (a chained command counts once).
        drop_at_put_data: shorthand for ``drop_at={"put-data": N}``.
        delays_s: seconds to sleep before answering, per INS byte (e.g. ``{0x47: 10.0}``).
        reinsert_after_s: after a fault-injected pull, put the card back after this many seconds
            unless it was re-inserted meanwhile (the demo's "the holder puts the card back").
    """

    drop_after_apdus: int | None = None
    drop_at: dict[str, int] = field(default_factory=dict)
    drop_at_put_data: int | None = None
    delays_s: dict[int, float] = field(default_factory=dict)
    reinsert_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.drop_at_put_data is not None:
            self.drop_at.setdefault("put-data", self.drop_at_put_data)
        unknown = set(self.drop_at) - set(FAULT_STEPS)
        if unknown:
            raise ValueError(f"unknown fault step(s) {sorted(unknown)}; choose from {', '.join(FAULT_STEPS)}")


_STEP_OF_INS: dict[int, str] = {INS.SELECT: "select", INS.GENERATE_ASYMMETRIC_KEY_PAIR: "generate",
                                INS.PUT_DATA: "put-data", INS.GET_DATA: "get-data"}


def fault_step(ins: int, p2: int, data: bytes) -> str | None:
    """The :data:`FAULT_STEPS` name of a (reassembled) command, or None."""
    if ins == INS.GENERAL_AUTHENTICATE:
        return "mgmt-auth" if p2 == KEY_REF_MANAGEMENT else "sign"
    if ins == INS.VERIFY:
        return "verify" if data else None
    return _STEP_OF_INS.get(ins)
