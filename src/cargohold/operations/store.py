"""The store and its operations: what the CLI does, as a library.

A :class:`Store` is a root directory (blobs on disk, metadata in SQLite, a version file) seen
through one namespace. Each operation here composes the lower modules in one direction only —
archives and the image graph read content, the blob store and metadata store keep it — and
owns the ordering that makes it safe: blobs are committed and synced before any name points at
them, and names change in one transaction, so a crash at any instant leaves a consistent store.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import os
import re
import sqlite3
import stat
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Final, Literal, cast

from ..archive import writer as archive_export
from ..archive.compression import Compression
from ..errors import (
    AlreadyExistsError,
    CargoholdError,
    ContentError,
    InUseError,
    InvalidArchiveError,
    InvalidLabelError,
    NoStoreError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreFormatError,
)
from ..limits import EXPANSION_FLOOR, Limits
from ..oci.digests import Digest
from ..oci.graph import ConfigSummary, ContentSource, TreeNode, tree, walk
from ..oci.mediatypes import MAX_JSON_LIMIT, Descriptor, config_platform, is_index, parse_config
from ..oci.platforms import Platform, PlatformMatcher
from ..oci.references import Reference, check_name_digest
from ..progress import Progress
from ..storage import outputs
from ..storage.blobs import BlobStore
from ..storage.gc import GcResult, collect, held_content
from ..storage.ingest import HASH_ONLY, StagedBlob
from ..storage.leases import Leases
from ..storage.metadata import ImageRecord, MetadataStore, Namespace, StoreMode

if TYPE_CHECKING:
    from ..archive import reader as archive_import
    from .transfer import ClientFactory, PullResult, PushResult

# Modules only some commands need (reading archives, filters, temporary files) are imported
# where they are used: every command pays for what is imported here, before it starts.

#: The on-disk format this version writes; a store with a higher number is refused.
STORE_FORMAT: Final = 2
VERSION_FILE: Final = "VERSION"
DEFAULT_NAMESPACE: Final = "default"
#: Most data accepted after a tar's end-of-archive marker (writers pad to a record size).
MAX_TRAILING_BYTES: Final = 64 << 20
#: Stored blobs up to this size are re-hashed before an import lets them stand for its own
#: (documents are this small, and a damaged document would decide what else is read).
VERIFY_REUSED_BELOW: Final = 1 << 20
#: containerd's limit on a label's key and value together.
MAX_LABEL_BYTES: Final = 4096

Action = Literal["created", "updated", "unchanged", "kept"]


def default_root() -> Path:
    """``$CARGOHOLD_ROOT``, else ``/var/lib/cargohold`` for root, else the user data dir."""
    env = os.environ.get("CARGOHOLD_ROOT")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/cargohold")
    import platformdirs

    return Path(platformdirs.user_data_dir("cargohold", appauthor=False))


@dataclass(frozen=True, slots=True)
class ImportedImage:
    name: str
    digest: Digest
    action: Action


@dataclass(slots=True)
class ImportResult:
    images: list[ImportedImage] = field(default_factory=list)
    blobs_written: int = 0
    bytes_written: int = 0
    bytes_deduplicated: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "images": [
                {"name": i.name, "digest": str(i.digest), "action": i.action} for i in self.images
            ],
            "blobs": self.blobs_written,
            "bytesWritten": self.bytes_written,
            "bytesDeduplicated": self.bytes_deduplicated,
        }


@dataclass(frozen=True, slots=True)
class ExportResult:
    images: list[str]
    blobs: int
    bytes_written: int
    skipped_non_distributable: int

    def to_json(self) -> dict[str, object]:
        return {
            "images": self.images,
            "blobs": self.blobs,
            "bytesWritten": self.bytes_written,
            "skippedNonDistributable": self.skipped_non_distributable,
        }


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image as ``image ls`` shows it."""

    record: ImageRecord
    size: int
    platforms: list[Platform]

    def to_json(self) -> dict[str, object]:
        return {
            **_record_json(self.record),
            "size": self.size,
            "platforms": [str(p) for p in self.platforms],
        }


@dataclass(slots=True)
class RemoveResult:
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    gc: GcResult | None = None


@dataclass(frozen=True, slots=True)
class ManifestInspection:
    """A manifest of an inspected image, with the summary of its config (when present)."""

    node: TreeNode
    platform: Platform | None
    config: ConfigSummary | None

    def to_json(self) -> dict[str, object]:
        d = self.node.descriptor
        return {
            "digest": str(d.digest),
            "mediaType": d.media_type,
            "size": d.size,
            "platform": str(self.platform) if self.platform else None,
            "layers": [c.to_json() for c in self.node.children[1:]],
            "layersSize": sum(c.descriptor.size for c in self.node.children[1:]),
            "config": self.config.to_json() if self.config else None,
        }


@dataclass(frozen=True, slots=True)
class ImageInspection:
    """Everything ``image inspect`` shows: the record, the graph and the configs."""

    record: ImageRecord
    tree: TreeNode
    manifests: list[ManifestInspection]

    def to_json(self) -> dict[str, object]:
        r = self.record
        return {
            **_record_json(r),
            "size": r.size,
            "annotations": r.annotations,
            "partial": r.partial,
            "tree": self.tree.to_json(),
            "manifests": [m.to_json() for m in self.manifests],
        }


CheckStatus = Literal["complete", "incomplete", "corrupt", "unavailable", "invalid", "partial"]


@dataclass(slots=True)
class CheckResult:
    """The state of one manifest of one image (or of the image as a whole, when no manifest
    of it can be looked at): the config and layers it needs, which are there, which are intact.
    """

    record: ImageRecord
    platform: Platform | None
    status: CheckStatus
    nodes: list[TreeNode]
    problem: str | None = None
    corrupt: list[str] = field(default_factory=list)

    @property
    def required(self) -> int | None:
        """Blobs the manifest needs (config and layers); None when it cannot be read."""
        return len(self.nodes) - 1 if len(self.nodes) > 1 else None

    @property
    def available(self) -> int:
        return sum(1 for n in self.nodes[1:] if n.present)

    @property
    def missing(self) -> list[str]:
        return [str(n.descriptor.digest) for n in self.nodes if not n.present]

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "partial")

    @property
    def size(self) -> int:
        return sum(n.descriptor.size for n in self.nodes if n.present)

    @property
    def total_size(self) -> int:
        return sum(n.descriptor.size for n in self.nodes)

    def summary(self) -> str:
        """The status as ctr shows it: ``complete (3/3)``, ``unavailable (0/?)``."""
        if self.status == "partial":
            return f"partial ({self.problem})"
        required = "?" if self.required is None else str(self.required)
        return f"{self.status} ({self.available}/{required})"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.record.name,
            "digest": str(self.record.digest),
            "mediaType": self.record.media_type,
            "platform": str(self.platform) if self.platform else None,
            "manifest": str(self.nodes[0].descriptor.digest) if self.nodes else None,
            "status": self.status,
            "available": self.available,
            "required": self.required,
            "size": self.size,
            "totalSize": self.total_size,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class ImageUser:
    namespace: str
    name: str

    def qualified(self, current: str) -> str:
        """The name, with its namespace when it is not the one being looked at."""
        return self.name if self.namespace == current else f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """A blob of the store and the images that use it."""

    digest: Digest
    size: int
    created_at: float
    users: list[ImageUser]

    def to_json(self) -> dict[str, object]:
        return {
            "digest": str(self.digest),
            "size": self.size,
            "createdAt": iso_time(self.created_at),
            "usedBy": [{"namespace": u.namespace, "name": u.name} for u in self.users],
        }


@dataclass(slots=True)
class ArchiveImage:
    """An image an archive holds, under every name the archive gives it."""

    names: list[str]
    target: Descriptor
    platforms: list[Platform]
    size: int
    missing: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "names": self.names,
            "digest": str(self.target.digest),
            "mediaType": self.target.media_type,
            "platforms": [str(p) for p in self.platforms],
            "size": self.size,
            "missing": self.missing,
        }


@dataclass(slots=True)
class ArchiveReport:
    """What ``archive inspect`` found, and what an import would add to the store."""

    format: Literal["oci", "docker"]
    images: list[ArchiveImage] = field(default_factory=list)
    blobs: int = 0
    size: int = 0
    importable: bool = False
    new_blobs: int = 0
    bytes_to_add: int = 0
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "format": self.format,
            "images": [i.to_json() for i in self.images],
            "blobs": self.blobs,
            "size": self.size,
            "importable": self.importable,
            "newBlobs": self.new_blobs,
            "bytesToAdd": self.bytes_to_add,
            "problem": self.problem,
            "warnings": self.warnings,
        }


class Store:
    """A cargohold store at *root*, seen through *namespace*.

    With *mode* ``"write"`` (the default) the store is created if it does not exist, and this
    user must be able to write it. With ``"read"`` nothing is created or changed, a user who
    may only read the store can use it, and the operations that write are refused.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        mode: StoreMode = "write",
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.namespace = namespace
        self.mode: StoreMode = mode
        _check_namespace(namespace)
        if mode == "write":
            _check_writable(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
        elif not (self.root / "metadata.db").is_file():
            raise NoStoreError(f"no cargohold store at {self.root}")
        found = _check_version(self.root, mode)
        self.blobs = BlobStore(self.root / "content")
        self.meta = MetadataStore(self.root / "metadata.db", mode)
        self.leases = Leases(self.root / "leases")
        if found < STORE_FORMAT and mode == "write":
            self._upgrade()

    def _upgrade(self) -> None:
        """Bring a store of format 1 to format 2: record what each namespace holds (format 1
        did not keep it) as the blobs its images reach, then write the new format number.

        A damaged document is passed over (what is below it is not held, so the next import
        reads it again); a crash before the number is written repeats the work, which sets
        the same rows.
        """
        present = {digest for digest, _, _ in self.blobs.iter_blobs()}
        with self.meta.transaction() as db:
            for namespace, digests in held_content(
                self.meta, self.blobs, present, skip_unreadable=True
            ).items():
                self.meta.set_holdings(db, namespace, digests)
        _write_version(self.root)

    def close(self) -> None:
        self.meta.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> ImageRecord:
        """The stored image a user's name means (short forms accepted)."""
        name = str(Reference.parse(ref))
        record = self.meta.get_image(self.namespace, name)
        if record is None:
            raise NotFoundError(f"image {ref} not found in namespace {self.namespace}")
        return record

    def list_images(self, filters: Sequence[str] = ()) -> list[ImageInfo]:
        """The namespace's images, those matching containerd-style *filters* (OR-ed; commas
        inside one filter AND-ed), by name."""
        from .filters import ImageFilter

        selected = ImageFilter.parse(filters)
        host = PlatformMatcher.host()
        known: dict[Digest, ImageInfo] = {}  # many names often share one image
        infos = []
        for record in self.meta.list_images(self.namespace):
            if not selected.matches(record):
                continue
            shared = known.get(record.digest)
            if shared is None or shared.record.size != record.size:
                shared = known[record.digest] = self.info(record, host)
            infos.append(ImageInfo(record, shared.size, shared.platforms))
        return infos

    def list_names(self, filters: Sequence[str] = ()) -> list[str]:
        """Just the names (``image ls -q``): no content is read."""
        from .filters import ImageFilter

        selected = ImageFilter.parse(filters)
        return [r.name for r in self.meta.list_images(self.namespace) if selected.matches(r)]

    def info(self, record: ImageRecord, matcher: PlatformMatcher) -> ImageInfo:
        """Size (of the manifest *matcher* prefers, as ctr counts it) and all platforms."""
        graph = walk(
            self.blobs, _target(record), PlatformMatcher.all(), record.name, missing_ok=True
        )
        size = record.size
        chosen = graph.preferred(matcher)
        if chosen is not None:
            if chosen.descriptor.digest != record.digest:
                size += chosen.descriptor.size
            size += sum(d.size for d in chosen.manifest.blobs)
        return ImageInfo(record, size, sorted(graph.platforms, key=Platform.sort_key))

    def tag(self, source: str, targets: Sequence[str], force: bool = False) -> list[str]:
        """Give the image *source* names further names; existing names move only with *force*."""
        names = [str(Reference.parse(t)) for t in targets]
        with self.meta.transaction() as db:
            record = self.resolve(source)
            for name in names:
                check_name_digest(name, record.digest)
                existing = self.meta.get_image(self.namespace, name)
                if existing is not None and existing.digest != record.digest and not force:
                    raise AlreadyExistsError(
                        f"image {name} already exists (use --force to move it)"
                    )
            for name in names:
                self.meta.put_image(db, self.namespace, _renamed(record, name))
        return names

    def remove(self, refs: Sequence[str], collect_garbage: bool = True) -> RemoveResult:
        """Remove names, then the content no image needs any more; unknown names are reported
        after the others are gone."""
        result = RemoveResult()
        with self.meta.transaction() as db:
            for ref in refs:
                name = str(Reference.parse(ref))
                if self.meta.delete_image(db, self.namespace, name):
                    result.removed.append(name)
                else:
                    result.missing.append(ref)
        if collect_garbage and result.removed:
            result.gc = self.gc()
        return result

    def gc(self, dry_run: bool = False) -> GcResult:
        return collect(self.meta, self.blobs, self.leases, dry_run=dry_run)

    def label(
        self, ref: str, changes: Mapping[str, str], replace_all: bool = False
    ) -> dict[str, str]:
        """Set labels (an empty value removes the key); returns the image's labels after."""
        for key, value in changes.items():
            _check_label(key, value)
        with self.meta.transaction() as db:
            record = self.resolve(ref)
            labels = {} if replace_all else dict(record.labels)
            for key, value in changes.items():
                if value:
                    labels[key] = value
                else:
                    labels.pop(key, None)
            self.meta.set_labels(db, self.namespace, record.name, labels)
        return labels

    # -- inspection ----------------------------------------------------------------------

    def inspect(self, ref: str, platforms: Sequence[str | Platform] = ()) -> ImageInspection:
        """The image's whole graph, and a summary of the config of each (selected) manifest
        that is present."""
        record = self.resolve(ref)
        root = tree(self.blobs, _target(record))
        matcher = _matcher(platforms, False, default_all=True)
        manifests = []
        for node in root.walk():
            if node.role != "manifest" or not node.present or node.problem or node.repeated:
                continue
            config = node.children[0] if node.children else None
            summary = None
            platform = node.descriptor.platform
            if config is not None and config.present:
                try:
                    data = self.blobs.read_blob(config.descriptor.digest, MAX_JSON_LIMIT)
                    summary = ConfigSummary.parse(data, f"config {config.descriptor.digest}")
                    platform = platform or summary.platform
                except CargoholdError as exc:
                    config.problem = str(exc)
            if not matcher.matches(platform):
                continue
            manifests.append(ManifestInspection(node, platform, summary))
        if platforms and not manifests:
            raise NotFoundError(f"image {record.name} has no manifest for {matcher}")
        return ImageInspection(record, root, manifests)

    def raw_document(
        self, ref: str, which: Literal["index", "manifest", "config"], platform: str | None = None
    ) -> bytes:
        """The stored bytes of the image's index, or of the manifest or config for *platform*
        (default: the one this host would run), exactly as they are in the store."""
        record = self.resolve(ref)
        target = _target(record)
        if which == "index":
            if not is_index(record.media_type):
                raise NotFoundError(f"image {record.name} is a single manifest, not an index")
            return self.blobs.read_blob(record.digest, MAX_JSON_LIMIT)
        matcher = _matcher([platform] if platform else [], False)
        graph = walk(self.blobs, target, matcher, record.name, read_configs=False)
        chosen = graph.preferred(matcher)
        if chosen is None:
            raise NotFoundError(f"image {record.name} has no manifest for {matcher}")
        digest = chosen.descriptor.digest if which == "manifest" else chosen.manifest.config.digest
        return self.blobs.read_blob(digest, MAX_JSON_LIMIT)

    def check(
        self,
        refs: Sequence[str] = (),
        *,
        platforms: Sequence[str | Platform] = (),
        all_platforms: bool = False,
        verify: bool = False,
    ) -> list[CheckResult]:
        """Whether each image's content is all there (and, with *verify*, intact).

        By default every manifest the store holds is checked, and manifests of an index that
        were never imported are not counted against it (an import selects platforms); with
        *platforms* or *all_platforms*, the selected manifests must be present.
        """
        records = [self.resolve(r) for r in refs] if refs else self.meta.list_images(self.namespace)
        explicit = bool(platforms) or all_platforms
        matcher = _matcher(platforms, all_platforms, default_all=True)
        verified: dict[Digest, bool] = {}

        def intact(digest: Digest) -> bool:
            if digest not in verified:
                verified[digest] = self.blobs.verify(digest)
            return verified[digest]

        results = []
        for record in records:
            root = tree(self.blobs, _target(record))
            results.extend(
                _check_image(
                    record, root, matcher, explicit, intact if verify else None, self.blobs
                )
            )
        return results

    # -- content -------------------------------------------------------------------------

    def content(self) -> list[ContentInfo]:
        """Every blob of the store, with the images (of every namespace) that use it."""
        users = self._users()
        infos = []
        for digest, size, mtime in sorted(self.blobs.iter_blobs(), key=lambda b: str(b[0])):
            infos.append(ContentInfo(digest, size, mtime, users.get(digest, [])))
        return infos

    def read_content(self, digest: str | Digest, verify: bool = False) -> BinaryIO:
        """An open reader of a blob's bytes (the store's regular file, never what a link in
        its place points to). With *verify* the bytes are hashed as they are read, and the
        read that reaches the end raises :class:`DamagedBlobError` if they do not match."""
        return self.blobs.open(
            digest if isinstance(digest, Digest) else Digest.parse(digest), verify=verify
        )

    def remove_content(self, digests: Sequence[str | Digest], force: bool = False) -> RemoveResult:
        """Delete blobs. Content an image uses is refused unless *force*; content an import in
        progress holds is always refused. Unknown digests are reported after the rest."""
        wanted = [d if isinstance(d, Digest) else Digest.parse(d) for d in digests]
        result = RemoveResult()
        with self.meta.transaction() as db:
            live = [lease for lease in self.meta.lease_ids() if self.leases.is_alive(lease)]
            leased = self.meta.leased_digests(live)
            users = self._users()
            for digest in wanted:
                if self.blobs.blob_size(digest) is None:
                    result.missing.append(str(digest))
                elif str(digest) in leased:
                    raise InUseError(f"blob {digest} is being written by an import in progress")
                elif users.get(digest) and not force:
                    names = ", ".join(u.qualified(self.namespace) for u in users[digest])
                    raise InUseError(f"blob {digest} is used by {names} (use --force to remove it)")
            for digest in wanted:
                size = self.blobs.blob_size(digest)
                if size is not None:
                    self.blobs.delete(digest)
                    result.removed.append(str(digest))
            self.meta.release_content(db, wanted)
        return result

    def _users(self) -> dict[Digest, list[ImageUser]]:
        users: dict[Digest, list[ImageUser]] = {}
        for namespace, record in self.meta.all_images():
            for node in tree(self.blobs, _target(record)).walk():
                found = users.setdefault(node.descriptor.digest, [])
                user = ImageUser(namespace, record.name)
                if user not in found:
                    found.append(user)
        return users

    # -- namespaces ----------------------------------------------------------------------

    def namespaces(self) -> list[Namespace]:
        return self.meta.namespaces()

    def create_namespace(self, name: str) -> None:
        _check_namespace(name)
        with self.meta.transaction() as db:
            if not self.meta.create_namespace(db, name):
                raise AlreadyExistsError(f"namespace {name} already exists")

    def remove_namespace(self, name: str) -> None:
        """Remove an empty namespace; one that still has images is refused."""
        with self.meta.transaction() as db:
            count = self.meta.count_images(name)
            if count:
                raise InUseError(f"namespace {name} still has {count} image(s); remove them first")
            if not self.meta.delete_namespace(db, name):
                raise NotFoundError(f"namespace {name} not found")
            self.meta.release_namespace(db, name)

    # -- import --------------------------------------------------------------------------

    def import_archive(
        self,
        source: str | Path | BinaryIO,
        *,
        base_name: str | None = None,
        tags: Sequence[str] = (),
        digests: bool = False,
        index_name: str | None = None,
        platforms: Sequence[str | Platform] = (),
        all_platforms: bool = False,
        force: bool = False,
        skip_missing: bool = False,
        compress_blobs: bool = False,
        progress: Progress | None = None,
        limits: Limits | None = None,
    ) -> ImportResult:
        """Import an archive (a path, ``"-"`` for stdin, or a binary stream), all or nothing."""
        from ..archive import reader as archive_import

        matcher = _matcher(platforms, all_platforms)
        path = None if isinstance(source, str) and source == "-" else source
        label = str(path) if isinstance(path, (str, Path)) else None
        base = base_name or archive_import.default_base_name(label)
        result = ImportResult()
        progress = progress or Progress()
        with (
            _finishing(progress),
            self._lease() as lease_id,
            _open_members(source, progress, "import", limits) as members,
        ):
            staging = self.blobs.staging_dir(lease_id)

            def already_stored(digest: Digest, size: int) -> bool:
                return not force and self.reusable(lease_id, digest, size)

            contents = archive_import.scan(
                members,
                self.blobs,
                staging,
                already_stored,
                progress,
                (limits or Limits()).document_bytes,
                held=lambda digest, size: self.reusable(lease_id, digest, size),
            )
            plan = _plan_archive(
                contents,
                matcher,
                base,
                lambda data: self.blobs.stage_bytes(data, staging, "manifest"),
                tags=tuple(tags),
                digests=digests,
                index_name=index_name,
                skip_missing=skip_missing,
                compress=(lambda blob: self.blobs.stage_gzipped(blob, staging))
                if compress_blobs
                else None,
            )
            result.warnings.extend(plan.warnings)
            if plan.index_blob is not None:
                staged = self.blobs.stage_bytes(plan.index_blob, staging, "index.json")
                contents.staged.setdefault(staged.digest, staged)
            self.meta.add_to_lease(lease_id, list(plan.needed))
            staged_blobs = (contents.staged.get(digest) for digest in plan.needed)
            written = iter(self.blobs.commit_many(b for b in staged_blobs if b is not None))
            for digest, desc in plan.needed.items():
                if digest in contents.staged and next(written):
                    result.blobs_written += 1
                    result.bytes_written += desc.size
                else:
                    result.bytes_deduplicated += desc.size
            self.blobs.sync()
            with self.meta.transaction() as db:
                self.meta.hold(db, self.namespace, plan.needed)
                for image in plan.images:
                    action = self._action(image, force)
                    if action in ("created", "updated"):
                        record = ImageRecord(
                            image.name,
                            image.target.media_type,
                            image.target.digest,
                            image.target.size,
                            dict(image.target.annotations),
                            self._labels(image.name),
                            partial=bool(image.skipped),
                        )
                        self.meta.put_image(db, self.namespace, record)
                    elif action == "kept":
                        result.warnings.append(
                            f"{image.name}: kept the stored image, the archive's is older"
                            " (use --force to replace it)"
                        )
                    result.images.append(ImportedImage(image.name, image.target.digest, action))
                    if image.skipped:
                        result.warnings.append(
                            f"{image.name}: imported partially, {len(image.skipped)} manifest(s)"
                            " of its index were not in the archive"
                        )
        return result

    def reusable(self, lease_id: str, digest: Digest, size: int) -> bool:
        """Whether an import or pull into this namespace may let the store's copy of *digest*
        stand for the *size* bytes it was offered, instead of reading them.

        Only when this namespace holds the blob (it received and verified those bytes before:
        content is stored once, but a namespace cannot claim what it never had) and the copy
        looks intact: its size matches, and a small blob (documents among them) re-hashes to
        its digest. Otherwise the offered bytes are read, verified and replace the store's copy.
        When it says yes, the import's lease protects the blob from collection.
        """
        if not self.meta.holds(self.namespace, digest) or self.blobs.regular_size(digest) != size:
            return False
        # Leased only now (a transaction costs more than a tiny member; what is read instead is
        # leased with the plan before it is committed), then looked at again: gc may have swept
        # it just before.
        self.meta.add_to_lease(lease_id, [digest])
        if self.blobs.regular_size(digest) != size:
            return False
        if size > VERIFY_REUSED_BELOW:
            return True
        try:
            return self.blobs.verify(digest)
        except (NotFoundError, ContentError):
            return False  # removed by hand since, or not a regular file any more

    def _labels(self, name: str) -> dict[str, str]:
        existing = self.meta.get_image(self.namespace, name)
        return dict(existing.labels) if existing else {}

    def _action(self, image: archive_import.PlannedImage, force: bool) -> Action:
        existing = self.meta.get_image(self.namespace, image.name)
        if existing is None:
            return "created"
        if existing.digest == image.target.digest:
            return "unchanged"
        if force:
            return "updated"
        old = walk(
            self.blobs, _target(existing), PlatformMatcher.all(), existing.name, missing_ok=True
        )
        if old.created and image.created and image.created < old.created:
            return "kept"
        return "updated"

    @contextmanager
    def _lease(self) -> Iterator[str]:
        """Protects an import's blobs from collection until its names are committed."""
        lease_id = os.urandom(16).hex()
        fd = self.leases.hold(lease_id)
        failed = True
        try:
            self.meta.create_lease(lease_id)
            yield lease_id
            failed = False
        finally:
            # After a failure (a full disk, say) the cleanup may fail too; the first error is
            # the one to report, and a lease record left behind is dead and collected by gc.
            # Staging goes first: on a full disk, that frees the room the deletion needs.
            self.blobs.remove_staging(lease_id)
            with contextlib.suppress(*((sqlite3.Error, OSError) if failed else ())):
                try:
                    self.meta.end_lease(lease_id)
                finally:
                    self.leases.release(lease_id, fd)

    # -- export --------------------------------------------------------------------------

    def export(
        self,
        out: str | Path | BinaryIO,
        refs: Sequence[str],
        *,
        platforms: Sequence[str | Platform] = (),
        all_platforms: bool = False,
        skip_manifest_json: bool = False,
        skip_non_distributable: bool = False,
        compress: Compression = "none",
        layout_dir: bool = False,
        progress: Progress | None = None,
        sync: bool = False,
        verify: bool = False,
    ) -> ExportResult:
        """Write the images *refs* to *out* (a path, ``"-"`` for stdout, or a binary stream).

        A path is written through a temporary file beside it and renamed at the end, so a
        failed or killed export never leaves a partial archive under the requested name; what
        exists at the path and is not a regular file (a FIFO, a device) is written in place,
        never replaced (see :mod:`cargohold.outputs`). With *sync* the file is also flushed to
        disk before the rename, so that not even a power loss can leave a partial one there;
        like ``cp``, ctr and skopeo, the default does not wait for the disk (the archive is
        usually copied on, not kept). With *verify* every blob is hashed as it is written and
        one that does not match its digest fails the export before the rename (on a stream,
        the stream stops short of the archive's index documents).
        """
        if not refs:
            raise NotFoundError("no image to export")
        matcher = _matcher(platforms, all_platforms, default_all=False)
        records = []
        seen: set[str] = set()
        for ref in refs:
            record = self.resolve(ref)
            if record.name not in seen:
                seen.add(record.name)
                records.append(record)
        plan = archive_export.plan_export(
            self.blobs, records, matcher, skip_manifest_json, skip_non_distributable
        )
        progress = progress or Progress()
        with _finishing(progress):
            if layout_dir:
                if not isinstance(out, (str, Path)) or str(out) == "-":
                    raise CargoholdError(
                        "an OCI layout directory needs a directory path, not a stream"
                    )
                written = outputs.write_directory(
                    Path(out),
                    lambda d: archive_export.write_layout(plan, self.blobs, d, progress, verify),
                )
            elif isinstance(out, (str, Path)) and str(out) != "-":
                written = outputs.write_file(
                    Path(out),
                    lambda f, new: archive_export.write_archive(
                        plan, self.blobs, f, compress, progress, preallocate=new, verify=verify
                    ),
                    sync,
                )
            else:
                stream = sys.stdout.buffer if isinstance(out, (str, Path)) else out
                written = archive_export.write_archive(
                    plan, self.blobs, stream, compress, progress, verify=verify
                )
        return ExportResult([r.name for r in records], len(plan.blobs), written, len(plan.skipped))

    # -- registries ----------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platforms: Sequence[str | Platform] = (),
        all_platforms: bool = False,
        client_factory: ClientFactory | None = None,
        progress: Progress | None = None,
    ) -> PullResult:
        """Pull *ref* from its registry under its normalised name, all or nothing (see
        :func:`cargohold.transfer.pull`). *client_factory* makes the
        :class:`~cargohold.registry.RegistryClient` for a host (default: TLS, docker config)."""
        from . import transfer  # the HTTP stack loads only for commands that need it

        return transfer.pull(
            self,
            ref,
            client_factory or transfer.default_client_factory,
            platforms=platforms,
            all_platforms=all_platforms,
            progress=progress,
        )

    def push(
        self,
        ref: str,
        destination: str | None = None,
        *,
        platforms: Sequence[str | Platform] = (),
        all_platforms: bool = False,
        client_factory: ClientFactory | None = None,
        progress: Progress | None = None,
    ) -> PushResult:
        """Push the stored image *ref* to *destination* (default: its own name); see
        :func:`cargohold.transfer.push`."""
        from . import transfer

        return transfer.push(
            self,
            ref,
            destination,
            client_factory or transfer.default_client_factory,
            platforms=platforms,
            all_platforms=all_platforms,
            progress=progress,
        )


def _plan_archive(
    contents: archive_import.ArchiveContents,
    matcher: PlatformMatcher,
    base: str,
    stage: Callable[[bytes], StagedBlob],
    *,
    tags: tuple[str, ...] = (),
    digests: bool = False,
    index_name: str | None = None,
    skip_missing: bool = False,
    compress: Callable[[StagedBlob], StagedBlob] | None = None,
) -> archive_import.ImportPlan:
    """The images an import of the scanned archive yields: an OCI layout, or docker's."""
    from ..archive import reader as archive_import

    if contents.layout is not None or contents.manifest_json is None:
        return archive_import.plan_oci(
            contents, matcher, base, tags, digests, index_name, skip_missing
        )
    if index_name is not None:
        raise InvalidArchiveError("--index-name needs an OCI layout archive")
    plan = archive_import.plan_docker(contents, matcher, base, stage, tags, digests, compress)
    if compress is not None:
        plan.warnings.append(
            "--compress-blobs: uncompressed layers were gzipped; the manifests'"
            " digests differ from what other tools compute for this archive"
        )
    return plan


def inspect_archive(
    source: str | Path | BinaryIO,
    root: str | Path | None = None,
    *,
    platforms: Sequence[str | Platform] = (),
    all_platforms: bool = False,
    progress: Progress | None = None,
    limits: Limits | None = None,
) -> ArchiveReport:
    """What an archive holds, and what importing it into the store at *root* would add.

    Every member is read and verified as an import would, but nothing is written: not to the
    store (which is only looked at, and need not exist) and not to any temporary file.
    """
    from ..archive import reader as archive_import

    store_root = Path(root) if root is not None else default_root()
    if (store_root / VERSION_FILE).is_file():
        _check_version(store_root, "read")
    blobs = BlobStore(store_root / "content")
    progress = progress or Progress()
    label = None if isinstance(source, str) and source == "-" else source
    base = archive_import.default_base_name(str(label) if isinstance(label, (str, Path)) else None)
    limits = limits or Limits()
    with _finishing(progress), _open_members(source, progress, "inspect", limits) as members:
        contents = archive_import.scan(
            members, blobs, None, lambda _d, _s: False, progress, limits.document_bytes
        )
    distinct = {b.digest: b.size for b in [*contents.staged.values(), *contents.files.values()]}
    report = ArchiveReport(
        "oci" if contents.layout is not None or contents.manifest_json is None else "docker",
        blobs=len(distinct),
        size=sum(distinct.values()),
    )

    def stage(data: bytes) -> StagedBlob:
        return blobs.stage_bytes(data, HASH_ONLY, "manifest")

    matcher = _matcher(platforms, all_platforms)
    plan: archive_import.ImportPlan | None = None
    try:
        plan = _plan_archive(contents, matcher, base, stage)
    except CargoholdError as exc:
        report.problem = str(exc)
    else:
        report.importable = True
        report.warnings.extend(plan.warnings)
        for digest, desc in plan.needed.items():
            if blobs.blob_size(digest) is None:
                report.new_blobs += 1
                report.bytes_to_add += desc.size
    listing: archive_import.ImportPlan | None
    try:
        # every platform, for the listing; an archive that only imports with a platform
        # selection is listed by that selection
        listing = _plan_archive(contents, PlatformMatcher.all(), base, stage, skip_missing=True)
    except CargoholdError:
        listing = plan
    by_digest: dict[Digest, ArchiveImage] = {}
    for planned in listing.images if listing else []:
        image = by_digest.get(planned.target.digest)
        if image is None:
            node = tree(contents, planned.target)
            found = {n.descriptor.digest: n for n in node.walk() if n.present}
            image = ArchiveImage(
                [],
                planned.target,
                sorted(_node_platforms(contents, node), key=Platform.sort_key),
                sum(n.descriptor.size for n in found.values()),
                [str(n.descriptor.digest) for n in node.walk() if not n.present],
            )
            by_digest[planned.target.digest] = image
            report.images.append(image)
        if planned.name not in image.names:
            image.names.append(planned.name)
    return report


def _node_platforms(source: ContentSource, root: TreeNode) -> set[Platform]:
    found: set[Platform] = set()
    for node in root.walk():
        if node.role != "manifest":
            continue
        if node.descriptor.platform is not None:
            found.add(node.descriptor.platform)
        else:
            platform = _node_platform(source, node)
            if platform is not None:
                found.add(platform)
    return found


def _node_platform(source: ContentSource, node: TreeNode) -> Platform | None:
    """A manifest's platform from its config (single-manifest images carry it only there)."""
    config = node.children[0] if node.children else None
    if config is None or not config.present:
        return None
    try:
        data = source.read_blob(config.descriptor.digest, MAX_JSON_LIMIT)
        return config_platform(parse_config(data, f"config {config.descriptor.digest}"))
    except CargoholdError:
        return None


def _config_problem(source: ContentSource, manifest: TreeNode) -> str | None:
    """Why the config of a readable manifest cannot be read as one; None when it can, and
    when it is absent or of the wrong size (the check reports those as missing or corrupt).

    Configs are small, so a check without --verify still reads and parses every one: a
    config that is not a JSON object makes the image unusable, whatever its bytes hash to.
    """
    config = manifest.children[0] if manifest.children else None
    if config is None or not config.present or config.problem is not None:
        return None
    try:
        data = source.read_blob(config.descriptor.digest, source.document_limit)
        parse_config(data, f"config {config.descriptor.digest}")
    except NotFoundError:
        return None  # removed since the tree was read; the next check reports it missing
    except CargoholdError as exc:
        return str(exc)
    return None


def _check_image(
    record: ImageRecord,
    root: TreeNode,
    matcher: PlatformMatcher,
    explicit: bool,
    intact: Callable[[Digest], bool] | None,
    source: ContentSource,
) -> list[CheckResult]:
    """One result per manifest of the image that the check covers."""
    if not root.present:
        return [CheckResult(record, None, "unavailable", [root])]
    if root.problem is not None:
        check = CheckResult(record, None, "invalid", [root], problem=root.problem)
        if intact is not None and not intact(root.descriptor.digest):
            check.status, check.corrupt = "corrupt", [str(root.descriptor.digest)]
        return [check]
    results = []
    listed = found = 0
    corrupt_indexes = [
        str(n.descriptor.digest)
        for n in root.walk()
        if n.role == "index" and intact is not None and not intact(n.descriptor.digest)
    ]
    for node in root.walk():
        if node.role != "manifest" or node.repeated:
            continue
        listed += 1
        platform = node.descriptor.platform
        if node.present and platform is None:
            platform = _node_platform(source, node)
        if explicit and not matcher.matches(platform):
            continue
        if not node.present:
            if explicit:
                results.append(CheckResult(record, platform, "unavailable", [node]))
            continue
        found += 1
        if node.problem is not None:
            check = CheckResult(record, platform, "invalid", [node], problem=node.problem)
            if intact is not None and not intact(node.descriptor.digest):
                check.status, check.corrupt = "corrupt", [str(node.descriptor.digest)]
            results.append(check)
            continue
        nodes = [node, *node.children]
        check = CheckResult(record, platform, "complete", nodes)
        check.corrupt = [str(n.descriptor.digest) for n in node.children if n.problem]
        if intact is not None:
            check.corrupt = corrupt_indexes + [
                str(n.descriptor.digest)
                for n in nodes
                if n.present and (n.problem or not intact(n.descriptor.digest))
            ]
        check.problem = _config_problem(source, node)
        if check.missing:
            check.status = "incomplete"
        elif check.corrupt:
            check.status = "corrupt"
        elif check.problem is not None:
            check.status = "invalid"
        results.append(check)
    if not found and not explicit:
        results.append(CheckResult(record, None, "unavailable", [root]))
    if record.partial and not explicit:
        results.append(
            CheckResult(
                record,
                None,
                "partial",
                [root],
                problem=f"{found} of {listed} manifests imported (--skip-missing)",
            )
        )
    return results


def _check_label(key: str, value: str) -> None:
    """containerd's label limits: a key is not empty, and key plus value fit in 4 KiB."""
    if not key or "=" in key:
        raise InvalidLabelError(f"invalid label key {key!r}")
    if len(key.encode()) + len(value.encode()) > MAX_LABEL_BYTES:
        raise InvalidLabelError(f"label {key!r}: key and value exceed {MAX_LABEL_BYTES} bytes")


def _record_json(record: ImageRecord) -> dict[str, object]:
    """The keys every JSON view of an image shares."""
    return {
        "name": record.name,
        "digest": str(record.digest),
        "mediaType": record.media_type,
        "createdAt": iso_time(record.created_at),
        "updatedAt": iso_time(record.updated_at),
        "labels": record.labels,
    }


def _target(record: ImageRecord) -> Descriptor:

    return Descriptor(record.media_type, record.digest, record.size, record.annotations)


def _renamed(record: ImageRecord, name: str) -> ImageRecord:
    return ImageRecord(
        name,
        record.media_type,
        record.digest,
        record.size,
        dict(record.annotations),
        dict(record.labels),
        partial=record.partial,
    )


def _matcher(
    platforms: Sequence[str | Platform], all_platforms: bool, default_all: bool = False
) -> PlatformMatcher:
    if all_platforms:
        return PlatformMatcher.all()
    if platforms:
        return PlatformMatcher.only(
            [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
        )
    return PlatformMatcher.all() if default_all else PlatformMatcher.host()


@contextmanager
def _finishing(progress: Progress) -> Iterator[None]:
    try:
        yield
    finally:
        progress.finish()


@contextmanager
def _open_members(
    source: str | Path | BinaryIO, progress: Progress, title: str, limits: Limits | None
) -> Iterator[Iterator[archive_import.Member]]:
    """The members of an archive file (any compression), a layout directory, or a stream."""
    from ..archive import reader as archive_import

    if isinstance(source, (str, Path)) and str(source) != "-":
        path = Path(source)
        if path.is_dir():
            progress.start(title, None)
            yield archive_import.directory_members(path)
            return
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"archive {source} not found") from None
        with f:
            seekable = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            total = os.fstat(f.fileno()).st_size if seekable else None
            progress.start(title, total)
            counted = _Counted(f, progress)
            reader = cast(IO[bytes], counted)
            with _tar_members(reader, seekable, limits, f.fileno(), counted.advance) as members:
                yield members
            if total is not None:
                progress.update(total)  # the tar's end padding is never read
        return
    stream = sys.stdin.buffer if isinstance(source, (str, Path)) else source
    with contextlib.suppress(OSError, ValueError, AttributeError):
        # a 1 MiB pipe buffer instead of 64 KiB: a sixteenth of the reads and wake-ups
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    seekable = False
    with contextlib.suppress(OSError, ValueError, AttributeError):
        seekable = stream.seekable() and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    total = end = None
    if seekable:
        end = os.fstat(stream.fileno()).st_size
        total = end - stream.tell()
    progress.start(title, total)
    piped = cast(IO[bytes], _Counted(stream, progress))
    with _tar_members(piped, seekable, limits, end=end) as members:
        yield members
    if total is not None:
        progress.update(total)


class _Counted(io.RawIOBase):
    """A reader that tells the progress display how many of the archive's bytes were read.

    Bytes read: not the position, because member data may be read after every header has
    been (docker layers, see archive_import.scan) and through :meth:`advance` rather than
    through this reader. Members skipped (their blobs are stored) count when the read ends.
    """

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw = raw
        self._progress = progress
        self._done = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return _seekable(self._raw)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.advance(n)
        return n

    def advance(self, n: int) -> None:
        if n:
            self._done += n
            self._progress.update(self._done)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position: int = self._raw.seek(offset, whence)
        return position

    def tell(self) -> int:
        position: int = self._raw.tell()
        return position


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return stream.seekable()
    except (OSError, ValueError, AttributeError):
        return False


@contextmanager
def _tar_members(
    stream: IO[bytes],
    seekable: bool,
    limits: Limits | None,
    raw_fd: int | None = None,
    on_read: Callable[[int], None] | None = None,
    end: int | None = None,
) -> Iterator[Iterator[archive_import.Member]]:
    import lzma
    import zlib

    import zstandard

    from ..archive import compression
    from ..archive import reader as archive_import

    head, stream = compression.peek(stream, seekable)
    kind = compression.detect(head)
    if kind != "none":
        limits = limits or Limits()
        stream = compression.decompressed(
            stream, kind, limits.expansion_ratio, limits.uncompressed_bytes, EXPANSION_FLOOR
        )
        seekable = False
    try:
        if seekable:
            with archive_import.open_archive(stream, seekable) as tar:
                # member data straight from the file, when it is an uncompressed one
                if kind == "none" and raw_fd is not None:
                    yield archive_import.tar_members(tar, raw_fd, on_read)
                else:
                    yield archive_import.tar_members(tar, end=end)
        else:
            yield archive_import.stream_members(stream)
            # Read the stream to its end: a compressed stream's trailer (gzip's CRC, the end
            # of the last zstd frame) is what tells a complete archive from a truncated one,
            # and a pipe's writer should not die of a broken pipe for the tar's padding.
            trailing = 0
            while chunk := stream.read(1 << 20):
                trailing += len(chunk)
                if trailing > MAX_TRAILING_BYTES:
                    raise InvalidArchiveError(
                        f"more than {MAX_TRAILING_BYTES} bytes follow the end of the archive"
                    )
    except (OSError, EOFError, zstandard.ZstdError, lzma.LZMAError, zlib.error) as exc:
        if isinstance(exc, CargoholdError) or (isinstance(exc, OSError) and exc.errno is not None):
            raise  # a full disk (StorageFullError is an OSError) is no corrupt archive
        raise InvalidArchiveError(f"corrupt {kind} compressed archive ({exc})") from None


def _check_namespace(namespace: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,74}[A-Za-z0-9])?", namespace):
        raise NotFoundError(f"invalid namespace {namespace!r}")


def _check_writable(root: Path) -> None:
    """A command that writes fails at once, in one line, when this user cannot write the
    store (another user's store, a read-only mount), before it has done any work."""
    for path in (root, root / "metadata.db", root / "content", root / "leases"):
        if path.exists() and not os.access(path, os.W_OK):
            raise ReadOnlyStoreError(f"store {root} is read-only for this user")


def _check_version(root: Path, mode: StoreMode = "write") -> int:
    """The store's format number. Refuses a store of a newer format, or whose VERSION is not a
    format number; a writer marks a new store with this version's format (a reader leaves a
    store as it is)."""
    version_file = root / VERSION_FILE
    try:
        text = version_file.read_text().strip()
    except FileNotFoundError:
        if mode == "read":
            raise StoreFormatError(f"{version_file} is missing") from None
        if (
            any(not p.name.startswith(".") for p in root.iterdir())
            and not (root / "metadata.db").exists()
        ):
            raise StoreFormatError(f"{root} is not empty and is not a cargohold store") from None
        _write_version(root)
        return STORE_FORMAT
    if not re.fullmatch(r"[1-9][0-9]{0,8}", text):
        raise StoreFormatError(f"{version_file}: unreadable store format {text[:20]!r}")
    found = int(text)
    if found > STORE_FORMAT:
        raise StoreFormatError(
            f"{root} was written by a newer cargohold (store format {found}, this version"
            f" reads up to {STORE_FORMAT}); upgrade cargohold to use it"
        )
    return found


def _write_version(root: Path) -> None:
    """Write the format number this version writes, atomically."""
    tmp = root / f".{VERSION_FILE}.{os.urandom(16).hex()}"
    tmp.write_text(f"{STORE_FORMAT}\n")
    os.replace(tmp, root / VERSION_FILE)


def iso_time(timestamp: float) -> str:
    """A stored timestamp as JSON output shows it: RFC 3339, UTC, microseconds."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
