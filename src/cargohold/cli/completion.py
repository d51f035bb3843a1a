"""Shell completion: the ``completion`` command that prints a shell's script, and what
arguments complete to: image names from the store (full and short forms), namespaces, paths."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from ..defaults import DEFAULT_NAMESPACE
from ..errors import CargoholdError
from ..oci.references import Reference
from ..operations.context import default_root
from ..operations.store import Store


def _store(ctx: click.Context) -> Store | None:
    """The store the command line names, opened to read; None when there is none (completion
    never creates a store, and never fails)."""
    root_ctx = ctx.find_root()
    root = root_ctx.params.get("root") or os.environ.get("CARGOHOLD_ROOT")
    namespace = root_ctx.params.get("namespace") or DEFAULT_NAMESPACE
    try:
        return Store(Path(root) if root else default_root(), namespace, "read")
    except (CargoholdError, sqlite3.Error):
        return None


def complete_images(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Image names of the store, in the form being typed: ``alp`` completes to the short
    ``alpine:3``, ``docker.io/l`` to the full ``docker.io/library/alpine:3``."""
    store = _store(ctx)
    if store is None:
        return []
    try:
        with store:
            names = [record.name for record in store.meta.list_images(store.namespace)]
    except (CargoholdError, sqlite3.Error):
        return []
    offered = dict.fromkeys(n for n in names if n.startswith(incomplete))
    for name in names:
        short = Reference.parse(name).familiar()
        if short != name and short.startswith(incomplete):
            offered.setdefault(short)
    return [CompletionItem(n) for n in offered]


def complete_namespaces(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The store's namespaces (``-n``)."""
    store = _store(ctx)
    if store is None:
        return []
    try:
        with store:
            names = [n.name for n in store.meta.namespaces()]
    except (CargoholdError, sqlite3.Error):
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_paths(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Files and directories: the shell completes them itself (an archive may be either)."""
    return [CompletionItem(incomplete, type="file")]


def complete_directories(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return [CompletionItem(incomplete, type="dir")]


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script (image names complete from the store).

    \b
      bash: eval "$(cargohold completion bash)"       (in ~/.bashrc)
      zsh:  eval "$(cargohold completion zsh)"        (in ~/.zshrc)
      fish: cargohold completion fish > ~/.config/fish/completions/cargohold.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None
    # The root command, from the context rather than by import: main loads this module.
    root = ctx.find_root().command
    click.echo(cls(root, {}, "cargohold", "_CARGOHOLD_COMPLETE").source())
