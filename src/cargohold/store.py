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
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Final, Literal, cast

import platformdirs
import zstandard

from . import archive_export, archive_import, compression
from .blobstore import BlobStore
from .compression import Compression
from .digests import Digest
from .errors import (
    AlreadyExistsError,
    CargoholdError,
    InvalidArchiveError,
    NotFoundError,
    StoreFormatError,
)
from .gc import GcResult, Leases, collect
from .images import walk
from .mediatypes import Descriptor
from .metadata import ImageRecord, MetadataStore
from .platforms import Platform, PlatformMatcher
from .progress import Progress
from .references import Reference

#: The on-disk format this version writes; a store with a higher number is refused.
STORE_FORMAT: Final = 1
VERSION_FILE: Final = "VERSION"
DEFAULT_NAMESPACE: Final = "default"

Action = Literal["created", "updated", "unchanged", "kept"]


def default_root() -> Path:
    """``$CARGOHOLD_ROOT``, else ``/var/lib/cargohold`` for root, else the user data dir."""
    env = os.environ.get("CARGOHOLD_ROOT")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/cargohold")
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


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image as ``image ls`` shows it."""

    record: ImageRecord
    size: int
    platforms: list[Platform]

    def to_json(self) -> dict[str, object]:
        r = self.record
        return {
            "name": r.name,
            "digest": str(r.digest),
            "mediaType": r.media_type,
            "size": self.size,
            "platforms": [str(p) for p in self.platforms],
            "createdAt": _iso(r.created_at),
            "updatedAt": _iso(r.updated_at),
            "labels": r.labels,
        }


@dataclass(slots=True)
class RemoveResult:
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    gc: GcResult | None = None


class Store:
    """A cargohold store at *root*, seen through *namespace*."""

    def __init__(self, root: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.namespace = namespace
        _check_namespace(namespace)
        self.root.mkdir(parents=True, exist_ok=True)
        _check_version(self.root)
        self.blobs = BlobStore(self.root / "content")
        self.meta = MetadataStore(self.root / "metadata.db")
        self.leases = Leases(self.root / "leases")

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

    def list_images(self) -> list[ImageInfo]:
        host = PlatformMatcher.host()
        return [self.info(record, host) for record in self.meta.list_images(self.namespace)]

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
    ) -> ImportResult:
        """Import an archive (a path, ``"-"`` for stdin, or a binary stream), all or nothing."""
        matcher = _matcher(platforms, all_platforms)
        path = None if isinstance(source, str) and source == "-" else source
        label = str(path) if isinstance(path, (str, Path)) else None
        base = base_name or archive_import.default_base_name(label)
        result = ImportResult()
        progress = progress or Progress()
        with (
            _finishing(progress),
            self._lease() as lease_id,
            _open_members(source, progress, "import") as members,
        ):
            staging = self.blobs.staging_dir(lease_id)

            def already_stored(digest: Digest) -> bool:
                self.meta.add_to_lease(lease_id, [digest])
                return self.blobs.blob_size(digest) is not None

            contents = archive_import.scan(members, self.blobs, staging, already_stored, progress)
            if contents.layout is not None or contents.manifest_json is None:
                plan = archive_import.plan_oci(
                    contents, matcher, base, tuple(tags), digests, index_name, skip_missing
                )
            else:
                if index_name is not None:
                    raise InvalidArchiveError("--index-name needs an OCI layout archive")
                plan = archive_import.plan_docker(
                    contents,
                    matcher,
                    base,
                    lambda data: self.blobs.stage_bytes(data, staging, "manifest"),
                    tuple(tags),
                    digests,
                    (lambda blob: self.blobs.stage_gzipped(blob, staging))
                    if compress_blobs
                    else None,
                )
                if compress_blobs:
                    plan.warnings.append(
                        "--compress-blobs: uncompressed layers were gzipped; the manifests'"
                        " digests differ from what other tools compute for this archive"
                    )
            result.warnings.extend(plan.warnings)
            if plan.index_blob is not None:
                staged = self.blobs.stage_bytes(plan.index_blob, staging, "index.json")
                contents.staged.setdefault(staged.digest, staged)
            self.meta.add_to_lease(lease_id, list(plan.needed))
            for digest, desc in plan.needed.items():
                staged_blob = contents.staged.get(digest)
                if staged_blob is not None and self.blobs.commit(staged_blob):
                    result.blobs_written += 1
                    result.bytes_written += desc.size
                else:
                    result.bytes_deduplicated += desc.size
            self.blobs.sync()
            with self.meta.transaction() as db:
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
        lease_id = uuid.uuid4().hex
        fd = self.leases.hold(lease_id)
        try:
            self.meta.create_lease(lease_id)
            yield lease_id
        finally:
            try:
                with self.meta.transaction() as db:
                    self.meta.delete_lease(db, lease_id)
            finally:
                self.blobs.remove_staging(lease_id)
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
    ) -> ExportResult:
        """Write the images *refs* to *out* (a path, ``"-"`` for stdout, or a binary stream).

        A path is written through a temporary file beside it and renamed at the end, so a
        failed export never leaves a partial archive under the requested name.
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
                written = _write_directory_atomically(
                    Path(out), lambda d: archive_export.write_layout(plan, self.blobs, d, progress)
                )
            elif isinstance(out, (str, Path)) and str(out) != "-":
                written = _write_atomically(
                    Path(out),
                    lambda f: archive_export.write_archive(plan, self.blobs, f, compress, progress),
                )
            else:
                stream = sys.stdout.buffer if isinstance(out, (str, Path)) else out
                written = archive_export.write_archive(plan, self.blobs, stream, compress, progress)
        return ExportResult([r.name for r in records], len(plan.blobs), written, len(plan.skipped))


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
    source: str | Path | BinaryIO, progress: Progress, title: str
) -> Iterator[Iterator[archive_import.Member]]:
    """The members of an archive file (any compression), a layout directory, or a stream."""
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
            progress.start(title, os.fstat(f.fileno()).st_size if seekable else None)
            with _tar_members(cast(IO[bytes], _Counted(f, progress)), seekable) as members:
                yield members
        return
    stream = sys.stdin.buffer if isinstance(source, (str, Path)) else source
    seekable = False
    with contextlib.suppress(OSError, ValueError, AttributeError):
        seekable = stream.seekable() and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    total = None
    if seekable:
        total = os.fstat(stream.fileno()).st_size - stream.tell()
    progress.start(title, total)
    with _tar_members(cast(IO[bytes], _Counted(stream, progress)), seekable) as members:
        yield members


class _Counted(io.RawIOBase):
    """A reader that tells the progress display how far into the archive it has got."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw = raw
        self._progress = progress
        self._start = raw.tell() if _seekable(raw) else 0
        self._position = self._start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return _seekable(self._raw)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._position += n
            self._progress.update(self._position - self._start)
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = self._raw.seek(offset, whence)
        self._progress.update(self._position - self._start)
        return self._position

    def tell(self) -> int:
        return self._position


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return stream.seekable()
    except (OSError, ValueError, AttributeError):
        return False


@contextmanager
def _tar_members(stream: IO[bytes], seekable: bool) -> Iterator[Iterator[archive_import.Member]]:
    head, stream = compression.peek(stream, seekable)
    kind = compression.detect(head)
    if kind != "none":
        stream, seekable = compression.decompressed(stream, kind), False
    try:
        with archive_import.open_archive(stream, seekable) as tar:
            yield archive_import.tar_members(tar)
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise InvalidArchiveError(f"corrupt {kind} compressed archive ({exc})") from None


def _write_atomically(path: Path, write: Callable[[BinaryIO], int]) -> int:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            written = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


def _write_directory_atomically(path: Path, write: Callable[[Path], int]) -> int:
    """Build the directory under a temporary name beside *path*, then rename it into place."""
    if path.exists():
        raise AlreadyExistsError(f"{path} already exists")
    parent = path.parent if str(path.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        written = write(staging / "layout")
        os.rename(staging / "layout", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_namespace(namespace: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,74}[A-Za-z0-9])?", namespace):
        raise NotFoundError(f"invalid namespace {namespace!r}")


def _check_version(root: Path) -> None:
    version_file = root / VERSION_FILE
    try:
        text = version_file.read_text().strip()
    except FileNotFoundError:
        if (
            any(not p.name.startswith(".") for p in root.iterdir())
            and not (root / "metadata.db").exists()
        ):
            raise StoreFormatError(f"{root} is not empty and is not a cargohold store") from None
        tmp = root / f".{VERSION_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(f"{STORE_FORMAT}\n")
        os.replace(tmp, version_file)
        return
    try:
        found = int(text)
    except ValueError:
        raise StoreFormatError(f"{version_file}: unreadable store format {text[:20]!r}") from None
    if found > STORE_FORMAT:
        raise StoreFormatError(
            f"{root} was written by a newer cargohold (store format {found}, this version"
            f" reads up to {STORE_FORMAT}); upgrade cargohold to use it"
        )


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
