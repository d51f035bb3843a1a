"""Image names per namespace, and the namespaces themselves, in the metadata store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import CorruptMetadataError
from ..oci.digests import Digest
from .database import typed_errors
from .metadata_connection import MetadataConnection
from .metadata_rows import (
    ImageRecord,
    Namespace,
    dump_strings,
    load_strings,
    parse_digest,
    row_name,
)


class ImageMetadata(MetadataConnection):
    """The ``images`` and ``namespaces`` tables: which name points at which content."""

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
                dump_strings(record.annotations),
                dump_strings(record.labels),
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
            (dump_strings(labels), time.time(), namespace, name),
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
                found.append(
                    Namespace(name, created, load_strings(labels, f"{what}: labels"), count)
                )
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
            targets.add((media_type, parse_digest(digest, row_name(namespace, name))))
        return sorted(targets, key=lambda t: (t[0], str(t[1])))


def _record(namespace: object, row: Sequence[Any]) -> ImageRecord:
    """An image row; one that cannot be read (edited by hand, damaged) raises an error that
    names it rather than an internal error."""
    name, media_type, digest, size, annotations, labels, created_at, updated_at, partial = row
    what = row_name(namespace, name)
    if not isinstance(name, str) or not name or not isinstance(media_type, str):
        raise CorruptMetadataError(f"{what}: the name or media type is not text")
    if not isinstance(size, int) or size < 0:
        raise CorruptMetadataError(f"{what}: invalid size {size!r}")
    if not all(isinstance(t, (int, float)) for t in (created_at, updated_at)):
        raise CorruptMetadataError(f"{what}: invalid timestamps {created_at!r}, {updated_at!r}")
    return ImageRecord(
        name=name,
        media_type=media_type,
        digest=parse_digest(digest, what),
        size=size,
        annotations=load_strings(annotations, f"{what}: annotations"),
        labels=load_strings(labels, f"{what}: labels"),
        created_at=created_at,
        updated_at=updated_at,
        partial=bool(partial),
    )
