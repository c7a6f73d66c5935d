"""Text that is safe to print: names from input files never drive the terminal.

Layer, variant, network and trace names come from files a user may not have written. Printed raw, an escape
sequence in a name can recolour, move or clear the terminal, and a newline can forge an extra output line
(or a second error line). `printable` is the one helper that every command applies to what it prints: each
control, format or unassigned character (Unicode category C: ESC, BEL, carriage return, DEL, bidirectional
overrides, ...) becomes a visible escape in the JSON spelling, `\\u001b`, so the same text stays valid inside
a JSON string. Ordinary text, accents and CJK included, is unchanged. `first_line` is what an error line quotes of an
exception raised by a library (its message's first line, or its type's name when it has none).
"""

from __future__ import annotations

import unicodedata

_KEPT_IN_TEXT = frozenset("\n\t")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every Unicode category-C character escaped; with `keep_newlines`, line feeds and tabs
    (the structure of a multi-line table) are kept."""
    if text.isprintable() and (keep_newlines or "\n" not in text):
        return text
    kept = _KEPT_IN_TEXT if keep_newlines else frozenset()
    return "".join(
        char if char in kept or not unicodedata.category(char).startswith("C") else _escape(char) for char in text
    )


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def described(exc: BaseException) -> str:
    """`Type: first line of the message` (the type alone when the message is empty): for errors of other
    libraries, whose type says as much as their message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
