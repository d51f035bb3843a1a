"""Every :class:`~cargohold.oci.graph.ContentSource` answers the walk the same way.

A graph is walked over the store's blobs (export, push), over an archive's contents (import:
staged members, and blobs the importing namespace holds) and over a pull's content (staged
downloads, and blobs the store already had). The walk trusts each source alike, so each must
keep the same promises: a present blob has its size and bytes, an absent one has no size and
cannot be read, and nothing larger than the limit a reader gives is handed over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from cargohold.archive.contents import ArchiveContents
from cargohold.errors import CargoholdError, NotFoundError
from cargohold.oci.digests import Digest
from cargohold.oci.graph import ContentSource
from cargohold.operations.context import StoreContext
from cargohold.operations.pulling import PulledContent
from cargohold.storage.staged import StagedBlob

#: Builds a source over *store* that holds exactly *blobs* (and, in the store, nothing else).
Build = Callable[[StoreContext, Sequence[bytes]], ContentSource]

DOCUMENT = b'{"schemaVersion":2,"note":"a small document"}'


def staged(store: StoreContext, blobs: Sequence[bytes]) -> dict[Digest, StagedBlob]:
    """*blobs* staged in the store's ingest area, verified but not committed."""
    staging = store.blobs.staging_dir("conformance")
    result = {}
    for data in blobs:
        blob = store.blobs.stage_bytes(data, staging)
        result[blob.digest] = blob
    return result


def committed(store: StoreContext, blobs: Sequence[bytes]) -> set[Digest]:
    """*blobs* committed to the store's blob directory."""
    digests = set()
    for blob in staged(store, blobs).values():
        store.blobs.commit(blob)
        digests.add(blob.digest)
    return digests


def blob_store(store: StoreContext, blobs: Sequence[bytes]) -> ContentSource:
    committed(store, blobs)
    return store.blobs


def archive_staged(store: StoreContext, blobs: Sequence[bytes]) -> ContentSource:
    return ArchiveContents(store=store.blobs, staged=staged(store, blobs))


def archive_held(store: StoreContext, blobs: Sequence[bytes]) -> ContentSource:
    held = committed(store, blobs)
    return ArchiveContents(store=store.blobs, held=lambda digest, _size: digest in held)


def pulled_staged(store: StoreContext, blobs: Sequence[bytes]) -> ContentSource:
    return PulledContent(store, staged(store, blobs), set())


def pulled_reused(store: StoreContext, blobs: Sequence[bytes]) -> ContentSource:
    return PulledContent(store, {}, committed(store, blobs))


SOURCES: dict[str, Build] = {
    "blob-store": blob_store,
    "archive-staged": archive_staged,
    "archive-held": archive_held,
    "pulled-staged": pulled_staged,
    "pulled-reused": pulled_reused,
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreContext]:
    context = StoreContext(tmp_path / "root")
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(params=list(SOURCES))
def build(request: pytest.FixtureRequest) -> Build:
    return SOURCES[request.param]


def test_a_present_blob_has_its_size_and_bytes(store: StoreContext, build: Build) -> None:
    source = build(store, [DOCUMENT])
    digest = Digest.of_bytes(DOCUMENT)

    assert source.blob_size(digest) == len(DOCUMENT)
    assert source.read_blob(digest, len(DOCUMENT)) == DOCUMENT
    assert source.read_blob(digest, source.document_limit) == DOCUMENT


def test_an_absent_blob_has_no_size_and_cannot_be_read(store: StoreContext, build: Build) -> None:
    source = build(store, [DOCUMENT])
    absent = Digest.of_bytes(b'{"not":"here"}')

    assert source.blob_size(absent) is None
    with pytest.raises(NotFoundError, match=absent.hex):
        source.read_blob(absent, source.document_limit)


def test_a_blob_larger_than_the_readers_limit_is_refused(store: StoreContext, build: Build) -> None:
    source = build(store, [DOCUMENT])
    digest = Digest.of_bytes(DOCUMENT)

    with pytest.raises(CargoholdError, match=digest.hex):
        source.read_blob(digest, len(DOCUMENT) - 1)


def test_a_document_over_the_sources_limit_is_refused(store: StoreContext, build: Build) -> None:
    limit = build(store, []).document_limit
    oversized = bytes(limit + 1)
    source = build(store, [oversized])
    digest = Digest.of_bytes(oversized)

    assert source.blob_size(digest) == limit + 1
    with pytest.raises(CargoholdError, match=digest.hex):
        source.read_blob(digest, source.document_limit)
