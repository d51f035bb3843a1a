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
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from ..errors import CargoholdError, CorruptMetadataError, ReadOnlyStoreError
from ..oci.digests import Digest
from ..oci.mediatypes import Descriptor
from ..oci.referrers import Referrer
from .database import connect, open_for_reading, typed_errors

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
CREATE TABLE IF NOT EXISTS referrers (
    namespace TEXT NOT NULL,
    subject TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    artifact_type TEXT NOT NULL DEFAULT '',
    annotations TEXT NOT NULL DEFAULT '{}',
    kind TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (namespace, subject, digest)
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
CREATE TABLE IF NOT EXISTS resumable_leases (
    id TEXT PRIMARY KEY REFERENCES leases (id) ON DELETE CASCADE,
    archive TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

#: How a store is opened. ``"read"`` creates, migrates and writes nothing, and works for a
#: user who may only read the store; ``"write"`` creates the store and its schema if needed.
StoreMode = Literal["read", "write"]


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

    @typed_errors
    def __init__(self, path: Path, mode: StoreMode = "write") -> None:
        self.path = path
        self.mode: StoreMode = mode
        #: One line for each row a listing left out because it cannot be read (named by its
        #: namespace and name); the other rows are listed.
        self.unreadable: list[str] = []
        if mode == "read":
            self._db = open_for_reading(path)
            return
        self._db = connect(path, "rwc")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

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

    # -- images --------------------------------------------------------------------------

    @typed_errors
    def get_image(self, namespace: str, name: str) -> ImageRecord | None:
        row = self._db.execute(
            "SELECT name, media_type, digest, size, annotations, labels, created_at, updated_at,"
            " partial"
            " FROM images WHERE namespace = ? AND name = ?",
            (namespace, name),
        ).fetchone()
        return _record(namespace, row) if row else None

    @typed_errors
    def list_images(self, namespace: str) -> list[ImageRecord]:
        rows = self._db.execute(
            "SELECT name, media_type, digest, size, annotations, labels, created_at, updated_at,"
            " partial"
            " FROM images WHERE namespace = ? ORDER BY name",
            (namespace,),
        ).fetchall()
        return [record for _, record in self._readable((namespace, *row) for row in rows)]

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

    @typed_errors
    def all_images(self) -> list[tuple[str, ImageRecord]]:
        """Every image of every namespace, as (namespace, record)."""
        rows = self._db.execute(
            "SELECT namespace, name, media_type, digest, size, annotations, labels, created_at,"
            " updated_at, partial FROM images ORDER BY namespace, name"
        ).fetchall()
        return list(self._readable(rows))

    def _readable(self, rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, ImageRecord]]:
        """(namespace, record) of the rows that can be read; the others are noted in
        :attr:`unreadable`, so one damaged row does not hide the rest of a listing."""
        for row in rows:
            try:
                yield row[0], _record(row[0], row[1:])
            except CorruptMetadataError as exc:
                self.unreadable.append(str(exc))

    def set_labels(
        self, db: sqlite3.Connection, namespace: str, name: str, labels: dict[str, str]
    ) -> bool:
        cursor = db.execute(
            "UPDATE images SET labels = ?, updated_at = ? WHERE namespace = ? AND name = ?",
            (_dump(labels), time.time(), namespace, name),
        )
        return cursor.rowcount > 0

    # -- namespaces ----------------------------------------------------------------------

    @typed_errors
    def namespaces(self) -> list[Namespace]:
        rows = self._db.execute(
            "SELECT n.name, n.created_at, n.labels, COUNT(i.name) FROM namespaces n"
            " LEFT JOIN images i ON i.namespace = n.name GROUP BY n.name ORDER BY n.name"
        ).fetchall()
        found = []
        for name, created, labels, count in rows:
            what = f"metadata.db: namespace {name!r}"
            try:
                if not isinstance(created, (int, float)):
                    raise CorruptMetadataError(f"{what}: invalid creation time {created!r}")
                found.append(Namespace(name, created, _labels(labels, f"{what}: labels"), count))
            except CorruptMetadataError as exc:
                self.unreadable.append(str(exc))
        return found

    def create_namespace(self, db: sqlite3.Connection, name: str) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO namespaces (name, created_at) VALUES (?, ?)", (name, time.time())
        )
        return cursor.rowcount > 0

    def delete_namespace(self, db: sqlite3.Connection, name: str) -> bool:
        cursor = db.execute("DELETE FROM namespaces WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def release_namespace(self, db: sqlite3.Connection, name: str) -> None:
        """Forget the content a namespace holds, and the referrers it keeps (it is being
        removed)."""
        db.execute("DELETE FROM namespace_content WHERE namespace = ?", (name,))
        db.execute("DELETE FROM referrers WHERE namespace = ?", (name,))

    @typed_errors
    def count_images(self, namespace: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM images WHERE namespace = ?", (namespace,)
        ).fetchone()
        return int(row[0])

    @typed_errors
    def all_targets(self) -> list[tuple[str, Digest]]:
        """(media type, digest) of every image in every namespace: the roots of collection.
        A row whose digest cannot be read stops collection, which would otherwise free the
        content of that image."""
        rows = self._db.execute("SELECT namespace, name, media_type, digest FROM images")
        targets = set()
        for namespace, name, media_type, digest in rows:
            targets.add((media_type, _digest(digest, _row_name(namespace, name))))
        return sorted(targets, key=lambda t: (t[0], str(t[1])))

    # -- content each namespace holds ----------------------------------------------------

    @typed_errors
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

    @typed_errors
    def holdings(self, namespace: str) -> set[str]:
        rows = self._db.execute(
            "SELECT digest FROM namespace_content WHERE namespace = ?", (namespace,)
        )
        return {row[0] for row in rows}

    @typed_errors
    def holding_namespaces(self) -> list[str]:
        """Every namespace that holds content or has images (those with neither hold nothing)."""
        rows = self._db.execute(
            "SELECT namespace FROM namespace_content UNION SELECT namespace FROM images"
            + (" UNION SELECT namespace FROM referrers" if self._has_referrers() else "")
            + " ORDER BY 1"
        )
        return [row[0] for row in rows]

    def release_content(self, db: sqlite3.Connection, digests: Iterable[Digest]) -> None:
        """Forget blobs in every namespace (they were deleted from the disk)."""
        db.executemany(
            "DELETE FROM namespace_content WHERE digest = ?", [(str(d),) for d in digests]
        )

    @typed_errors
    def namespace_targets(self, namespace: str) -> list[tuple[str, Digest]]:
        """(media type, digest) of every image of *namespace*: the roots of what it holds.
        A row whose digest cannot be read stops collection, which would otherwise free the
        content of that image."""
        rows = self._db.execute(
            "SELECT name, media_type, digest FROM images WHERE namespace = ?", (namespace,)
        )
        targets = {(t, _digest(d, _row_name(namespace, name))) for name, t, d in rows}
        return sorted(targets, key=lambda t: (t[0], str(t[1])))

    # -- referrers: artifacts kept for a subject (see cargohold.oci.referrers) ------------

    def put_referrers(
        self, db: sqlite3.Connection, namespace: str, referrers: Iterable[Referrer]
    ) -> None:
        """Record, inside the caller's transaction, that *namespace* keeps *referrers*."""
        db.executemany(
            "INSERT OR REPLACE INTO referrers (namespace, subject, digest, media_type, size,"
            " artifact_type, annotations, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    namespace,
                    str(r.subject),
                    str(r.digest),
                    r.descriptor.media_type,
                    r.descriptor.size,
                    r.descriptor.artifact_type or "",
                    _dump(dict(r.descriptor.annotations)),
                    r.kind,
                )
                for r in referrers
            ],
        )

    @typed_errors
    def referrers(self, namespace: str, subject: Digest | None = None) -> list[Referrer]:
        """The referrers *namespace* keeps (of *subject*, or all), sorted by subject and digest.
        A store of an older format opened to read has none."""
        if not self._has_referrers():
            return []
        query = (
            "SELECT subject, digest, media_type, size, artifact_type, annotations, kind"
            " FROM referrers WHERE namespace = ?"
        )
        params: tuple[str, ...] = (namespace,)
        if subject is not None:
            query += " AND subject = ?"
            params = (namespace, str(subject))
        rows = self._db.execute(query + " ORDER BY subject, digest", params).fetchall()
        return [_referrer(namespace, row) for row in rows]

    def prune_referrers(
        self, db: sqlite3.Connection, namespace: str, reached: Collection[Digest]
    ) -> int:
        """Forget the referrers of subjects *namespace* no longer reaches; returns how many."""
        gone = [r for r in self.referrers(namespace) if r.subject not in reached]
        db.executemany(
            "DELETE FROM referrers WHERE namespace = ? AND subject = ? AND digest = ?",
            [(namespace, str(r.subject), str(r.digest)) for r in gone],
        )
        return len(gone)

    def _has_referrers(self) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'referrers'"
        ).fetchone()
        return row is not None

    # -- leases --------------------------------------------------------------------------

    @contextmanager
    def _lease_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write that need not survive a power loss: a lease only matters while its process
        lives, and a lost lease row is as good as a dead one. Without the fsync of every
        commit, protecting each blob of an archive costs microseconds, not milliseconds.
        The next ordinary commit makes these durable too (they are earlier in the log)."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction() as db:
                yield db
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    @typed_errors
    def create_lease(self, lease_id: str) -> None:
        with self._lease_transaction() as db:
            db.execute("INSERT INTO leases (id, created_at) VALUES (?, ?)", (lease_id, time.time()))

    @typed_errors
    def add_to_lease(self, lease_id: str, digests: list[Digest]) -> None:
        with self._lease_transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO lease_blobs (lease_id, digest) VALUES (?, ?)",
                [(lease_id, str(d)) for d in digests],
            )

    def delete_lease(self, db: sqlite3.Connection, lease_id: str) -> None:
        db.execute("DELETE FROM leases WHERE id = ?", (lease_id,))

    @typed_errors
    def end_lease(self, lease_id: str) -> None:
        """Delete a lease in its own transaction, also on a disk that has just run full.

        When the write fails, the write-ahead log is checkpointed into the database and
        truncated, which gives the deletion room to be written again, and it is retried once.
        """
        try:
            with self._transaction() as db:
                self.delete_lease(db, lease_id)
        except sqlite3.OperationalError:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            with self._transaction() as db:
                self.delete_lease(db, lease_id)

    @typed_errors
    def keep_resumable(self, lease_id: str, archive: str) -> None:
        """Create (or take over) the lease of a resumable import of *archive*: unlike other
        leases it outlives its process, until it is older than gc's age for them."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO leases (id, created_at) VALUES (?, ?)",
                (lease_id, time.time()),
            )
            db.execute(
                "INSERT OR REPLACE INTO resumable_leases (id, archive, updated_at)"
                " VALUES (?, ?, ?)",
                (lease_id, archive, time.time()),
            )

    @typed_errors
    def touch_resumable(self, lease_id: str) -> None:
        """A resumable import made progress: its age starts again."""
        with self._lease_transaction() as db:
            db.execute(
                "UPDATE resumable_leases SET updated_at = ? WHERE id = ?", (time.time(), lease_id)
            )

    @typed_errors
    def resumable_leases(self) -> dict[str, tuple[str, float]]:
        """The resumable imports' leases: id → (archive, time of their last progress)."""
        try:
            rows = self._db.execute("SELECT id, archive, updated_at FROM resumable_leases")
            return {row[0]: (str(row[1]), float(row[2])) for row in rows}
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store no version with volumes has written
                return {}
            raise

    @typed_errors
    def lease_ids(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT id FROM leases ORDER BY id")]

    @typed_errors
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


def _row_name(namespace: object, name: object) -> str:
    return f"metadata.db: image {name!r} of namespace {namespace!r}"


def _record(namespace: object, row: Sequence[Any]) -> ImageRecord:
    """An image row; one that cannot be read (edited by hand, damaged) raises an error that
    names it rather than an internal error."""
    name, media_type, digest, size, annotations, labels, created_at, updated_at, partial = row
    what = _row_name(namespace, name)
    if not isinstance(name, str) or not name or not isinstance(media_type, str):
        raise CorruptMetadataError(f"{what}: the name or media type is not text")
    if not isinstance(size, int) or size < 0:
        raise CorruptMetadataError(f"{what}: invalid size {size!r}")
    if not all(isinstance(t, (int, float)) for t in (created_at, updated_at)):
        raise CorruptMetadataError(f"{what}: invalid timestamps {created_at!r}, {updated_at!r}")
    return ImageRecord(
        name=name,
        media_type=media_type,
        digest=_digest(digest, what),
        size=size,
        annotations=_labels(annotations, f"{what}: annotations"),
        labels=_labels(labels, f"{what}: labels"),
        created_at=created_at,
        updated_at=updated_at,
        partial=bool(partial),
    )


def _digest(value: object, what: str) -> Digest:
    try:
        return Digest.parse(value)
    except CargoholdError as exc:
        raise CorruptMetadataError(f"{what}: {exc}") from None


def _referrer(namespace: str, row: Sequence[Any]) -> Referrer:
    subject, digest, media_type, size, artifact_type, annotations, kind = row
    what = f"metadata.db: referrer {digest!r} of {subject!r} in namespace {namespace!r}"
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise CorruptMetadataError(f"{what}: invalid media type or size")
    descriptor = Descriptor(
        media_type,
        _digest(digest, what),
        size,
        _labels(annotations, f"{what}: annotations"),
        artifact_type=artifact_type or None,
    )
    return Referrer(_digest(subject, what), descriptor, str(kind))


def _labels(text: object, what: str) -> dict[str, str]:
    """A JSON object of strings (labels, annotations), as written by :func:`_dump`."""
    try:
        value = json.loads(text) if isinstance(text, (str, bytes)) else None
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CorruptMetadataError(f"{what} are not a JSON object of strings: {str(text)[:40]!r}")
    return value
