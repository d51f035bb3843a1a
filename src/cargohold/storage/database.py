"""The SQLite connection under the metadata store: how it is opened, and its errors typed.

What a connection may do is said in its URI (create, write, read, or read an immutable file),
so no mode can create or change a store by accident. SQLite's exceptions say what went wrong
only in their text; :data:`typed_errors` turns them into :class:`MetadataError` and
:class:`StoreLockedError` (from :mod:`cargohold.errors`), so callers tell a lock timeout from a
damaged file by type.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from ..errors import CargoholdError, MetadataError, StoreLockedError

#: How long a process waits for another's write lock before it reports a lock timeout.
LOCK_TIMEOUT_SECONDS: Final = 120.0
#: SQLite's primary result codes that mean another connection holds a lock.
_LOCK_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def connect(
    path: Path, mode: Literal["ro", "rw", "rwc"], immutable: bool = False
) -> sqlite3.Connection:
    """A connection whose URI says what it may do: ``rwc`` creates the file, ``rw`` and
    ``ro`` only open an existing one."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"
    if immutable:
        uri += "&immutable=1"
    return sqlite3.connect(
        uri, uri=True, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )


def open_for_reading(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the database, for a user who may or may not write it.

    A user who may write the store opens it as usual with writes refused (``query_only``):
    the last connection to close then checkpoints and removes the write-ahead log as always.
    Otherwise it is opened read-only, which in WAL mode needs the ``-wal`` and ``-shm`` files
    to exist or be creatable. In a directory this user cannot write, with no ``-wal`` file
    (no writer has the store open, and every commit is in the database file), the file is
    opened as immutable: it is read without locks, which is safe while nobody writes.
    """
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        db = connect(path, "rw")
        db.execute("PRAGMA query_only=ON")
        return db
    db = connect(path, "ro")
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
        if path.with_name(path.name + "-wal").exists():
            raise
    return connect(path, "ro", immutable=True)


def typed(exc: sqlite3.Error) -> MetadataError:
    """The typed error for one of SQLite's: a lock held past the timeout (SQLite's busy and
    locked results), or any other failure of the database, with SQLite's own words."""
    code = getattr(exc, "sqlite_errorcode", None)  # absent on the module's own errors
    if code is not None and code & 0xFF in _LOCK_CODES:
        return StoreLockedError()
    return MetadataError(f"store metadata (metadata.db): {exc}")


class _TypedErrors(contextlib.ContextDecorator):
    """Raises SQLite's errors out of a block or a function as :func:`typed` errors."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, CargoholdError):
            raise typed(exc) from exc


#: Use as a decorator or in a ``with``: SQLite's errors leave as typed ones.
typed_errors: Final = _TypedErrors()
