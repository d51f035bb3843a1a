"""How the commands print: lines, JSON, tables, ``Name:  value`` fields and trees.

Every human-readable line passes through :func:`echo`, which escapes control and format
characters: names, labels and config fields come from archives and registries, and must not
be able to move the cursor, recolour the terminal or forge a line of output.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .text import terminal_safe
from .units import human_size

if TYPE_CHECKING:
    from ..oci.tree import TreeNode


def echo(line: str = "", err: bool = False) -> None:
    """One line of human-readable output, its control and format characters escaped."""
    click.echo(terminal_safe(line), err=err)


def warn(message: str) -> None:
    """A warning on stderr: the command goes on, and its exit status is not changed by it."""
    echo(f"cargohold: warning: {message}", err=True)


def print_json(value: object, err: bool = False) -> None:
    """JSON for scripts, as it is: escaping would change the values a script reads."""
    click.echo(json.dumps(value, indent=2), err=err)


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns two spaces apart, as ctr prints them (plain text: rich's table layout costs
    half a second for a thousand rows). Cells are escaped before they are measured."""
    table = [[terminal_safe(cell) for cell in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def fit_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    shrink: Sequence[tuple[int, int, bool]],
) -> list[list[str]]:
    """*rows* cut to print in *width* columns with :func:`print_rows`.

    *shrink* names the columns that may give room, in the order they give it, each as
    (index, narrowest width, cut at the left). A cut shows as "…"; a column cut at the left
    keeps its end (a name's tag). What no column may give is left: the row then overflows.
    """
    table = [[terminal_safe(cell) for cell in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    excess = sum(widths) + 2 * (len(columns) - 1) - width
    for index, narrowest, left in shrink:
        if excess <= 0:
            break
        target = max(narrowest, len(columns[index]), widths[index] - excess)
        excess -= widths[index] - target
        widths[index] = min(widths[index], target)
        for row in table[1:]:
            row[index] = _cut(row[index], widths[index], left)
    return table[1:]


def _cut(text: str, width: int, left: bool) -> str:
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :] if left else text[: width - 1] + "…"


def print_fields(fields: Sequence[tuple[str, str | Sequence[str]]], indent: int = 0) -> None:
    """``Name:  value`` lines; a list value is shown one item a line. Each item is escaped on
    its own, so a newline inside an item (an Env entry, a history line) cannot forge a line."""
    width = max(len(name) for name, _ in fields) + 2
    for name, value in fields:
        lines = [value] if isinstance(value, str) else list(value) or ["-"]
        echo(f"{' ' * indent}{name + ':':<{width}}{terminal_safe(lines[0])}")
        for line in lines[1:]:
            echo(f"{' ' * (indent + width)}{terminal_safe(line)}")


def print_tree(root: TreeNode) -> None:
    """An image's graph (index, manifests, configs, layers) as a tree, one node a line."""
    from rich.markup import escape  # rich is slow to import: only when a tree is shown
    from rich.tree import Tree

    def add(branch: Any, node: TreeNode) -> None:
        for child in node.children:
            add(branch.add(escape(_tree_label(child))), child)

    top = Tree(escape(_tree_label(root)))
    add(top, root)
    _render(top)


def _tree_label(node: TreeNode) -> str:
    """A node's line, escaped for the terminal (rich's markup is escaped by the caller)."""
    d = node.descriptor
    parts = [node.role]
    if d.platform is not None:
        parts.append(str(d.platform))
    parts += [str(d.digest), human_size(d.size), d.media_type]
    if not node.present:
        parts.append("(not in the store)")
    if node.problem:
        parts.append(f"(unreadable: {node.problem})")
    if node.repeated:
        parts.append("(listed above)")
    return terminal_safe("  ".join(parts))


def _render(renderable: object) -> None:
    """Print a rich renderable as plain text: no colour, no wrapping, no trailing blanks."""
    from rich.console import Console  # rich is slow to import: only when a tree is shown

    console = Console(width=100_000, highlight=False, color_system=None)
    with console.capture() as capture:
        console.print(renderable, crop=False, soft_wrap=True)
    for line in capture.get().splitlines():
        echo(line.rstrip())


def labels_text(labels: dict[str, str]) -> str:
    """Labels as one cell: ``k=v,k2=v2`` sorted by key, or ``-``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def json_or_dash(value: list[str] | None) -> str:
    """A config's list (Entrypoint, Cmd) as docker shows it: JSON, or ``-`` when unset."""
    return json.dumps(value) if value else "-"


def iso_utc(timestamp: float) -> str:
    """A timestamp as ISO 8601 in UTC, to the second."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(seconds: float) -> str:
    """A short relative age, as docker and ctr print them."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{max(int(seconds), 0)} seconds"
