"""The metadata store: image records and leases in SQLite.

SQLite in WAL mode gives several processes one consistent view with no server, and its write
lock is the store's one point of mutual exclusion: garbage collection holds it while it sweeps,
so an import that records a blob in its lease either does so before the sweep (and the blob is
kept) or after it (and sees the sweep's result).

This module holds the schema and opens the file; the tables' methods are grouped by what they
keep, a class each over the one connection (:mod:`.metadata_connection`): names and
namespaces (:mod:`.metadata_images`), the content each namespace holds
(:mod:`.metadata_holdings`), referrers (:mod:`.metadata_referrers`) and leases
(:mod:`.metadata_leases`); the records and the strict reading of rows are in
:mod:`.metadata_rows`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from .database import connect, open_for_reading, typed_errors
from .metadata_holdings import HoldingMetadata
from .metadata_images import ImageMetadata
from .metadata_leases import LeaseMetadata
from .metadata_referrers import ReferrerMetadata
from .metadata_rows import ImageRecord, Namespace, StoreMode

__all__ = ["SCHEMA", "ImageRecord", "MetadataStore", "Namespace", "StoreMode"]

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


class MetadataStore(ImageMetadata, HoldingMetadata, ReferrerMetadata, LeaseMetadata):
    """Image names per namespace, and the leases that protect content being written: one
    connection, its tables' methods in a class each (images and namespaces, holdings,
    referrers, leases)."""

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
