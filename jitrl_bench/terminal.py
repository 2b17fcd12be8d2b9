"""Lines for the terminal, printed as the text they hold: never read as Rich markup, never carrying control codes.

A message can hold anything a run or a server put in it: a path with `[/x]` in it (Rich markup would crash on it), a
`[link=...]` (markup would make it a link), a server's error text with escape sequences (they would recolour, move or
retitle the terminal). So every line the CLI prints goes through `say`: the text is a `rich.text.Text` (no markup),
with control characters and bidirectional overrides removed; only the label in front of it is styled.
"""

from __future__ import annotations

import os
import re

from rich.console import Console
from rich.text import Text

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters (tab and newline kept), DEL, and the marks that reorder text on screen."""


PIPE_WIDTH = 160
"""The width tables take when the output is a file or a pipe (a log, CI) and $COLUMNS is unset: Rich's 80 would wrap
a results table into cells of four characters."""


def console(stderr: bool = False) -> Console:
    """A console for the CLI: the terminal's width on a terminal, `PIPE_WIDTH` (or $COLUMNS) elsewhere."""
    made = Console(stderr=stderr)
    if not made.is_terminal and not os.environ.get("COLUMNS"):
        made.width = PIPE_WIDTH
    return made


def plain(text: str) -> str:
    """The text with nothing in it a terminal would act on."""
    return CONTROL.sub("", text)


def say(console: Console, text: str, label: str = "", style: str = "") -> None:
    """One message: `label` (e.g. "error:") in `style`, then the text, literally."""
    line = Text()
    if label:
        line.append(label, style=style)
        line.append(" ")
    line.append(plain(text))
    console.print(line, highlight=False, soft_wrap=True)


def cell(value: object) -> Text:
    """A table cell or title from data (a task name, a path), shown as text."""
    return Text(plain(str(value)))
