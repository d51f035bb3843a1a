"""Shell completion: the ``completion`` command that prints a shell's script, and the
completion of image names from the store."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from ..errors import CargoholdError
from ..operations.context import DEFAULT_NAMESPACE, default_root
from ..operations.store import Store


def complete_images(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Image names of the store for shell completion; never creates a store."""
    root_ctx = ctx.find_root()
    root = root_ctx.params.get("root") or os.environ.get("CARGOHOLD_ROOT")
    namespace = root_ctx.params.get("namespace") or DEFAULT_NAMESPACE
    path = Path(root) if root else default_root()
    try:
        with Store(path, namespace, "read") as store:
            names = [info.name for info in store.meta.list_images(namespace)]
    except (CargoholdError, sqlite3.Error):
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


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
