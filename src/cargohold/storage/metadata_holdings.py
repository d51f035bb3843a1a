"""The content each namespace holds, in the metadata store (``namespace_content``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ..oci.digests import Digest
from .database import typed_errors
from .metadata_connection import MetadataConnection
from .metadata_rows import parse_digest, row_name


class HoldingMetadata(MetadataConnection):
    """Which blobs each namespace received and verified: content is stored once, but a
    namespace reuses only what it holds."""

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
        targets = {(t, parse_digest(d, row_name(namespace, name))) for name, t, d in rows}
        return sorted(targets, key=lambda t: (t[0], str(t[1])))
