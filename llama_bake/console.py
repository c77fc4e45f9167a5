"""Terminal output: highlighted on a terminal, plain bytes when piped (rich is imported only then)."""

from __future__ import annotations

import sys


def show(text: str, language: str, color: bool | None) -> None:
    if color is None:
        color = sys.stdout.isatty()
    if not color:
        sys.stdout.write(text)
        return
    from rich.console import Console
    from rich.syntax import Syntax

    Console(force_terminal=True).print(Syntax(text, language, word_wrap=False, background_color="default"))
