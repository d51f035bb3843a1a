"""The leases that protect content being written, and the resumable imports' leases, in the
metadata store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..oci.digests import Digest
from .database import typed_errors
from .metadata_connection import MetadataConnection


class LeaseMetadata(MetadataConnection):
    """The ``leases``, ``lease_blobs`` and ``resumable_leases`` tables: what an import or pull
    in progress has written, which gc must keep until its names are committed."""

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
