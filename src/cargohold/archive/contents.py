"""What one pass over an archive found, and the content source its images are walked over.

The walk of an archive's images sees the blobs the archive brought (staged) plus the ones the
importing namespace holds, never the rest of the store: an archive cannot claim content by
naming a digest. That rule lives in :class:`ArchiveContents`, which the scan fills and the
OCI layout and docker planning read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import (
    ArchiveMissingContentError,
    ArchiveNoMatchingPlatformError,
    InvalidArchiveError,
    InvalidDocumentError,
    MissingContentError,
    NoMatchingPlatformError,
    NotFoundError,
)
from ..oci.digests import Digest
from ..oci.graph import ImageGraph, walk
from ..oci.mediatypes import DEFAULT_JSON_LIMIT, Descriptor
from ..oci.platforms import PlatformMatcher
from ..storage.blobs import BlobStore
from ..storage.staged import StagedBlob
from .members import BLOB_NAME, member_name


@dataclass(slots=True)
class ArchiveContents:
    """What one pass over an archive found; also the content source for walking its images."""

    store: BlobStore
    layout: bytes | None = None
    index_json: bytes | None = None
    manifest_json: bytes | None = None
    repositories: bytes | None = None
    #: A delta export's list of the blobs it left out (``cargohold-delta.json``).
    delta: bytes | None = None
    staged: dict[Digest, StagedBlob] = field(default_factory=dict)
    #: Blobs the archive contains whose bytes were not read: the importing namespace holds
    #: them, and the store's copy stands for the archive's.
    present: set[Digest] = field(default_factory=set)
    #: Regular files outside ``blobs/`` (docker archives keep layers and configs there).
    files: dict[str, StagedBlob] = field(default_factory=dict)
    #: Such files left unread because their config names them by a digest the store has.
    present_files: dict[str, Digest] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)
    directories: set[str] = field(default_factory=set)
    document_limit: int = DEFAULT_JSON_LIMIT
    #: Whether the store's copy of a blob (of this size) may stand for the archive's: the
    #: importing namespace holds it (see ``scan``'s *already_stored*).
    held: Callable[[Digest, int], bool] = field(default=lambda _digest, _size: False)

    def blob_size(self, digest: Digest) -> int | None:
        """The size of a blob the import has: read from the archive, or one the importing
        namespace holds (the archive's member was skipped, or the archive omits it, as a delta
        export does). Whatever else the store has is absent: an archive cannot claim content
        by naming a digest."""
        staged = self.staged.get(digest)
        if staged is not None:
            return staged.size
        if digest not in self.present:
            size = self.store.blob_size(digest)
            if size is None or not self.held(digest, size):
                return None
            self.present.add(digest)
        return self.store.blob_size(digest)

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        staged = self.staged.get(digest)
        if staged is None:
            if digest not in self.present:
                raise NotFoundError(f"blob {digest} is not in the archive")
            return self.store.read_blob(digest, limit)
        if staged.size > limit:
            raise InvalidDocumentError(f"document {digest} of {staged.size} bytes exceeds {limit}")
        return staged.read()

    def file(self, path: str, what: str) -> StagedBlob:
        """A regular member by the path a docker ``manifest.json`` gives, following one
        symlink hop inside the archive (older docker and skopeo link duplicate layers)."""
        name = self.link_target(path)
        staged = self.files.get(name)
        if staged is None and name in self.present_files:
            return self._stored(self.present_files[name], path, what)
        if staged is None:
            blob = BLOB_NAME.match(name)
            if blob is not None:
                digest = Digest.parse(f"{blob.group(1)}:{blob.group(2)}")
                staged = self.staged.get(digest)
                if staged is None and digest in self.present:
                    return self._stored(digest, path, what)
        if staged is None:
            raise InvalidArchiveError(f"{what}: {path!r} is not a file in the archive")
        return staged

    def link_target(self, path: str) -> str:
        """The member a path names, after one symlink hop inside the archive."""
        name = member_name(path)
        return self.symlinks.get(name, name)

    def _stored(self, digest: Digest, path: str, what: str) -> StagedBlob:
        """The store's copy of a member that was not read (the import's lease protects it)."""
        size = self.store.blob_size(digest)
        if size is None:
            raise InvalidArchiveError(f"{what}: {path!r} is not a file in the archive")
        return StagedBlob(digest, size, self.store.path(digest))


def walk_archive(
    contents: ArchiveContents,
    target: Descriptor,
    matcher: PlatformMatcher,
    what: str,
    skip_missing: bool = False,
) -> ImageGraph:
    """The graph of one of the archive's images: what the model calls missing content or no
    matching platform is here a fault of the archive (an incomplete or wrong archive), so the
    errors are the archive's kind as well."""
    try:
        return walk(contents, target, matcher, what, skip_missing=skip_missing)
    except MissingContentError as exc:
        raise ArchiveMissingContentError(str(exc)) from None
    except NoMatchingPlatformError as exc:
        raise ArchiveNoMatchingPlatformError(str(exc)) from None
