"""The configuration's errors (DESIGN §8): a wrong file or value (:class:`ConfigError`, exit 2)
and a command called wrongly (:class:`UsageError`).

A leaf module: the configuration loader and the issuers' settings parsers
(:mod:`card.enrollment.registry`) both raise these, without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from card import words
from card.errors import CardError


class ConfigError(CardError):
    """The configuration file is missing, unreadable or holds a wrong value.

    ``path`` is the file the error is about (None: not known where it was raised); the message
    then starts with it (``/etc/cardrenew/config.toml: unknown key 'issuer.urll' …``) and the next
    step names it. :meth:`naming` adds it where it was not known.
    """

    title = "Configuration error"
    code = "CONFIG"
    next_step = "Fix the configuration file named in the message, or ask your administrator."

    def __init__(self, message: str = "", *, path: str | os.PathLike[str] | None = None,
                 next_step: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.detail = message
        if self.path is not None:
            message = f"{self.path}: {message}"
            if next_step is None:
                next_step = f"Fix the configuration file {self.path}, or ask your administrator."
        super().__init__(message, next_step=next_step)

    def naming(self, path: str | os.PathLike[str] | None) -> ConfigError:
        """This error naming the configuration file in use: ``path``, or — None — that no file was
        found and the built-in defaults apply. An error that names its file already, and a
        :class:`UsageError` (about the command line, not the file), are returned as they are."""
        if self.path is not None or isinstance(self, UsageError):
            return self
        if path is None:
            named = ConfigError(f"{self.detail} (no configuration file was found; the built-in defaults apply)",
                                next_step="Write a configuration file (--config PATH, $CARDRENEW_CONFIG, "
                                          "$XDG_CONFIG_HOME/cardrenew/config.toml or /etc/cardrenew/config.toml), "
                                          "or ask your administrator.")
            named.path = None
        else:
            named = ConfigError(self.detail, path=path)
        named.reference = self.reference
        named.__cause__ = self.__cause__
        return named


class UsageError(ConfigError):
    """The command was called wrongly (no PIN on standard input, confirmation needed)."""

    title = "Usage error"
    code = "USAGE"
    next_step = "See cardrenew --help."


class ModuleLoadError(ConfigError):
    """``[card] module`` cannot be loaded as a PKCS#11 library (no such file, not a shared library,
    no ``C_GetFunctionList``, ``C_Initialize`` failed); the message names the path (issue 14)."""

    title = "PKCS#11 module cannot be loaded"
    code = "MODULE"

    def __init__(self, module: str, reason: str) -> None:
        self.module = module
        super().__init__(words.module_not_loadable(module, reason), next_step=words.MODULE_NEXT)


class SeveralTokensError(ConfigError):
    """More than one token of the PKCS#11 module matches ``[card] token_label`` / ``token_serial``
    (or neither is set and the module shows several): cardrenew never guesses which to change."""

    title = "More than one token"
    code = "TOKENS"

    def __init__(self, module: str, seen: list[str]) -> None:
        self.module = module
        super().__init__(words.several_tokens(module, seen), next_step=words.SEVERAL_TOKENS_NEXT)
