"""What every command gets from the root group: the store it works on, and how it reports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from ..errors import ReadOnlyStoreError
from .render import warn

if TYPE_CHECKING:
    from ..operations.store import Store
    from ..storage.metadata import StoreMode


class Context:
    """What every command needs: where the store is and how to report."""

    def __init__(self, root: str | None, namespace: str, debug: bool) -> None:
        self.root = root
        self.namespace = namespace
        self.debug = debug
        #: Rows of the store's metadata that listings left out (the root group's result
        #: callback turns them into exit status 1).
        self.unreadable: list[str] = []

    @contextmanager
    def store(self, mode: StoreMode) -> Iterator[Store]:
        """The store, opened for what the command does: to read (creates nothing, works for
        a user who may only read the store) or to write (creates it, needs write access).
        Each row of metadata a listing had to leave out is warned about as it closes."""
        # Here, not at the top: the root group loads this module for every command, and
        # --version and --help need no store.
        from ..operations.store import Store

        try:
            store = Store(self.root, self.namespace, mode)
        except ReadOnlyStoreError as exc:
            command = click.get_current_context().command_path
            raise ReadOnlyStoreError(f"{exc}: {command} needs write access") from None
        try:
            yield store
        finally:
            store.close()
            for message in store.meta.unreadable:
                warn(message)
            self.unreadable.extend(store.meta.unreadable)


#: Hands a command the :class:`Context` the root group made.
pass_context = click.make_pass_decorator(Context)
