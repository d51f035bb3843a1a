"""Staging: blobs on their way into the store, hashed and verified as they arrive.

Bytes stream into a private directory under ``content/ingest/`` (one per writer, named by its
lease) while they are hashed; the size and digest are checked before a :class:`StagedBlob` is
handed back, and only a staged blob can be committed. Where the bytes go is a :class:`Sink`:
a staging directory (:meth:`Ingest.sink`), or nowhere at all (:data:`HASH_ONLY`, for an
archive that is only inspected: the same reading and checking, nothing written).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Final, Protocol, TypeGuard

from ..errors import ContentError
from ..oci.digests import Digest
from .files import CHUNK_SIZE, open_regular, raise_if_full, reserve, write_all
from .writers import (
    PACK_NAME,
    PIPELINE_CHUNK,
    BackgroundWriter,
    FileRange,
    HashingWriter,
    Pack,
    copy_and_hash,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

#: A blob only hashed keeps this many leading bytes (enough to sniff its compression).
KEPT_HEAD: Final = 512
#: Blobs at most this large are staged into one file shared by the staging directory (its
#: pack), not a file each: creating, fsyncing and deleting a file costs far more than a tiny
#: blob's bytes (an archive may hold 150,000 of them, most of them perhaps never needed).
#: Only a blob the import commits is written out to a file of its own, and fsynced then.
PACK_LIMIT: Final = 64 << 10
#: How far a reservation of blocks runs ahead of the bytes that have arrived, when the source
#: is not a file whose size bounds it (a pipe may claim 8 GiB and send nothing).
RESERVE_AHEAD: Final = 64 << 20

#: Called with the number of bytes of each chunk staged (progress).
OnChunk = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """A verified blob written to the ingest area but not yet visible in the store.

    A small blob is bytes [*offset*, *offset* + *size*) of its staging directory's pack (see
    :data:`PACK_LIMIT`); a larger one is the whole file at *path* (*offset* -1). A blob that
    was only hashed (an archive being inspected, nothing written) has no *path*; it keeps its
    bytes when they may be a JSON document, else only its first bytes.
    """

    digest: Digest
    size: int
    path: Path | None
    kept: bytes = b""
    offset: int = -1

    @property
    def packed(self) -> bool:
        return self.offset >= 0

    def read(self) -> bytes:
        """The whole blob (callers check the size first: this is for documents). A *path*
        may be the store's own file (a blob an import found stored): only a regular file
        is read there, as by :meth:`BlobStore.open`."""
        if self.path is not None:
            if self.packed:
                return self._read(self.size)
            with open_regular(self.path, self.digest) as f:
                return f.read()
        if len(self.kept) != self.size:
            raise ContentError(f"blob {self.digest} was not kept in memory")
        return self.kept

    def head(self, n: int) -> bytes:
        if self.path is None:
            return self.kept[:n]
        if self.packed:
            return self._read(min(n, self.size))
        with open_regular(self.path, self.digest) as f:
            return f.read(n)

    def open(self) -> BinaryIO:
        """A reader of the blob's bytes."""
        assert self.path is not None, "a blob that was only hashed has no file"
        return io.BytesIO(self.read()) if self.packed else self.path.open("rb")

    def _read(self, n: int) -> bytes:
        assert self.path is not None
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, n, self.offset)
        finally:
            os.close(fd)
        if len(data) != n:
            raise ContentError(f"blob {self.digest}: staged copy is truncated")
        return data


class Sink(Protocol):
    """Where a blob's bytes go while they are hashed: the one thing that differs between an
    import (a staging directory) and an inspection (nowhere), so both read and check alike."""

    def stage(
        self,
        source: IO[bytes],
        size: int,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
        keep_limit: int,
    ) -> StagedBlob:
        """Consume exactly *size* bytes of *source* into *hasher*; the blob, verified against
        *expected* when given (:class:`ContentError` naming *what* otherwise, or when the
        source is short). *keep_limit*: see :meth:`Ingest.stage`."""


class HashOnly:
    """The sink of ``archive inspect``: nothing is written. A blob is kept in memory when it
    is at most *keep_limit* bytes and looks like JSON (it may be a manifest or config); of
    the others, only the first bytes (to sniff a layer's compression)."""

    def stage(
        self,
        source: IO[bytes],
        size: int,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
        keep_limit: int,
    ) -> StagedBlob:
        kept = bytearray()
        for chunk in read_chunks(source, size, what, 1):
            if len(kept) < KEPT_HEAD or (size <= keep_limit and _json_like(kept)):
                kept += chunk
            hasher.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        if not (size <= keep_limit and _json_like(kept)):
            kept = kept[:KEPT_HEAD]
        digest = _checked(hasher, expected, what)
        return StagedBlob(digest, size, None, bytes(kept))


#: Stage nothing, only hash and check (see :class:`HashOnly`).
HASH_ONLY: Final = HashOnly()


def read_chunks(
    source: IO[bytes],
    size: int,
    what: str,
    buffers: int,
    reuse: Callable[[int], None] | None = None,
) -> Iterator[memoryview]:
    """Exactly *size* bytes of *source*, in chunks read into *buffers* buffers in rotation;
    :class:`ContentError` naming *what* when the source ends first. *reuse(turn)* is called
    before the buffer of chunk number *turn* is read into again (its chunk must be done with).
    """
    chunk_size = pipeline_chunk(size)
    views = [memoryview(bytearray(chunk_size)) for _ in range(buffers)]
    remaining, turn = size, 0
    while remaining:
        view = views[turn % buffers]
        if reuse is not None:
            reuse(turn - buffers)
        n = source.readinto(view[: min(remaining, chunk_size)])  # type: ignore[attr-defined]
        if not n:
            raise ContentError(f"{what}: truncated, {size - remaining} of {size} bytes present")
        yield view[:n]
        remaining -= n
        turn += 1


def pipeline_chunk(size: int) -> int:
    """The chunk size of a staging of *size* bytes."""
    return min(PIPELINE_CHUNK, max(size, 1))


class StagingDir:
    """The sink of an import or pull: blobs are written into one staging directory."""

    def __init__(self, ingest: Ingest, directory: Path) -> None:
        self.ingest = ingest
        self.directory = directory

    def stage(
        self,
        source: IO[bytes],
        size: int,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
        keep_limit: int,
    ) -> StagedBlob:
        """A small blob goes into the pack; a larger one into a file of its own, copied by
        the kernel from a range of a file when it can, else read and written."""
        if size <= PACK_LIMIT:
            return self._packed(source, size, hasher, expected, what, on_chunk)
        path = self.directory / os.urandom(16).hex()
        if self._copyable(source, size):
            pool = self.ingest.pool()
            synced = copy_and_hash(source, size, path, hasher, what, on_chunk, pool)
            if synced is not None:
                return self._verified(hasher, expected, path, size, what, synced)
            self.ingest.kernel_copy = False  # not between these filesystems: read and write
        return self._piped(source, size, path, hasher, expected, what, on_chunk)

    def _copyable(self, source: IO[bytes], size: int) -> TypeGuard[FileRange]:
        """Whether the kernel may copy *source* (a whole range of a file) into the file."""
        return (
            bool(size)
            and self.ingest.kernel_copy
            and isinstance(source, FileRange)
            and source.tell() == 0
        )

    def _piped(
        self,
        source: IO[bytes],
        size: int,
        path: Path,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
    ) -> StagedBlob:
        """Three buffers in rotation: while the writer thread writes one chunk, this thread
        reads the next and hashes it (hashlib and os.write release the GIL), so reading,
        hashing and writing overlap instead of adding up."""
        writer = BackgroundWriter(path, self.ingest.pool())
        chunk_size, arrived, reserved = pipeline_chunk(size), 0, 0
        try:
            for turn, chunk in enumerate(read_chunks(source, size, what, 3, writer.wait_for)):
                # The size is only what the source claims: blocks are reserved as its bytes
                # arrive, a bounded step ahead of them (never past the next chunk's end, so
                # no write in flight overlaps a reservation being made).
                arrived += len(chunk)
                if arrived + chunk_size > reserved:
                    end = min(size, arrived + RESERVE_AHEAD)
                    reserve(writer.fd, end, reserved)
                    reserved = end
                writer.write(turn, chunk)
                hasher.update(chunk)
                if on_chunk is not None:
                    on_chunk(len(chunk))
            synced = writer.finish()
        except BaseException:
            writer.abandon()
            path.unlink(missing_ok=True)
            raise
        return self._verified(hasher, expected, path, size, what, synced)

    def _verified(
        self,
        hasher: hashlib._Hash,
        expected: Digest | None,
        path: Path,
        size: int,
        what: str,
        synced: Future[None],
    ) -> StagedBlob:
        """The staged file as a blob once its digest is checked; removed when it is wrong."""
        try:
            digest = _checked(hasher, expected, what)
        except ContentError:
            with contextlib.suppress(BaseException):
                synced.result()  # the staged file is closed before it is removed
            path.unlink(missing_ok=True)
            raise
        self.ingest.track_sync(path, synced)
        return StagedBlob(digest, size, path)

    def _packed(
        self,
        source: IO[bytes],
        size: int,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
    ) -> StagedBlob:
        """Stage a small blob (at most PACK_LIMIT bytes) by appending it to the staging
        directory's pack, once it is read whole and verified."""
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            n = source.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise ContentError(f"{what}: truncated, {got} of {size} bytes present")
            got += n
        hasher.update(data)
        if on_chunk is not None and size:
            on_chunk(size)
        digest = _checked(hasher, expected, what)
        path, offset = self.ingest.append_to_pack(self.directory, data)
        return StagedBlob(digest, size, path, offset=offset)


class Ingest:
    """The ingest area (``content/ingest/``): its staging directories, and what staging
    shares between blobs: threads for writes and fsyncs, each directory's pack, and the
    fsyncs still running."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._executor: ThreadPoolExecutor | None = None
        #: Each staging directory's pack of small blobs, open while it is written.
        self._packs: dict[Path, Pack] = {}
        self._packs_lock = threading.Lock()
        #: The fsyncs of staged files still running or failed, by path; commit waits for one.
        self._syncing: dict[str, Future[None]] = {}
        #: Whether the kernel may copy a file's range into a staged file (Linux only).
        self.kernel_copy = hasattr(os, "copy_file_range")

    def pool(self) -> ThreadPoolExecutor:
        """Threads for copies, writes and fsyncs: they release the GIL, so they overlap
        hashing (one more than a blob's copy and write need, for the previous blob's fsync)."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor  # not every command writes

            self._executor = ThreadPoolExecutor(3, thread_name_prefix="cargohold-io")
        return self._executor

    def staging_dir(self, name: str) -> Path:
        """A private directory for one writer (one import's lease)."""
        path = self.directory / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sink(self, staging: Path) -> StagingDir:
        """The sink that writes blobs into *staging* (a directory from :meth:`staging_dir`)."""
        return StagingDir(self, staging)

    def stage(
        self,
        source: IO[bytes],
        size: int,
        sink: Sink,
        expected: Digest | None,
        what: str,
        algorithm: str,
        on_chunk: OnChunk | None,
        keep_limit: int,
    ) -> StagedBlob:
        """Stage *size* bytes of *source* into *sink*, hashed with *expected*'s algorithm or
        *algorithm*; a full disk is reported as one line naming *what*."""
        hasher = expected.hasher() if expected is not None else hashlib.new(algorithm)
        try:
            return sink.stage(source, size, hasher, expected, what, on_chunk, keep_limit)
        except OSError as exc:
            raise_if_full(exc, what, f"the store ({self.directory})")
            raise

    def append_to_pack(self, staging: Path, data: bytes | bytearray) -> tuple[Path, int]:
        """Append *data* to *staging*'s pack; the pack's path and the data's offset in it."""
        with self._packs_lock:  # a pull stages its documents from several threads
            pack = self._packs.get(staging)
            if pack is None:
                pack = self._packs[staging] = Pack(staging / PACK_NAME)
            return pack.path, pack.append(data)

    def settle(self, staging: Path) -> None:
        """Make what is staged under *staging* durable now: its pack and the fsyncs of its
        files still running, then the directory (a resumable import records its progress
        only after this, so a power loss cannot leave it trusting a blob half on disk)."""
        with self._packs_lock:
            pack = self._packs.get(staging)
        if pack is not None:
            os.fsync(pack.fd)
        prefix = f"{staging}{os.sep}"
        for key, synced in list(self._syncing.items()):
            if key.startswith(prefix):
                synced.result()
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def track_sync(self, path: Path, synced: Future[None]) -> None:
        """Remember a staged file's fsync until it succeeds (the import's blobs hold no
        future each: with its lock and condition, one costs over a kilobyte)."""
        key = str(path)
        self._syncing[key] = synced

        def done(future: Future[None]) -> None:
            if not future.cancelled() and future.exception() is None:
                self._syncing.pop(key, None)

        synced.add_done_callback(done)

    def ready(self, staged: StagedBlob) -> StagedBlob:
        """*staged* as a file of its own whose bytes are on disk: what a commit renames."""
        if staged.packed:
            return self.unpacked(staged)
        synced = self._syncing.pop(str(staged.path), None)
        if synced is not None:
            synced.result()  # never rename a file whose bytes may not be on disk yet
        return staged

    def unpacked(self, staged: StagedBlob) -> StagedBlob:
        """A packed blob written out to a file of its own beside the pack, and fsynced."""
        assert staged.path is not None and staged.packed
        data = staged.read()
        path = staged.path.parent / os.urandom(16).hex()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            raise_if_full(exc, f"blob {staged.digest}", f"the store ({self.directory})")
            raise
        return StagedBlob(staged.digest, staged.size, path)

    def gzipped(self, source: StagedBlob, staging: Path) -> StagedBlob:
        """A gzip-compressed copy of a staged blob, hashed as it is written (one pass)."""
        assert source.path is not None, "only a written blob can be compressed"
        import gzip

        path = staging / os.urandom(16).hex()
        with path.open("xb") as raw, source.open() as data:
            counter = HashingWriter(raw, hashlib.new(source.digest.algorithm))
            with gzip.GzipFile(fileobj=counter, mode="wb", mtime=0, compresslevel=6) as out:
                shutil.copyfileobj(data, out, CHUNK_SIZE)
            raw.flush()
            os.fsync(raw.fileno())
        return StagedBlob(
            Digest(counter.hasher.name, counter.hasher.hexdigest()), counter.size, path
        )

    def remove_staging(self, name: str) -> None:
        """Remove a staging directory, and close the packs open in it (or below it)."""
        top = self.directory / name
        with self._packs_lock:
            packs = [p for p in self._packs if p == top or p.is_relative_to(top)]
            closing = [self._packs.pop(p) for p in packs]
        for pack in closing:
            pack.close()
        shutil.rmtree(top, ignore_errors=True)

    def staging_names(self) -> list[str]:
        try:
            return os.listdir(self.directory)
        except FileNotFoundError:
            return []


def _checked(hasher: hashlib._Hash, expected: Digest | None, what: str) -> Digest:
    """What *hasher* computed, which must be *expected* when that is given."""
    digest = _computed(hasher, expected)
    if expected is not None and digest != expected:
        raise ContentError(f"{what}: content has digest {digest}, not {expected}")
    return digest


def _computed(hasher: hashlib._Hash, expected: Digest | None) -> Digest:
    """What *hasher* computed: *expected* itself when it matches (an archive's blobs are kept
    by the thousand, and each copy of a digest costs some 200 bytes)."""
    computed = hasher.hexdigest()
    if expected is not None and expected.hex == computed and expected.algorithm == hasher.name:
        return expected
    return Digest(hasher.name, computed)


def _json_like(head: bytes | bytearray) -> bool:
    """Whether a blob's first bytes could start a JSON object (a document, not a layer)."""
    stripped = bytes(head).lstrip(b" \t\r\n")
    return not stripped or stripped.startswith(b"{")
