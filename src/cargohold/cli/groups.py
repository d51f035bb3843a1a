"""The kinds of click group the command line is made of: groups whose commands answer to
several names, and a table of commands each imported from its module only when looked up.

Loading on demand keeps ``cargohold --version`` and ``cargohold image ls`` from building every
command of every group: a group's module is imported when that group runs, or when the root's
help or shell completion needs its short help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import click


class AliasedGroup(click.Group):
    """A group whose commands answer to several names (``ls``/``list``, ``rm``/``del``…)."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases or {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name, each given as ``"module:attribute"`` (a module relative to
    *package*) and imported the first time it is looked up.

    It stands in for :attr:`click.Group.commands`, so everything that walks a group (click's
    help and completion, tests that list every command) sees every command, while listing
    the names imports nothing.
    """

    def __init__(self, package: str, specs: Mapping[str, str]) -> None:
        self._package = package
        self._entries: dict[str, click.Command | str] = dict(specs)

    def __getitem__(self, name: str) -> click.Command:
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._load(entry)
            self._entries[name] = entry
        return entry

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._entries[name] = command

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries  # without importing the command's module

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self, spec: str) -> click.Command:
        module_name, _, attribute = spec.partition(":")
        command = getattr(importlib.import_module(module_name, self._package), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{spec} is not a click command")
        return command
