"""The panes of cardrenew, one module each, and the dialogs."""

from tui.screens.card import CardScreen
from tui.screens.dialogs import ErrorDialog, MessageDialog, NextDialog, PinDialog, TextDialog
from tui.screens.done import CompletedWithErrorsScreen, LoggedOffScreen
from tui.screens.logon import LogonScreen
from tui.screens.write_certificates import WriteCertificatesScreen

__all__ = [
    "CardScreen",
    "CompletedWithErrorsScreen",
    "ErrorDialog",
    "LoggedOffScreen",
    "LogonScreen",
    "MessageDialog",
    "NextDialog",
    "PinDialog",
    "TextDialog",
    "WriteCertificatesScreen",
]
