"""Reading image archives: one streaming pass over a tar, every member verified on the way in.

The archive is hostile until proven otherwise. Member names are normalised and checked before
they mean anything, only regular files and directories are accepted, each ``blobs/<alg>/<hex>``
member is hashed while it is staged and must match its name, and the documents are parsed
strictly. Nothing reaches the store here: blobs go to the import's private staging directory,
and the caller commits the ones the selected images need once the whole archive has passed.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import stat
import tarfile
import tarfile as tarfile_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, cast

from ..errors import (
    CargoholdError,
    ContentError,
    InvalidArchiveError,
    InvalidDigestError,
    InvalidDocumentError,
    InvalidReferenceError,
    NotFoundError,
)
from ..oci.digests import Digest
from ..oci.graph import ImageGraph, walk
from ..oci.mediatypes import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    DEFAULT_JSON_LIMIT,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    MAX_JSON_LIMIT,
    OCI_INDEX,
    OCI_LAYER_ZSTD,
    Descriptor,
    config_platform,
    dump_json,
    is_index,
    is_manifest,
    load_json,
    parse_config,
    parse_index,
)
from ..oci.platforms import PlatformMatcher
from ..oci.references import Reference, check_name_digest, is_tag, parse_repository
from ..progress import BLOB_PROGRESS_THRESHOLD, Progress
from ..storage.blobs import BlobStore
from ..storage.ingest import HASH_ONLY, StagedBlob
from . import compression

#: Most members an archive may have; an image with more is an attack on our memory.
MAX_MEMBERS: Final = 200_000
#: Most bytes of documents kept in memory when an archive is only inspected.
MAX_KEPT_BYTES: Final = 256 << 20
#: Largest PAX or GNU long-name header we read.
MAX_HEADER_BYTES: Final = 1 << 20
#: Longest member name we accept.
MAX_NAME_LENGTH: Final = 1024
_BLOB_NAME: Final = re.compile(r"^blobs/([^/]+)/([^/]+)$")
_ARCHIVE_SUFFIXES: Final = (".tar", ".tgz", ".tar.gz", ".tar.zst", ".tar.zstd", ".tar.xz", ".oci")


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of an archive (a tar member or a file of a layout directory)."""

    name: str
    kind: str  # "file", "dir", "symlink", or a description of a refused type
    size: int
    open: Callable[[], IO[bytes]]
    linkname: str = ""
    #: Its data can be read at any time, in any order (a member of an uncompressed archive
    #: file, a file of a layout directory), not only before the next member is reached.
    random_access: bool = False


@dataclass(slots=True)
class ArchiveContents:
    """What one pass over an archive found; also the content source for walking its images."""

    store: BlobStore
    layout: bytes | None = None
    index_json: bytes | None = None
    manifest_json: bytes | None = None
    repositories: bytes | None = None
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
            blob = _BLOB_NAME.match(name)
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


def member_name(raw: str) -> str:
    """The normalised name of an archive member; refuses names that could escape or collide."""
    if "\x00" in raw or "\\" in raw:
        raise InvalidArchiveError(f"member {raw!r}: name contains NUL or backslash")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArchiveError(f"member {raw!r}: name is not valid UTF-8") from None
    if len(raw) > MAX_NAME_LENGTH:
        raise InvalidArchiveError(f"member {raw[:60]!r}…: name longer than {MAX_NAME_LENGTH}")
    if raw.startswith("/"):
        raise InvalidArchiveError(f"member {raw!r}: absolute name")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArchiveError(f"member {raw!r}: name contains '..'")
    return "/".join(parts)


def tar_members(
    archive: tarfile.TarFile,
    raw_fd: int | None = None,
    on_read: Callable[[int], None] | None = None,
    end: int | None = None,
) -> Iterator[Member]:
    """The members of a tar, in order; the data of each only before the next is reached.

    With *raw_fd*, the descriptor of the uncompressed archive file itself, member data is read
    with ``pread`` straight into the caller's buffer (or copied by the kernel) instead of
    through tarfile's reader, and at any time (*on_read* hears how many bytes were taken).
    *end* is the archive file's size (by default *raw_fd*'s): a member whose header claims
    more data than the file holds after it is refused before anything reads or reserves it.
    """
    if end is None and raw_fd is not None:
        end = os.fstat(raw_fd).st_size
    try:
        for info in _headers(archive):
            kind = _kind(info)
            if end is not None and kind == "file" and info.offset_data + info.size > end:
                shown = info.name if len(info.name) <= 100 else f"{info.name[:60]}…"
                raise InvalidArchiveError(
                    f"member {shown!r}: truncated, it claims {info.size} bytes but the archive"
                    f" holds {max(end - info.offset_data, 0)} after its header"
                )
            if raw_fd is not None and kind == "file":
                opener = _pread_opener(raw_fd, info.offset_data, info.size, on_read)
                yield Member(info.name, kind, info.size, opener, random_access=True)
            else:
                yield Member(info.name, kind, info.size, _opener(archive, info), info.linkname)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None
    except EOFError:
        raise InvalidArchiveError("archive is truncated") from None


def _headers(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The headers of a tar read in random-access mode, each forgotten once the next is read.

    Iterating a TarFile keeps every header in ``TarFile.members`` (for look-ups by name, which
    an import never makes): an archive of 150,000 tiny members would hold 150,000 of them.
    """
    while (info := archive.next()) is not None:
        cast(Any, archive).members.clear()  # not in the type stubs; plain list since 2.x
        yield info


def stream_members(stream: IO[bytes]) -> Iterator[Member]:
    """The members of a tar read from a stream (a pipe, a decompressor), in one pass.

    Headers are parsed by tarfile's own header code (with the strict checks above); member
    data is read straight from *stream* into the caller's buffer. tarfile's stream mode copies
    every byte three more times on its way, which costs more than hashing it.
    """
    source = _HeaderSource(stream)
    try:
        while True:
            try:
                info = _StrictTarInfo.fromtarfile(cast(tarfile.TarFile, source))
            except _EOF_HEADER:
                return  # the end-of-archive marker
            except _EMPTY_HEADER:
                if source.position == 0:
                    raise InvalidArchiveError("not a valid tar archive (empty file)") from None
                return  # ended at a member boundary without a marker, as Go's reader allows
            kind = _kind(info)
            window = _Window(source, info.size if kind == "file" else 0)
            yield Member(info.name, kind, info.size, window.open, info.linkname)
            end = info.offset_data + (cast(Any, info)._block(info.size) if kind == "file" else 0)
            source.skip_to(end)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None


def _kind(info: tarfile.TarInfo) -> str:
    if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
        return "sparse file"  # its holes would be expanded: a bomb without compression
    if info.size < 0:
        raise InvalidArchiveError(f"member {info.name!r}: negative size {info.size}")
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    return _REFUSED_KINDS.get(info.type, f"member of type {info.type!r}")


_REFUSED_KINDS: Final = {
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
}


class _HeaderSource:
    """What ``TarInfo.fromtarfile`` needs of a TarFile, over a stream read once."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.fileobj = self
        self.pax_headers: dict[str, str] = {}
        self.offset = 0
        self.position = 0

    def read(self, size: int) -> bytes:
        data = _read_fully(self.stream, size)
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def readinto_upto(self, view: memoryview) -> int:
        n = _readinto_fully(self.stream, view)
        self.position += n
        return n

    def skip_to(self, offset: int) -> None:
        """Discard the rest of a member's data and its padding."""
        while self.position < offset:
            chunk = self.stream.read(min(offset - self.position, 1 << 20))
            if not chunk:
                raise InvalidArchiveError("archive is truncated (inside a member's data)")
            self.position += len(chunk)
        self.offset = offset


class _Window(io.RawIOBase):
    """One member's data, read from the stream in place; it may be read only once."""

    def __init__(self, source: _HeaderSource, size: int) -> None:
        self._source = source
        self._end = source.position + size
        self._opened = False

    def open(self) -> IO[bytes]:
        if self._opened:
            raise InvalidArchiveError("member data read twice")  # a bug, not an archive
        self._opened = True
        return cast(IO[bytes], self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._end - self._source.position)
        if wanted <= 0:
            return 0
        return self._source.readinto_upto(memoryview(buffer)[:wanted])

    def close(self) -> None:  # the stream goes on to the next member
        super().close()


def _read_fully(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _readinto_fully(stream: IO[bytes], view: memoryview) -> int:
    """Fill *view* unless the stream ends: a pipe hands over 64 KiB per read."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _opener(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        source = archive.extractfile(info)
        assert source is not None  # a regular file always has data
        return source

    return open_member


def _pread_opener(
    fd: int, offset: int, size: int, on_read: Callable[[int], None] | None
) -> Callable[[], IO[bytes]]:
    return lambda: cast(IO[bytes], _PreadReader(fd, offset, size, on_read))


class _PreadReader(io.RawIOBase):
    """A member's bytes read by offset from the archive file: one copy, no shared position."""

    def __init__(
        self, fd: int, offset: int, size: int, on_read: Callable[[int], None] | None
    ) -> None:
        self._fd = fd
        self._start = self._position = offset
        self._end = offset + size
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._end - self._position)
        if wanted <= 0:
            return 0
        view = memoryview(buffer)[:wanted]
        n = os.preadv(self._fd, [view], self._position)
        self.consumed(n)
        return n

    def copy_range(self, fd: int, start: int, length: int) -> int:
        """The kernel's copy of member bytes [start, start + length) into *fd* at *start*
        (see blobstore.FileRange); safe from several threads, it moves no position."""
        begin = self._start + start
        length = min(length, self._end - begin)
        if length <= 0:
            return 0
        return os.copy_file_range(self._fd, fd, length, begin, start)

    def tell(self) -> int:
        return self._position - self._start

    def consumed(self, n: int) -> None:
        self._position += n
        if self._on_read is not None:
            self._on_read(n)

    def close(self) -> None:  # the descriptor belongs to the archive
        super().close()


def directory_members(root: Path) -> Iterator[Member]:
    """The files of an OCI layout directory, as if it were an archive (symlinks not followed)."""
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs.sort()
        for name in sorted(names) + [
            d for d in subdirs if os.path.islink(os.path.join(directory, d))
        ]:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                yield Member(relative, "file", st.st_size, _file_opener(path), random_access=True)
            elif stat.S_ISLNK(st.st_mode):
                yield Member(relative, "symlink", 0, _no_data, os.readlink(path))
            else:
                yield Member(relative, "special file", 0, _no_data)


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _no_data() -> IO[bytes]:
    raise InvalidArchiveError("member has no data")


def scan(
    members: Iterable[Member],
    store: BlobStore,
    staging: Path | None,
    already_stored: Callable[[Digest, int], bool],
    progress: Progress | None = None,
    document_limit: int = DEFAULT_JSON_LIMIT,
    held: Callable[[Digest, int], bool] | None = None,
) -> ArchiveContents:
    """Read every member once, staging blobs and keeping the small layout documents.

    *already_stored* is asked, with the member's size, before a blob's bytes are read: when
    it says the store's copy may stand for the member (the importing namespace holds the blob,
    the copy looks intact, and the import's lease now protects it), the member is skipped.
    With *staging* None nothing is written (``archive inspect``): blobs are hashed, and the
    ones that look like JSON documents kept in memory. *held* (default: *already_stored*)
    says the same of a blob the archive does not contain at all, when the walk needs it.
    """
    contents = ArchiveContents(store, document_limit=document_limit, held=held or already_stored)
    reader = _Reader(staging, progress or Progress(), document_limit)
    deferred: dict[str, Member] = {}
    try:
        for count, member in enumerate(members, 1):
            if count > MAX_MEMBERS:
                raise InvalidArchiveError(f"archive has more than {MAX_MEMBERS} members")
            _scan_member(member, contents, reader, already_stored, deferred)
        if deferred:
            stored = _stored_docker_layers(contents, deferred, reader, already_stored)
            for name, member in deferred.items():
                if name in stored:
                    contents.present_files[name] = stored[name]
                elif name not in contents.files:
                    contents.files[name] = reader.stage(contents.store, member, f"member {name!r}")
    except tarfile.TarError as exc:
        # A member's data is read here, after the tar reader has handed the member over, so
        # an archive truncated inside a member fails here rather than in tar_members.
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None
    for link, target in list(contents.symlinks.items()):
        if target not in contents.files and target not in contents.present_files:
            raise InvalidArchiveError(
                f"member {link!r}: symbolic link to {target!r}, which is not a regular file"
            )
    return contents


#: Bytes enough to tell a compressed layer from a plain tar.
_SNIFF_BYTES: Final = 6

_SMALL_FILES: Final = {
    "oci-layout": "layout",
    "index.json": "index_json",
    "manifest.json": "manifest_json",
    "repositories": "repositories",
}


class _Reader:
    """Stages members (or only hashes them) and shows large ones on the progress display."""

    def __init__(self, staging: Path | None, progress: Progress, document_limit: int) -> None:
        self.staging = staging
        self.progress = progress
        self.document_limit = document_limit
        self.kept = 0

    def stage(
        self, store: BlobStore, member: Member, what: str, expected: Digest | None = None
    ) -> StagedBlob:
        large = member.size >= BLOB_PROGRESS_THRESHOLD
        if large:
            self.progress.blob_start(str(expected) if expected else member.name, member.size)
        try:
            with member.open() as source:
                staged = store.stage(
                    source,
                    member.size,
                    self.staging if self.staging is not None else HASH_ONLY,
                    expected,
                    what=what,
                    on_chunk=self.progress.blob_advance if large else None,
                    keep_limit=self.document_limit,
                )
        except ContentError as exc:
            raise InvalidArchiveError(str(exc)) from None
        finally:
            if large:
                self.progress.blob_finish()
        self.kept += len(staged.kept)
        if self.kept > MAX_KEPT_BYTES:
            raise InvalidArchiveError(
                f"member {member.name!r}: the archive's documents exceed {MAX_KEPT_BYTES} bytes"
            )
        return staged


def _scan_member(
    member: Member,
    contents: ArchiveContents,
    reader: _Reader,
    already_stored: Callable[[Digest, int], bool],
    deferred: dict[str, Member],
) -> None:
    name = member_name(member.name)
    if member.kind == "dir":
        if name in contents.members:
            raise InvalidArchiveError(
                f"member {name!r}: appears twice in the archive, as a file and a directory"
            )
        contents.directories.add(name)
        return
    if not name:
        raise InvalidArchiveError(f"member {member.name!r}: empty name")
    if name in contents.members:
        raise InvalidArchiveError(f"member {name!r}: appears twice in the archive")
    if name in contents.directories:
        raise InvalidArchiveError(
            f"member {name!r}: appears twice in the archive, as a file and a directory"
        )
    contents.members.add(name)
    if member.kind == "symlink":
        # Only docker archives link (a duplicate layer to its first copy); the link is
        # resolved lexically, one hop, and must land on a regular member of the archive.
        target = member.linkname
        if target.startswith("/") or "\x00" in target:
            raise InvalidArchiveError(f"member {name!r}: symbolic link to {target!r}")
        contents.symlinks[name] = _resolve_link(name, target)
        return
    if member.kind != "file":
        raise InvalidArchiveError(f"member {name!r}: {member.kind} not allowed in an image archive")
    small = _SMALL_FILES.get(name)
    if small is not None:
        setattr(contents, small, _read_small(member, name, contents.document_limit))
        return
    what = f"member {name!r}"
    match = _BLOB_NAME.match(name)
    if match is None:
        # Not a blob of an OCI layout (which only finds blobs by their path), but perhaps a
        # layer or config of a docker archive: plan_docker adds these by content. Read them
        # after the last member when that is possible: docker's manifest.json comes last, and
        # it says which of them are layers the store may already have.
        if member.random_access:
            deferred[name] = member
        else:
            contents.files[name] = reader.stage(contents.store, member, what)
        return
    try:
        expected = Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except InvalidDigestError as exc:
        raise InvalidArchiveError(f"{what}: {exc}") from None
    if already_stored(expected, member.size):
        contents.present.add(expected)
        return
    contents.staged[expected] = reader.stage(contents.store, member, what, expected)


def _stored_docker_layers(
    contents: ArchiveContents,
    deferred: dict[str, Member],
    reader: _Reader,
    already_stored: Callable[[Digest, int], bool],
) -> dict[str, Digest]:
    """Layers of a docker archive that need not be read: the store has their content.

    A docker archive names layers by path, not digest; the config's ``diff_ids`` give the
    digest of each uncompressed layer, and an uncompressed layer's digest is its diff_id (the
    plan checks that of every layer it reads). So when a layer member starts as a plain tar
    and the store holds its diff_id, the store's verified copy stands for it, as it does for
    an OCI blob the store holds. Configs are read here (they are small). Anything malformed
    is left alone: the layer is then read, and the plan reports the problem.
    """
    if contents.manifest_json is None or contents.index_json is not None:
        return {}
    try:
        doc = load_json(contents.manifest_json, "manifest.json", MAX_JSON_LIMIT, strict_keys=False)
    except CargoholdError:
        return {}
    stored: dict[str, Digest] = {}
    for entry in doc if isinstance(doc, list) else []:
        layers = _docker_layer_claims(contents, entry, deferred, reader)
        for name, digest in layers:
            member = deferred.get(name)
            if member is None or name in stored or name in contents.files:
                continue
            with member.open() as source:
                head = source.read(_SNIFF_BYTES)
            if compression.detect(head) == "none" and already_stored(digest, member.size):
                stored[name] = digest
                contents.present.add(digest)
    return stored


def _docker_layer_claims(
    contents: ArchiveContents, entry: object, deferred: dict[str, Member], reader: _Reader
) -> list[tuple[str, Digest]]:
    """(member, diff_id) of each layer of one manifest.json entry, staging its config; empty
    when anything about the entry is malformed (the plan reports it)."""
    if not isinstance(entry, dict):
        return []
    config_path, layer_paths = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_path, str) or not isinstance(layer_paths, list):
        return []
    if not all(isinstance(path, str) for path in layer_paths):
        return []
    try:
        config_name = contents.link_target(config_path)
    except InvalidArchiveError:
        return []
    member = deferred.get(config_name)
    if member is None or member.size > contents.document_limit:
        return []
    if config_name not in contents.files:
        contents.files[config_name] = reader.stage(
            contents.store, member, f"member {config_name!r}"
        )
    try:
        config = parse_config(contents.files[config_name].read(), config_name)
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_paths):
            return []
        return [
            (contents.link_target(path), Digest.parse(diff_id))
            for path, diff_id in zip(layer_paths, diff_ids, strict=True)
        ]
    except CargoholdError:
        return []


def _resolve_link(name: str, target: str) -> str:
    """Where a relative symlink points, lexically, inside the archive; escaping it is refused."""
    parts = name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidArchiveError(
                    f"member {name!r}: symbolic link {target!r} leaves the archive"
                )
            parts.pop()
        else:
            parts.append(part)
    return member_name("/".join(parts))


def _read_small(member: Member, name: str, limit: int) -> bytes:
    if member.size > limit:
        raise InvalidArchiveError(
            f"member {name!r}: {member.size} bytes exceeds the document limit of {limit}"
            " (raise it with --max-document-size)"
        )
    with member.open() as source:
        data = source.read(member.size)
    if len(data) != member.size:
        raise InvalidArchiveError(f"member {name!r}: truncated")
    return data


class _StrictTarInfo(tarfile.TarInfo):
    """Header reading as strict as Go's ``archive/tar``, which containerd uses.

    - tarfile ends an archive quietly at a truncated or invalid header after the first
      member; here that is an error, so a damaged archive is never taken for a shorter one;
    - PAX and GNU long-name headers are read whole into memory, however large they claim to
      be: the absurd ones are refused first (Go's limit is 1 MiB too);
    - PAX records are checked in one linear pass before tarfile's regular expressions see
      them (on older Pythons those backtrack for minutes on long digit runs, CVE-2024-6232).
    """

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return super().fromtarfile(tarfile)
        except (_TRUNCATED_HEADER, _INVALID_HEADER) as exc:
            if isinstance(exc, _EOF_HEADER):
                raise  # the end-of-archive marker
            offset = cast(Any, tarfile).offset
            if isinstance(exc, _TRUNCATED_HEADER):
                raise InvalidArchiveError(
                    f"not a valid tar archive or truncated: partial header at offset {offset}"
                ) from None
            raise InvalidArchiveError(
                f"not a valid tar archive: bad header at offset {offset} ({exc})"
            ) from None

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header_size(self)
        tar = cast(Any, tarfile)
        fileobj = tar.fileobj
        data = fileobj.read(cast(Any, self)._block(self.size))
        _check_pax_records(data[: self.size], self.offset)
        tar.fileobj = _Replay(data, fileobj)
        try:
            return super()._proc_pax(tarfile)  # type: ignore[misc, no-any-return]
        finally:
            tar.fileobj = fileobj

    def _proc_gnusparse_10(
        self, next: tarfile.TarInfo, pax_headers: dict[str, str], tarfile: tarfile.TarFile
    ) -> None:
        """A GNU 1.0 sparse member keeps its map in its data, which tarfile reads with the
        header, as many entries as the map's first line claims (a list growing with the
        input, and a ValueError at a map cut short). Sparse members are refused anyway."""
        shown = next.name if len(next.name) <= 100 else f"{next.name[:60]}…"
        raise InvalidArchiveError(f"member {shown!r}: sparse file not allowed in an image archive")

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header_size(self)
        return super()._proc_gnulong(tarfile)  # type: ignore[misc, no-any-return]


class _Replay:
    """The archive stream with a block already read put back, for tarfile to read again."""

    def __init__(self, data: bytes, stream: IO[bytes]) -> None:
        self._data: bytes | None = data
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._data is not None:
            data, self._data = self._data, None
            assert size == len(data)
            return data
        return self._stream.read(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


# tarfile's header errors are not part of its public interface, but are stable since 3.2
_TRUNCATED_HEADER: Final[type[Exception]] = tarfile_module.TruncatedHeaderError  # type: ignore[attr-defined]
_INVALID_HEADER: Final[type[Exception]] = tarfile_module.InvalidHeaderError  # type: ignore[attr-defined]
_EOF_HEADER: Final[type[Exception]] = tarfile_module.EOFHeaderError  # type: ignore[attr-defined]
_EMPTY_HEADER: Final[type[Exception]] = tarfile_module.EmptyHeaderError  # type: ignore[attr-defined]

#: Longest run of digits a PAX header may hold (a length, a time: never more than 30).
_MAX_PAX_DIGITS: Final = 32


def _check_pax_records(data: bytes, offset: int) -> None:
    """PAX records are ``<length> <key>=<value>\\n``; anything else is refused here."""
    if re.search(rb"\d{%d}" % (_MAX_PAX_DIGITS + 1), data):
        raise InvalidArchiveError(
            f"not a valid tar archive: PAX header at offset {offset} holds an absurdly long number"
        )
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.find(b" ", position, position + _MAX_PAX_DIGITS + 1)
        digits = data[position:space] if space > position else b""
        length = int(digits) if digits.isdigit() else 0
        end = position + length
        if (
            length < 5
            or end > len(data)
            or data[end - 1 : end] != b"\n"
            or b"=" not in data[space:end]
        ):
            raise InvalidArchiveError(
                f"not a valid tar archive: malformed PAX record at offset {offset}"
            )
        position = end


def _check_header_size(info: tarfile.TarInfo) -> None:
    if info.size > MAX_HEADER_BYTES:
        raise tarfile.HeaderError(
            f"extended header of {info.size} bytes exceeds {MAX_HEADER_BYTES}"
        )


def open_archive(source: IO[bytes], seekable: bool) -> tarfile.TarFile:
    """A tar reader over *source*: random access when it is a file, a stream otherwise."""
    try:
        if seekable:
            return tarfile.open(fileobj=source, mode="r:", bufsize=1 << 20, tarinfo=_StrictTarInfo)
        return tarfile.open(fileobj=source, mode="r|", bufsize=1 << 20, tarinfo=_StrictTarInfo)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive ({exc})") from None


def default_base_name(path: str | None, today: datetime.date | None = None) -> str:
    """``my-app.tar`` → ``my-app``; stdin, or a file name that is no valid repository name,
    gives ``import-YYYY-MM-DD`` as ctr does."""
    fallback = f"import-{(today or datetime.date.today()).isoformat()}"
    if path is None:
        return fallback
    base = os.path.basename(path)
    lowered = base.lower()
    for suffix in sorted(_ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            base = base[: -len(suffix)]
            break
    try:
        parse_repository(base)
    except InvalidReferenceError:
        return fallback
    return base


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """A name the import will create or update, and the content it will point at."""

    name: str
    target: Descriptor
    created: str | None
    #: Manifests the image's index lists but the archive lacked (imported with skip_missing).
    skipped: tuple[Descriptor, ...] = ()


@dataclass(slots=True)
class ImportPlan:
    """What an import will commit: the names, and every blob their images need."""

    images: list[PlannedImage] = field(default_factory=list)
    needed: dict[Digest, Descriptor] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    index_blob: bytes | None = None


def plan_oci(
    contents: ArchiveContents,
    matcher: PlatformMatcher,
    base_name: str,
    tags: tuple[str, ...] = (),
    digest_names: bool = False,
    index_name: str | None = None,
    skip_missing: bool = False,
) -> ImportPlan:
    """Decide which images and names an OCI layout archive yields, and check they are whole."""
    _check_layout(contents.layout)
    if contents.index_json is None:
        raise InvalidArchiveError("missing index.json in OCI layout")
    index = parse_index(contents.index_json, "index.json", None)
    base = parse_repository(base_name)
    plan = ImportPlan()
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]] = []
    for i, entry in enumerate(index.manifests):
        what = f"index.json manifests[{i}] ({entry.digest.short})"
        if not (is_index(entry.media_type) or is_manifest(entry.media_type)):
            plan.warnings.append(
                f"{what}: skipped, media type {entry.media_type!r} is not an image"
            )
            continue
        if not matcher.matches(entry.platform):
            continue
        graph = walk(contents, entry, matcher, what, skip_missing=skip_missing)
        graphs.append((entry, graph, _entry_names(entry, base, what)))
    if not graphs:
        unsupported = [e.media_type for e in index.manifests if not _is_image(e.media_type)]
        if unsupported and len(unsupported) == len(index.manifests):
            schema1 = any("manifest.v1" in t for t in unsupported)
            raise InvalidArchiveError(
                f"index.json lists no image cargohold can import ({', '.join(unsupported)})"
                + ("; Docker schema 1 manifests are not supported" if schema1 else "")
            )
        if index.manifests:
            raise InvalidArchiveError(f"no image in the archive matches {matcher}")
        raise InvalidArchiveError("the archive's index.json lists no images")
    _assign_names(plan, graphs, base, tags, digest_names)
    if index_name is not None:
        digest = Digest.of_bytes(contents.index_json)
        target = Descriptor(OCI_INDEX, digest, len(contents.index_json))
        plan.index_blob = contents.index_json
        plan.needed[digest] = target
        plan.images.append(PlannedImage(_index_image_name(index_name, digest, plan), target, None))
    return plan


def _index_image_name(index_name: str, digest: Digest, plan: ImportPlan) -> str:
    """``--index-name`` checked as every other name is: a name claiming a digest must name
    that digest, and no name may point at two images."""
    name = str(Reference.parse(index_name))
    try:
        check_name_digest(name, digest)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"--index-name: {exc}") from None
    if any(p.name == name for p in plan.images):
        raise InvalidArchiveError(
            f"--index-name {name} is also the name of an image of the archive"
        )
    return name


def _is_image(media_type: str) -> bool:
    return is_index(media_type) or is_manifest(media_type)


def _check_layout(layout: bytes | None) -> None:
    if layout is None:
        raise InvalidArchiveError("not an OCI image layout: the archive has no oci-layout member")
    doc = load_json(layout, "oci-layout", MAX_JSON_LIMIT)
    version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
    if version != "1.0.0":
        raise InvalidArchiveError(f"oci-layout: unsupported image layout version {version!r}")


def _entry_names(entry: Descriptor, base: str, what: str) -> list[str]:
    """Names an index.json entry gives its image: containerd's annotation first, then the
    OCI ref name (a bare tag is put under *base*)."""
    full = entry.annotations.get(ANNOTATION_IMAGE_NAME)
    ref_name = entry.annotations.get(ANNOTATION_REF_NAME)
    try:
        if full:
            return [str(Reference.parse(full))]
        if ref_name:
            if is_tag(ref_name):
                return [str(Reference.parse(f"{base}:{ref_name}"))]
            return [str(Reference.parse(ref_name))]
    except InvalidReferenceError as exc:
        raise InvalidArchiveError(f"{what}: {exc}") from None
    return []


def _kept_annotations(entry: Descriptor) -> dict[str, str]:
    """Annotations stored with an image; the name annotations are rewritten on every export."""
    return {
        k: v
        for k, v in entry.annotations.items()
        if k not in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME)
    }


def _assign_names(
    plan: ImportPlan,
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]],
    base: str,
    tags: tuple[str, ...],
    digest_names: bool,
) -> None:
    """Turn the archive's images and the names it gives them into the plan's names."""
    images: dict[Digest, tuple[Descriptor, ImageGraph, list[str]]] = {}
    for entry, graph, names in graphs:
        if entry.digest in images:
            images[entry.digest][2].extend(names)
        else:
            images[entry.digest] = (entry, graph, list(names))
    if tags:
        if len(images) > 1:
            raise InvalidArchiveError(
                f"--tag names one image, but the archive holds {len(images)} images"
            )
        entry, graph, _ = next(iter(images.values()))
        images = {entry.digest: (entry, graph, [str(Reference.parse(t)) for t in tags])}
    named: dict[str, Digest] = {}
    for entry, graph, names in images.values():
        plan.needed.update(graph.blobs)
        digest_name = f"{base}@{entry.digest}"
        if digest_names:
            names.append(digest_name)
        elif not names:
            plan.warnings.append(
                f"image {entry.digest} has no name in the archive; imported as {digest_name}"
            )
            names.append(digest_name)
        target = Descriptor(entry.media_type, entry.digest, entry.size, _kept_annotations(entry))
        for name in names:
            try:
                check_name_digest(name, entry.digest)
            except InvalidReferenceError as exc:
                raise InvalidArchiveError(str(exc)) from None
            if named.setdefault(name, entry.digest) != entry.digest:
                raise InvalidArchiveError(
                    f"the archive gives the name {name} to two different images"
                )
            if all(p.name != name for p in plan.images):
                plan.images.append(PlannedImage(name, target, graph.created, tuple(graph.skipped)))


def plan_docker(
    contents: ArchiveContents,
    matcher: PlatformMatcher,
    base_name: str,
    stage: Callable[[bytes], StagedBlob],
    tags: tuple[str, ...] = (),
    digest_names: bool = False,
    compress_layer: Callable[[StagedBlob], StagedBlob] | None = None,
) -> ImportPlan:
    """Convert the images of a docker archive (``manifest.json``) into schema 2 manifests.

    The manifests are built from the archive alone, so their digests never depend on what the
    store already holds; layers are kept byte for byte, labelled by what their bytes are.
    """
    assert contents.manifest_json is not None
    for staged in contents.files.values():  # docker archives keep content under any path
        contents.staged.setdefault(staged.digest, staged)
    # docker's own keys (Config, Layers) are case-variants of OCI's: read this file leniently
    doc = load_json(contents.manifest_json, "manifest.json", MAX_JSON_LIMIT, strict_keys=False)
    if not isinstance(doc, list):
        raise InvalidArchiveError("manifest.json: must be a JSON array")
    repositories = _repositories(contents.repositories)
    base = parse_repository(base_name)
    plan = ImportPlan()
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]] = []
    for i, entry in enumerate(doc):
        what = f"manifest.json[{i}]"
        desc, last_layer = _docker_manifest(contents, entry, what, stage, compress_layer)
        if not matcher.matches(desc.platform):
            continue
        graph = walk(contents, desc, matcher, what)
        names = _docker_names(entry, what)
        if not names:
            layer_id = last_layer.rpartition("/")[0]
            names = [n for n, v1 in repositories if v1 == layer_id or len(doc) == 1]
        graphs.append((desc, graph, names))
    if not graphs:
        if doc:
            raise InvalidArchiveError(f"no image in the archive matches {matcher}")
        raise InvalidArchiveError("manifest.json lists no images")
    _assign_names(plan, graphs, base, tags, digest_names)
    return plan


def _docker_manifest(
    contents: ArchiveContents,
    entry: object,
    what: str,
    stage: Callable[[bytes], StagedBlob],
    compress_layer: Callable[[StagedBlob], StagedBlob] | None,
) -> tuple[Descriptor, str]:
    if not isinstance(entry, dict):
        raise InvalidArchiveError(f"{what}: must be an object")
    config_path = entry.get("Config")
    layer_paths = entry.get("Layers")
    if not isinstance(config_path, str):
        raise InvalidArchiveError(f"{what}: 'Config' must be a path")
    if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
        raise InvalidArchiveError(f"{what}: 'Layers' must be a list of paths")
    config = contents.file(config_path, f"{what} Config")
    if config.size > contents.document_limit:
        raise InvalidArchiveError(
            f"{what}: config {config_path!r} exceeds the document limit of"
            f" {contents.document_limit} bytes (raise it with --max-document-size)"
        )
    config_bytes = config.read()
    config_doc = parse_config(config_bytes, f"{what} config {config_path!r}")
    rootfs = config_doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise InvalidArchiveError(f"{what}: config {config_path!r} has no rootfs.diff_ids")
    if len(diff_ids) != len(layer_paths):
        raise InvalidArchiveError(
            f"{what}: {len(layer_paths)} layers but the config lists {len(diff_ids)} diff_ids"
        )
    layers = []
    for j, path in enumerate(layer_paths):
        layer = contents.file(path, f"{what} layer {j}")
        media_type = _layer_type(layer)
        if media_type == DOCKER_LAYER and diff_ids[j] != str(layer.digest):
            raise InvalidArchiveError(
                f"{what}: layer {path!r} has digest {layer.digest}, its diff_id is {diff_ids[j]}"
            )
        if media_type == DOCKER_LAYER and compress_layer is not None:
            layer = compress_layer(layer)
            contents.staged.setdefault(layer.digest, layer)
            media_type = DOCKER_LAYER_GZIP
        layers.append(Descriptor(media_type, layer.digest, layer.size).to_json())
    manifest = dump_json(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": Descriptor(DOCKER_CONFIG, config.digest, config.size).to_json(),
            "layers": layers,
        }
    )
    staged = stage(manifest)
    contents.staged.setdefault(staged.digest, staged)
    platform = config_platform(config_doc)
    last = layer_paths[-1] if layer_paths else ""
    return Descriptor(DOCKER_MANIFEST, staged.digest, staged.size, platform=platform), last


def _layer_type(layer: StagedBlob) -> str:
    """Docker layers are labelled by what their bytes are (ctr calls zstd gzip: we do not)."""
    kind = compression.detect(layer.head(6))
    if kind == "gzip":
        return DOCKER_LAYER_GZIP
    if kind == "zstd":
        return OCI_LAYER_ZSTD
    if kind == "none":
        return DOCKER_LAYER
    raise InvalidArchiveError(f"layer {layer.digest}: {kind} compressed layers are not supported")


def _docker_names(entry: dict[str, object], what: str) -> list[str]:
    tags = entry.get("RepoTags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidArchiveError(f"{what}: 'RepoTags' must be a list of names")
    try:
        return [str(Reference.parse(t)) for t in tags]
    except InvalidReferenceError as exc:
        raise InvalidArchiveError(f"{what}: RepoTags: {exc}") from None


def _repositories(data: bytes | None) -> list[tuple[str, str]]:
    """Names from docker's legacy ``repositories`` file: ``{"repo": {"tag": "<layer id>"}}``."""
    if data is None:
        return []
    doc = load_json(data, "repositories", MAX_JSON_LIMIT, strict_keys=False)
    if not isinstance(doc, dict):
        raise InvalidArchiveError("repositories: must be a JSON object")
    names = []
    for repo, tags in doc.items():
        if not isinstance(tags, dict):
            raise InvalidArchiveError(f"repositories: {repo!r} must map tags to layer ids")
        for tag, layer_id in tags.items():
            try:
                names.append((str(Reference.parse(f"{repo}:{tag}")), str(layer_id)))
            except InvalidReferenceError as exc:
                raise InvalidArchiveError(f"repositories: {exc}") from None
    return names
