"""The connection the metadata store's tables share, and its write transactions.

Each group of tables (images and namespaces, holdings, referrers, leases) is a class of its
own over this one connection; :class:`~cargohold.storage.metadata.MetadataStore` is all of
them, opened on one file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ReadOnlyStoreError
from .database import typed_errors
from .metadata_rows import StoreMode


class MetadataConnection:
    """The open SQLite connection (set by :class:`~cargohold.storage.metadata.MetadataStore`
    when it opens the file) and the transactions every table's writes run in."""

    path: Path
    mode: StoreMode
    #: One line for each row a listing left out because it cannot be read (named by its
    #: namespace and name); the other rows are listed.
    unreadable: list[str]
    _db: sqlite3.Connection

    @typed_errors
    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; it takes the store-wide write lock at its start.

        The methods that take its connection (*db*) run inside it: SQLite's errors leave it
        typed, as they leave every other public method.
        """
        with typed_errors, self._transaction() as db:
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """:meth:`transaction` with SQLite's errors as they are, for the methods here that
        handle some of them."""
        if self.mode == "read":
            raise ReadOnlyStoreError(f"{self.path} was opened for reading; this operation writes")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _has_referrers(self) -> bool:
        """Whether the ``referrers`` table exists: a store of an older format opened to read
        has none (a writer creates it with the schema)."""
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'referrers'"
        ).fetchone()
        return row is not None
