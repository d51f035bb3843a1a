"""The referrers each namespace keeps, in the metadata store (see
:mod:`cargohold.oci.referrers`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from ..errors import CorruptMetadataError
from ..oci.digests import Digest
from ..oci.mediatypes import Descriptor
from ..oci.referrers import Referrer
from .database import typed_errors
from .metadata_connection import MetadataConnection
from .metadata_rows import dump_strings, load_strings, parse_digest


class ReferrerMetadata(MetadataConnection):
    """The ``referrers`` table: artifacts (signatures, attestations, SBOMs) kept for a
    subject."""

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
                    dump_strings(dict(r.descriptor.annotations)),
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


def _referrer(namespace: str, row: Sequence[Any]) -> Referrer:
    subject, digest, media_type, size, artifact_type, annotations, kind = row
    what = f"metadata.db: referrer {digest!r} of {subject!r} in namespace {namespace!r}"
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise CorruptMetadataError(f"{what}: invalid media type or size")
    descriptor = Descriptor(
        media_type,
        parse_digest(digest, what),
        size,
        load_strings(annotations, f"{what}: annotations"),
        artifact_type=artifact_type or None,
    )
    return Referrer(parse_digest(subject, what), descriptor, str(kind))
