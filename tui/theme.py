"""The app's themes: Textual's dark theme, and a high-contrast one (``ui.theme``, ``--theme``)."""

from __future__ import annotations

from textual.theme import Theme

HIGH_CONTRAST = Theme(
    name="high-contrast",
    primary="#FFFF00", secondary="#00FFFF", accent="#00FFFF", foreground="#FFFFFF",
    background="#000000", surface="#000000", panel="#1A1A1A", boost="#333333",
    success="#00FF00", warning="#FFFF00", error="#FF4040", dark=True,
    luminosity_spread=0.0, text_alpha=1.0,
    variables={"text-muted": "#FFFFFF", "footer-key-foreground": "#FFFF00", "footer-description-foreground": "#FFFFFF",
               "input-selection-background": "#FFFF00 50%", "block-cursor-foreground": "#000000",
               "block-cursor-background": "#FFFF00", "border": "#FFFFFF",
               "button-color-foreground": "#000000", "button-foreground": "#FFFFFF",
               "button-focus-text-style": "bold underline"},
)
"""White and pure colours on black; nothing dimmed (``ui.theme = "high-contrast"`` or ``--theme``)."""

THEMES = {"default": "textual-dark", "high-contrast": HIGH_CONTRAST.name}
