"""Text from images and archives made safe to show on a terminal.

Names, labels, config fields, history lines, media types and member names are chosen by whoever
built the archive. Printed raw, an ESC starts a terminal control sequence (colours, cursor moves,
an OSC that sets the window title or a hyperlink, on some terminals worse), a carriage return
or newline forges lines, and a Unicode bidi override (U+202E) makes text read in another order
than it is stored. Every human-readable output therefore passes such text through
:func:`terminal_safe`; JSON output is left exact (``json.dumps`` escapes control characters
itself, and non-ASCII with its default ``ensure_ascii``).

This module imports nothing from cargohold, so the CLI and every progress renderer can use it.
"""

from __future__ import annotations

from typing import Final

_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    """*char* written as Python writes it in a string literal: ``\\n``, ``\\x1b``, ``\\u202e``."""
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    """*text* with every character Python deems unprintable escaped as ``repr`` would.

    That is C0 and C1 controls (ESC, CR, LF, TAB, BEL, CSI U+009B), DEL, the format characters
    (bidi embeddings, overrides and isolates, zero-width joiners, the BOM), line and paragraph
    separators, surrogates, private-use and unassigned code points, and spaces other than the
    ASCII one. Letters of every script, marks and symbols stay as they are. Backslashes are not
    doubled: the result is for reading, and ``--format json`` gives the exact value.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)
