"""The panes of cardrenew, one module each, and the dialogs.

The names are imported on first use (PEP 562 ``__getattr__``), so that importing the logon pane
does not import the Card tab, Write Certificates and the renewal engine before the first frame.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULES = {
    "CardScreen": "tui.screens.card",
    "CompletedWithErrorsScreen": "tui.screens.done",
    "ErrorDialog": "tui.screens.dialogs",
    "LoggedOffScreen": "tui.screens.done",
    "LogonScreen": "tui.screens.logon",
    "MessageDialog": "tui.screens.dialogs",
    "NextDialog": "tui.screens.dialogs",
    "PinDialog": "tui.screens.dialogs",
    "TextDialog": "tui.screens.dialogs",
    "WriteCertificatesScreen": "tui.screens.write_certificates",
}

if TYPE_CHECKING:
    from tui.screens.card import CardScreen
    from tui.screens.dialogs import ErrorDialog, MessageDialog, NextDialog, PinDialog, TextDialog
    from tui.screens.done import CompletedWithErrorsScreen, LoggedOffScreen
    from tui.screens.logon import LogonScreen
    from tui.screens.write_certificates import WriteCertificatesScreen


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_MODULES)
