"""The software PIV card: in process (:class:`SoftPivCard`) or served to pcscd through vpcd.

It is a *test* card: its private keys live in its JSON state file.
"""

from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.state import CardState

__all__ = ["CardFaults", "CardState", "SoftPivCard"]
