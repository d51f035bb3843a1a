"""Writing image archives: an OCI image layout plus docker's ``manifest.json``, reproducibly.

The layout is what containerd, skopeo and umoci read; ``manifest.json`` is what docker and
podman read. Both are written in one tar so the archive loads everywhere. Every header is fixed
(sorted names, mtime 0, uid/gid 0, fixed modes) and every JSON document compact, so exporting
the same images twice gives the same bytes: backups can be compared and deduplicated.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Final, Literal, cast

from ..errors import CargoholdError, ContentError, DamagedBlobError, StorageFullError
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.mediatypes import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OCI_INDEX,
    Descriptor,
    dump_json,
    is_index,
    is_manifest,
    is_non_distributable,
)
from ..oci.platforms import PlatformMatcher
from ..oci.references import Reference
from ..oci.referrers import Referrer, attachment_tag, entry_descriptor
from ..progress import BLOB_PROGRESS_THRESHOLD, Progress
from ..storage.blobs import BlobStore
from ..storage.files import CHUNK_SIZE, reserve
from ..storage.metadata import ImageRecord
from . import compression
from .compression import Compression
from .delta import DELTA_MEMBER, encode_delta
from .manifestjson import DockerManifest, blob_path

OCI_LAYOUT: Final = b'{"imageLayoutVersion":"1.0.0"}'
_BLOCK: Final = 512
#: Bytes per sendfile call: small enough for the progress display to move on large blobs.
_SENDFILE_CHUNK: Final = 64 << 20

#: What ``org.opencontainers.image.ref.name`` holds: the full reference (what skopeo and umoci
#: need to tell two images of the same tag apart) or only its tag (what ``ctr export`` writes).
RefNameForm = Literal["full", "tag"]
REF_NAME_FORMS: Final[tuple[RefNameForm, ...]] = ("full", "tag")


@dataclass(slots=True)
class ExportPlan:
    """The archive's members: blobs by digest, and the two index documents."""

    blobs: dict[Digest, Descriptor] = field(default_factory=dict)
    index_json: bytes = b""
    manifest_json: bytes | None = None
    skipped: list[Descriptor] = field(default_factory=list)
    #: Blobs left out because the receiver holds them (a delta export), and their list.
    omitted: dict[Digest, Descriptor] = field(default_factory=dict)
    delta_json: bytes | None = None


def plan_export(
    blobs: BlobStore,
    images: list[ImageRecord],
    matcher: PlatformMatcher,
    skip_manifest_json: bool = False,
    skip_non_distributable: bool = False,
    ref_name: RefNameForm = "full",
    held: Callable[[Descriptor], bool] | None = None,
    referrers: Callable[[Iterable[Digest]], list[Referrer]] | None = None,
) -> ExportPlan:
    """Resolve each image for the selected platforms; fails naming any content that is missing.

    *ref_name* chooses the OCI ref name's form; ``io.containerd.image.name`` always holds the
    full name, and containerd reads that first. *referrers* gives the referrers kept for the
    image's documents (and theirs), which go along: see :func:`_add_referrers`. The blobs
    *held* says the receiver holds are left out (a delta, see :mod:`.delta`): listed in its own
    member, without ``manifest.json``. That document's entries are :mod:`.manifestjson`'s."""
    plan = ExportPlan()
    entries: list[dict[str, object]] = []
    docker = DockerManifest()
    for image in images:
        reference = Reference.parse(image.name)
        target = Descriptor(image.media_type, image.digest, image.size, image.annotations)
        if not (is_index(target.media_type) or is_manifest(target.media_type)):
            raise CargoholdError(f"image {image.name}: only manifests and indexes can be exported")
        graph = walk(blobs, target, matcher, f"image {reference.familiar()}")
        for digest, desc in graph.blobs.items():
            if skip_non_distributable and is_non_distributable(desc.media_type):
                plan.skipped.append(desc)
            else:
                plan.blobs[digest] = desc
        annotations = dict(image.annotations)
        annotations[ANNOTATION_IMAGE_NAME] = str(reference)
        annotations[ANNOTATION_REF_NAME] = (
            str(reference) if ref_name == "full" else reference.oci_ref_name()
        )
        entries.append(
            Descriptor(target.media_type, target.digest, target.size, annotations).to_json()
        )
        docker.add(graph, matcher, reference)
        if referrers is not None:
            found = referrers(graph.documents)
            _add_referrers(blobs, plan, entries, found, reference, ref_name)
    # a digest one image names as a foreign layer may be a document another image needs
    plan.skipped = [desc for desc in plan.skipped if desc.digest not in plan.blobs]
    plan.index_json = dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    if not skip_manifest_json:
        plan.manifest_json = docker.encode()
    if held is not None:
        _omit_held(plan, held)
    return plan


def _add_referrers(
    blobs: BlobStore,
    plan: ExportPlan,
    entries: list[dict[str, object]],
    referrers: list[Referrer],
    reference: Reference,
    ref_name: RefNameForm,
) -> None:
    """Put an image's referrers into the layout as oras does, and its cosign attachments as
    regctl and cosign's tags do: an OCI referrer (it names its subject itself) is an untagged
    entry of index.json; an attachment (only its tag names its image) is an entry named
    ``<repository>:sha256-<hex>.sig``. No document is made up: every blob exported is one the
    registry or archive served, digests unchanged, and no tag is added for tools that list
    tags (skopeo, umoci) but cosign's own."""
    listed = {(e["digest"], str(e.get("annotations", ""))) for e in entries}
    for referrer in referrers:
        desc = referrer.descriptor
        target = Descriptor(desc.media_type, desc.digest, desc.size)
        graph = walk(blobs, target, PlatformMatcher.all(), f"referrer {desc.digest.short}",
                     read_configs=False)  # fmt: skip
        plan.blobs.update(graph.blobs)
        entry = entry_descriptor(referrer)
        if referrer.kind:
            tagged = reference.with_tag(attachment_tag(referrer.subject, referrer.kind))
            name = str(tagged) if ref_name == "full" else tagged.oci_ref_name()
            entry = Descriptor(desc.media_type, desc.digest, desc.size, {ANNOTATION_REF_NAME: name})
        json_entry = entry.to_json()
        key = (json_entry["digest"], str(json_entry.get("annotations", "")))
        if key not in listed:
            listed.add(key)
            entries.append(json_entry)


def _omit_held(plan: ExportPlan, held: Callable[[Descriptor], bool]) -> None:
    """Make *plan* a delta: without the blobs the receiver holds, and without docker's
    ``manifest.json`` (``docker load`` would half-load it); unchanged when none is held."""
    plan.omitted = {digest: desc for digest, desc in plan.blobs.items() if held(desc)}
    if not plan.omitted:
        return
    for digest in plan.omitted:
        del plan.blobs[digest]
    plan.manifest_json = None
    plan.delta_json = encode_delta({d: desc.size for d, desc in plan.omitted.items()})


def _records(plan: ExportPlan) -> list[tuple[str, Digest | bytes | None]]:
    """The archive's members in their fixed order: sorted by name, as containerd writes them."""
    directories = {f"blobs/{d.algorithm}/" for d in plan.blobs}
    records: list[tuple[str, Digest | bytes | None]] = [("blobs/", None)] if plan.blobs else []
    records += [(d, None) for d in directories]
    records += [(blob_path(d), d) for d in plan.blobs]
    records.append(("index.json", plan.index_json))
    if plan.delta_json is not None:
        records.append((DELTA_MEMBER, plan.delta_json))
    if plan.manifest_json is not None:
        records.append(("manifest.json", plan.manifest_json))
    records.append(("oci-layout", OCI_LAYOUT))
    # One sort of every name puts each directory just before its entries, whatever the
    # digest algorithms: blobs/sha256/… comes before blobs/sha512/.
    return sorted(records, key=lambda record: record[0])


def write_archive(
    plan: ExportPlan,
    blobs: BlobStore,
    out: BinaryIO,
    compress: Compression = "none",
    progress: Progress | None = None,
    preallocate: bool = False,
    verify: bool = False,
) -> int:
    """Stream the archive to *out*; returns the number of bytes written to *out* (compressed,
    when *compress* is not ``"none"``: what lands in the file, not the tar inside it).

    Uncompressed, blob data is copied by the kernel (``sendfile``) where it can be: the bytes
    never pass through Python. Each blob must be a regular file of its descriptor's size.
    With *verify*, each blob is instead read, hashed and written in one pass, and a blob
    whose bytes do not match its digest stops the export (:class:`DamagedBlobError`) before
    anything after it is written: the index documents come after every blob, so a stream
    cut short there has none, and a compressed one lacks its end. With *preallocate*, a file
    *out* gets the archive's full size before it is written (so only for a file that is
    thrown away if the export fails: its tail would read as zeros).
    """
    total = archive_size(plan)
    meter = _Meter(progress or Progress(), "export", total, verify)
    if compress == "none":
        try:
            fd = out.fileno()
        except io.UnsupportedOperation:  # an in-memory stream has no descriptor
            return _write_tar(plan, blobs, _StreamSink(out), meter)
        out.flush()
        if preallocate:
            _preallocate(fd, total)
        return _write_tar(plan, blobs, _FdSink(fd), meter)
    gate = _Gate(out)
    writer = compression.compressor(compress, cast(IO[bytes], gate))
    try:
        _write_tar(plan, blobs, _StreamSink(writer), meter)
    except BaseException:
        gate.shut()  # the compressor's end is not written: a reader sees a truncated stream
        raise
    finally:
        writer.close()
    out.flush()
    return gate.written


class _Gate:
    """A writer in front of a compressor's output that can be shut for good.

    A compressor writes its stream's end when it is closed, even after a failure; a stream
    that ended cleanly would tell its reader the archive is whole. Once shut, nothing more
    is passed on, so a failed export's compressed stream stays visibly truncated.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._open = True
        self.written = 0  # what reached *out*: the size of the compressed stream

    def write(self, data: bytes) -> int:
        if self._open:
            self._out.write(data)
            self.written += len(data)
        return len(data)

    def flush(self) -> None:
        if self._open:
            self._out.flush()

    def shut(self) -> None:
        self._open = False


def _preallocate(fd: int, size: int) -> None:
    """Reserve the archive's blocks before writing it, when *fd* is a new, empty file.

    Tar puts member data at 512-byte offsets, so the kernel's copies land off page
    boundaries; into blocks allocated up front they run about a quarter faster (ext4), and a
    disk too small fails at once instead of after most of the copy.
    """
    try:
        st = os.fstat(fd)
        position = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_size != 0 or position != 0:
        return
    try:
        reserve(fd, size)
    except OSError as exc:
        raise StorageFullError(f"no room for the {size}-byte archive: {exc.strerror}") from None


def archive_size(plan: ExportPlan) -> int:
    """The uncompressed size of the tar :func:`write_archive` writes for *plan*."""
    total = 2 * _BLOCK
    for name, content in _records(plan):
        if content is None:
            total += len(_header(name, 0, tarfile.DIRTYPE, 0o755))
            continue
        size = len(content) if isinstance(content, bytes) else plan.blobs[content].size
        total += len(_header(name, size, tarfile.REGTYPE, 0o444)) + size + len(_padding(size))
    return total


class _Meter:
    """Counts bytes written and tells the progress display; large blobs get their own line."""

    def __init__(self, progress: Progress, title: str, total: int, verify: bool = False) -> None:
        self.progress = progress
        self.done = 0
        self.in_blob = False
        self.verify = verify
        progress.start(title, total)

    def add(self, n: int) -> int:
        self.done += n
        if self.in_blob:
            self.progress.blob_advance(n)
        self.progress.update(self.done)
        return n

    def copy_blob(
        self, sink: _FdSink | _StreamSink, blobs: BlobStore, digest: Digest, size: int
    ) -> int:
        self.in_blob = size >= BLOB_PROGRESS_THRESHOLD
        if self.in_blob:
            self.progress.blob_start(str(digest), size)
        try:
            with _open_checked(blobs, digest, size) as source:
                if self.verify:
                    return _copy_verified(source, size, digest, sink.write, self.add)
                return sink.copy(source, size, self.add)
        finally:
            if self.in_blob:
                self.progress.blob_finish()
            self.in_blob = False


def _write_tar(
    plan: ExportPlan, blobs: BlobStore, sink: _FdSink | _StreamSink, meter: _Meter
) -> int:
    written = 0
    for name, content in _records(plan):
        if content is None:
            written += meter.add(sink.write(_header(name, 0, tarfile.DIRTYPE, 0o755)))
        elif isinstance(content, bytes):
            mode = 0o444 if name == "oci-layout" else 0o644
            written += meter.add(sink.write(_header(name, len(content), tarfile.REGTYPE, mode)))
            written += meter.add(sink.write(content + _padding(len(content))))
        else:
            size = plan.blobs[content].size
            written += meter.add(sink.write(_header(name, size, tarfile.REGTYPE, 0o444)))
            written += meter.copy_blob(sink, blobs, content, size)
            written += meter.add(sink.write(_padding(size)))
    return written + meter.add(sink.write(b"\0" * (2 * _BLOCK)))


def write_layout(
    plan: ExportPlan,
    blobs: BlobStore,
    directory: Path,
    progress: Progress | None = None,
    verify: bool = False,
) -> int:
    """Write the export as an OCI image layout directory (*directory* must not exist yet);
    *verify* as for :func:`write_archive`."""
    meter = _Meter(
        progress or Progress(),
        "export",
        sum(len(c) if isinstance(c, bytes) else plan.blobs[c].size for _, c in _records(plan) if c),
        verify,
    )
    directory.mkdir()
    written = 0
    for name, content in _records(plan):
        path = directory / name
        if content is None:
            path.mkdir(mode=0o755, exist_ok=True)
            continue
        if isinstance(content, bytes):
            path.write_bytes(content)
            os.chmod(path, 0o444 if name == "oci-layout" else 0o644)
            written += meter.add(len(content))
            continue
        size = plan.blobs[content].size
        with path.open("wb") as target:
            written += meter.copy_blob(_FdSink(target.fileno()), blobs, content, size)
        os.chmod(path, 0o444)
    return written


def _open_checked(blobs: BlobStore, digest: Digest, size: int) -> BinaryIO:
    """The store's regular file for *digest*, of the size its descriptor gives."""
    source = blobs.open(digest)
    actual = os.fstat(source.fileno()).st_size
    if actual != size:
        source.close()
        raise DamagedBlobError(digest, f"has {actual} bytes, its descriptor says {size}")
    return source


def _copy_verified(
    source: BinaryIO,
    size: int,
    digest: Digest,
    write: Callable[[bytes], int],
    advance: Callable[[int], int],
) -> int:
    """Copy a blob through Python, hashing what is written; raise before anything follows it
    when those bytes are not the ones its digest names (one pass: each byte is read once)."""
    hasher = digest.hasher()
    copied = 0
    while copied < size:
        chunk = source.read(min(CHUNK_SIZE, size - copied))
        if not chunk:
            raise ContentError("blob shrank while it was exported")
        hasher.update(chunk)
        copied += advance(write(chunk))
    if hasher.hexdigest() != digest.hex:
        actual = f"{hasher.name}:{hasher.hexdigest()}"
        raise DamagedBlobError(digest, f"does not match its digest (its bytes hash to {actual})")
    return copied


class _FdSink:
    """Writes to a file descriptor; blob data goes through ``sendfile`` when the kernel can."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)

    def copy(self, source: BinaryIO, size: int, advance: Callable[[int], int]) -> int:
        in_fd = source.fileno()
        offset = 0
        while offset < size:
            try:
                sent = os.sendfile(self.fd, in_fd, offset, min(size - offset, _SENDFILE_CHUNK))
            except OSError:
                source.seek(offset)
                return offset + _copy_chunks(source, size - offset, self.write, advance)
            if sent == 0:
                raise ContentError("blob shrank while it was exported")
            offset += advance(sent)
        return size


class _StreamSink:
    """Writes to a Python stream (a compressor)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        self.stream.write(data)
        return len(data)

    def copy(self, source: BinaryIO, size: int, advance: Callable[[int], int]) -> int:
        return _copy_chunks(source, size, self.write, advance)


def _copy_chunks(
    source: BinaryIO, size: int, write: Callable[[bytes], int], advance: Callable[[int], int]
) -> int:
    copied = 0
    while copied < size:
        chunk = source.read(min(CHUNK_SIZE, size - copied))
        if not chunk:
            raise ContentError("blob shrank while it was exported")
        copied += advance(write(chunk))
    return copied


def _header(name: str, size: int, kind: bytes, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if size < 8 << 30:
        try:
            return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
        except ValueError:
            pass  # a name too long for USTAR (a sha512 blob's path): PAX holds it, as in Go
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)
