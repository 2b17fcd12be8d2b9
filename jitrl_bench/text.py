"""The shared text helpers, once. Text that can be written: every string from a model, a page or a game is made
valid Unicode where it enters.

A Python string can hold a lone UTF-16 surrogate (U+D800-U+DFFF) that UTF-8 cannot encode: `answer('\\ud83d')` read
by `ast`, a JSON reply's "\\ud83d" escape, a page's broken emoji. Such a string passes every check, then the
episode's commit fails with UnicodeEncodeError, and so does every resume that replays it. So parsers and env
observations pass their strings through `valid_text`, which joins a well-formed surrogate pair into its character and
replaces a lone surrogate with U+FFFD, and says how many it replaced (the caller records that).
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"
SURROGATE = re.compile("[\ud800-\udfff]")
PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
TEXT_CHARSET = frozenset(chr(c) for c in range(32, 127)) | frozenset("\n\t")
"""What env observations are made of (printable ASCII, newline, tab): see `clean_text`."""


def valid_text(text: str) -> tuple[str, int]:
    """`text` encodable as UTF-8 (pairs joined, lone surrogates → U+FFFD), and the number of lone ones replaced."""
    if text.isascii() or SURROGATE.search(text) is None:
        return text, 0
    joined = PAIR.sub(lambda m: m.group(0).encode("utf-16-le", "surrogatepass").decode("utf-16-le"), text)
    return SURROGATE.subn(REPLACEMENT, joined)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def clean_text(text: str, limit: int) -> str:
    """Text the observation space accepts: ASCII (accents folded), no control characters, stripped, at most `limit`."""
    text = unicodedata.normalize("NFKD", valid_text(text)[0].replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(c for c in text if c in TEXT_CHARSET)
    return text.strip()[:limit]


def action_key(action: str) -> str:
    """The name memory matches a command by across episodes: case and spacing do not matter."""
    return " ".join(action.lower().split())


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters (whitespace runs joined, an ellipsis where it was cut): for prompts."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
