"""The metadata store: image records and leases in SQLite.

SQLite in WAL mode gives several processes one consistent view with no server, and its write
lock is the store's one point of mutual exclusion: garbage collection holds it while it sweeps,
so an import that records a blob in its lease either does so before the sweep (and the blob is
kept) or after it (and sees the sweep's result).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .digests import Digest

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS images (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    annotations TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    partial INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS images_digest ON images (digest);
CREATE TABLE IF NOT EXISTS namespace_content (
    namespace TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_blobs (
    lease_id TEXT NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (lease_id, digest)
);
"""

#: How long a process waits for another's write lock before it reports a lock timeout.
LOCK_TIMEOUT_SECONDS: Final = 120.0


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One name in one namespace and the content it points at."""

    name: str
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    #: Imported with manifests of its index missing (``--skip-missing``).
    partial: bool = False


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    created_at: float
    labels: dict[str, str]
    images: int


class MetadataStore:
    """Image names per namespace, and the leases that protect content being written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(
            path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; it takes the store-wide write lock at its start."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- images --------------------------------------------------------------------------

    def get_image(self, namespace: str, name: str) -> ImageRecord | None:
        row = self._db.execute(
            "SELECT name, media_type, digest, size, annotations, labels, created_at, updated_at,"
            " partial"
            " FROM images WHERE namespace = ? AND name = ?",
            (namespace, name),
        ).fetchone()
        return _record(row) if row else None

    def list_images(self, namespace: str) -> list[ImageRecord]:
        rows = self._db.execute(
            "SELECT name, media_type, digest, size, annotations, labels, created_at, updated_at,"
            " partial"
            " FROM images WHERE namespace = ? ORDER BY name",
            (namespace,),
        ).fetchall()
        return [_record(row) for row in rows]

    def put_image(self, db: sqlite3.Connection, namespace: str, record: ImageRecord) -> None:
        """Create or replace a name inside the caller's transaction, keeping its creation time."""
        now = time.time()
        db.execute(
            "INSERT OR IGNORE INTO namespaces (name, created_at) VALUES (?, ?)", (namespace, now)
        )
        db.execute(
            "INSERT INTO images (namespace, name, media_type, digest, size, annotations, labels,"
            " created_at, updated_at, partial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (namespace, name) DO UPDATE SET media_type = excluded.media_type,"
            " digest = excluded.digest, size = excluded.size, annotations = excluded.annotations,"
            " labels = excluded.labels, updated_at = excluded.updated_at,"
            " partial = excluded.partial",
            (
                namespace,
                record.name,
                record.media_type,
                str(record.digest),
                record.size,
                _dump(record.annotations),
                _dump(record.labels),
                now,
                now,
                int(record.partial),
            ),
        )

    def delete_image(self, db: sqlite3.Connection, namespace: str, name: str) -> bool:
        cursor = db.execute(
            "DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name)
        )
        return cursor.rowcount > 0

    def all_images(self) -> list[tuple[str, ImageRecord]]:
        """Every image of every namespace, as (namespace, record)."""
        rows = self._db.execute(
            "SELECT namespace, name, media_type, digest, size, annotations, labels, created_at,"
            " updated_at, partial FROM images ORDER BY namespace, name"
        ).fetchall()
        return [(row[0], _record(row[1:])) for row in rows]

    def set_labels(
        self, db: sqlite3.Connection, namespace: str, name: str, labels: dict[str, str]
    ) -> bool:
        cursor = db.execute(
            "UPDATE images SET labels = ?, updated_at = ? WHERE namespace = ? AND name = ?",
            (_dump(labels), time.time(), namespace, name),
        )
        return cursor.rowcount > 0

    # -- namespaces ----------------------------------------------------------------------

    def namespaces(self) -> list[Namespace]:
        rows = self._db.execute(
            "SELECT n.name, n.created_at, n.labels, COUNT(i.name) FROM namespaces n"
            " LEFT JOIN images i ON i.namespace = n.name GROUP BY n.name ORDER BY n.name"
        ).fetchall()
        return [
            Namespace(name, created, json.loads(labels), count)
            for name, created, labels, count in rows
        ]

    def create_namespace(self, db: sqlite3.Connection, name: str) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO namespaces (name, created_at) VALUES (?, ?)", (name, time.time())
        )
        return cursor.rowcount > 0

    def delete_namespace(self, db: sqlite3.Connection, name: str) -> bool:
        cursor = db.execute("DELETE FROM namespaces WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def release_namespace(self, db: sqlite3.Connection, name: str) -> None:
        """Forget the content a namespace holds (it is being removed)."""
        db.execute("DELETE FROM namespace_content WHERE namespace = ?", (name,))

    def count_images(self, namespace: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM images WHERE namespace = ?", (namespace,)
        ).fetchone()
        return int(row[0])

    def all_targets(self) -> list[tuple[str, Digest]]:
        """(media type, digest) of every image in every namespace: the roots of collection."""
        rows = self._db.execute("SELECT DISTINCT media_type, digest FROM images").fetchall()
        return [(media_type, Digest.parse(digest)) for media_type, digest in rows]

    # -- content each namespace holds ----------------------------------------------------

    def holds(self, namespace: str, digest: Digest) -> bool:
        """Whether *namespace* holds *digest*: it received the blob's bytes (an import or pull
        into it verified them) and has not released it since."""
        row = self._db.execute(
            "SELECT 1 FROM namespace_content WHERE namespace = ? AND digest = ?",
            (namespace, str(digest)),
        ).fetchone()
        return row is not None

    def hold(self, db: sqlite3.Connection, namespace: str, digests: Iterable[Digest]) -> None:
        """Record, inside the caller's transaction, that *namespace* holds *digests*."""
        db.executemany(
            "INSERT OR IGNORE INTO namespace_content (namespace, digest) VALUES (?, ?)",
            [(namespace, str(d)) for d in digests],
        )

    def set_holdings(self, db: sqlite3.Connection, namespace: str, digests: set[Digest]) -> None:
        """Make *digests* exactly what *namespace* holds (what gc found its images reach)."""
        held = self.holdings(namespace)
        wanted = {str(d) for d in digests}
        db.executemany(
            "DELETE FROM namespace_content WHERE namespace = ? AND digest = ?",
            [(namespace, d) for d in held - wanted],
        )
        db.executemany(
            "INSERT OR IGNORE INTO namespace_content (namespace, digest) VALUES (?, ?)",
            [(namespace, d) for d in wanted - held],
        )

    def holdings(self, namespace: str) -> set[str]:
        rows = self._db.execute(
            "SELECT digest FROM namespace_content WHERE namespace = ?", (namespace,)
        )
        return {row[0] for row in rows}

    def holding_namespaces(self) -> list[str]:
        """Every namespace that holds content or has images (those with neither hold nothing)."""
        rows = self._db.execute(
            "SELECT namespace FROM namespace_content UNION SELECT namespace FROM images ORDER BY 1"
        )
        return [row[0] for row in rows]

    def release_content(self, db: sqlite3.Connection, digests: Iterable[Digest]) -> None:
        """Forget blobs in every namespace (they were deleted from the disk)."""
        db.executemany(
            "DELETE FROM namespace_content WHERE digest = ?", [(str(d),) for d in digests]
        )

    def namespace_targets(self, namespace: str) -> list[tuple[str, Digest]]:
        """(media type, digest) of every image of *namespace*: the roots of what it holds."""
        rows = self._db.execute(
            "SELECT DISTINCT media_type, digest FROM images WHERE namespace = ?", (namespace,)
        ).fetchall()
        return [(media_type, Digest.parse(digest)) for media_type, digest in rows]

    # -- leases --------------------------------------------------------------------------

    @contextmanager
    def _lease_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write that need not survive a power loss: a lease only matters while its process
        lives, and a lost lease row is as good as a dead one. Without the fsync of every
        commit, protecting each blob of an archive costs microseconds, not milliseconds.
        The next ordinary commit makes these durable too (they are earlier in the log)."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.transaction() as db:
                yield db
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def create_lease(self, lease_id: str) -> None:
        with self._lease_transaction() as db:
            db.execute("INSERT INTO leases (id, created_at) VALUES (?, ?)", (lease_id, time.time()))

    def add_to_lease(self, lease_id: str, digests: list[Digest]) -> None:
        with self._lease_transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO lease_blobs (lease_id, digest) VALUES (?, ?)",
                [(lease_id, str(d)) for d in digests],
            )

    def delete_lease(self, db: sqlite3.Connection, lease_id: str) -> None:
        db.execute("DELETE FROM leases WHERE id = ?", (lease_id,))

    def end_lease(self, lease_id: str) -> None:
        """Delete a lease in its own transaction, also on a disk that has just run full.

        When the write fails, the write-ahead log is checkpointed into the database and
        truncated, which gives the deletion room to be written again, and it is retried once.
        """
        try:
            with self.transaction() as db:
                self.delete_lease(db, lease_id)
        except sqlite3.OperationalError:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            with self.transaction() as db:
                self.delete_lease(db, lease_id)

    def lease_ids(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT id FROM leases ORDER BY id")]

    def leased_digests(self, lease_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for lease_id in lease_ids:
            rows = self._db.execute(
                "SELECT digest FROM lease_blobs WHERE lease_id = ?", (lease_id,)
            )
            found.update(row[0] for row in rows)
        return found


def _dump(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _record(row: tuple[Any, ...]) -> ImageRecord:
    name, media_type, digest, size, annotations, labels, created_at, updated_at, partial = row
    return ImageRecord(
        name=name,
        media_type=media_type,
        digest=Digest.parse(digest),
        size=size,
        annotations=json.loads(annotations),
        labels=json.loads(labels),
        created_at=created_at,
        updated_at=updated_at,
        partial=bool(partial),
    )
