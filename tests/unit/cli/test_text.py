"""Text from archives made safe for a terminal: what is escaped, and what is left alone."""

from __future__ import annotations

import pytest

from cargohold.cli.text import terminal_safe


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),  # C0: ESC starts every control sequence
        ("a\nb\rc\td", "a\\nb\\rc\\td"),  # forged lines, overwritten lines, misaligned columns
        ("\x07\x00\x7f", "\\x07\\x00\\x7f"),  # BEL, NUL, DEL
        ("\x9b31m", "\\x9b31m"),  # C1 CSI: ESC [ in one character
        ("\u202eevil", "\\u202eevil"),  # bidi override
        ("\u2066x\u2069", "\\u2066x\\u2069"),  # bidi isolates
        ("a\u200db\u200ec\ufeff", "a\\u200db\\u200ec\\ufeff"),  # zero-width joiner, LRM, BOM
        ("a\u2028b", "a\\u2028b"),  # a line separator: str.splitlines() splits there
        ("a\u00a0b", "a\\xa0b"),  # a space that does not look like one
        ("\udcff", "\\udcff"),  # a lone surrogate (undecodable bytes)
    ],
)
def test_unprintable_characters_are_escaped(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


@pytest.mark.parametrize(
    "text",
    ["", "plain ascii", "C:\\path\\x1b", "café", "日本語", "עברית", "🚀", "[bold]markup[/]"],
)
def test_printable_text_is_unchanged(text: str) -> None:
    """Letters of every script stay readable; a backslash is not doubled (JSON is exact)."""
    assert terminal_safe(text) == text


def test_escaping_twice_changes_nothing() -> None:
    once = terminal_safe("\x1b]0;title\x07\u202e")
    assert terminal_safe(once) == once
