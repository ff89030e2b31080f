"""Text from files and paths made safe to print: one line, no terminal escape sequences."""

from __future__ import annotations

from typing import Any

__all__ = ["printable"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: Any) -> str:
    """``text`` safe for a terminal or a one-line record: control characters (escape sequences,
    new lines, carriage returns) and other unprintable ones appear as ``\\xNN``/``\\uNNNN``;
    ordinary Unicode (accents, CJK) is kept."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)
