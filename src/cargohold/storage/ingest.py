"""Staging: blobs on their way into the store, hashed and verified as they arrive.

Bytes stream into a private directory under ``content/ingest/`` (one per writer, named by its
lease) while they are hashed; the size and digest are checked before a :class:`StagedBlob` is
handed back, and only a staged blob can be committed. Where the bytes go is a
:class:`~cargohold.storage.staged.Sink`: a staging directory (:meth:`Ingest.sink`), or nowhere
at all (:data:`~cargohold.storage.staged.HASH_ONLY`, for an archive that is only inspected).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, TypeGuard, cast

from ..errors import ContentError
from ..oci.digests import Digest
from .files import CHUNK_SIZE, fsync_dir, raise_if_full, reserve, write_all
from .staged import OnChunk, Sink, StagedBlob, checked_digest, pipeline_chunk, read_chunks
from .writers import (
    PACK_NAME,
    Alongside,
    BackgroundWriter,
    FileRange,
    HashingWriter,
    Pack,
    copy_and_hash,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

#: Blobs at most this large are staged into one file shared by the staging directory (its
#: pack), not a file each: creating, fsyncing and deleting a file costs far more than a tiny
#: blob's bytes (an archive may hold 150,000 of them, most of them perhaps never needed).
#: Only a blob the import commits is written out to a file of its own, and fsynced then.
PACK_LIMIT: Final = 64 << 10
#: How far a reservation of blocks runs ahead of the bytes that have arrived, when the source
#: is not a file whose size bounds it (a pipe may claim 8 GiB and send nothing).
RESERVE_AHEAD: Final = 64 << 20

#: Blobs at least this large, with a digest known before they are read, may be staged
#: alongside the next ones (see :class:`~cargohold.storage.writers.Alongside`); smaller ones
#: are not worth a thread's hand-over.
ALONGSIDE_MIN: Final = 8 << 20


class StagingDir:
    """The sink of an import or pull: blobs are written into one staging directory.

    With *alongside*, a large blob copied from a file and whose digest is known is staged on
    a thread of its own while the caller reads on (:class:`Alongside`): :meth:`stage` returns
    it before it is verified, the caller must :meth:`wait` before closing the file it read
    from, and the blob's :meth:`StagedBlob.verified` (which its readers call) waits for it.
    """

    def __init__(self, ingest: Ingest, directory: Path, alongside: Alongside | None) -> None:
        self.ingest = ingest
        self.directory = directory
        self.alongside = alongside

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
            if self._may_go_alongside(size, expected):
                assert expected is not None and self.alongside is not None
                return self._alongside(self.alongside, source, size, path, hasher, expected, what)
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

    def wait(self) -> None:
        """Wait until every blob staged alongside is verified; raises the first failure."""
        if self.alongside is not None:
            self.alongside.wait()

    def cancel(self) -> None:
        """Stop the blobs staged alongside at their next chunk (see :meth:`Alongside.cancel`)."""
        if self.alongside is not None:
            self.alongside.cancel()

    def _may_go_alongside(self, size: int, expected: Digest | None) -> bool:
        if self.alongside is None or expected is None or size < ALONGSIDE_MIN:
            return False
        failed = self.alongside.failure()
        if failed is not None:
            raise failed  # a blob staged alongside was wrong: stop reading now
        return self.alongside.free()

    def _alongside(
        self,
        alongside: Alongside,
        source: FileRange,
        size: int,
        path: Path,
        hasher: hashlib._Hash,
        expected: Digest,
        what: str,
    ) -> StagedBlob:
        """Stage and verify the blob on a thread of the :class:`Alongside` (no per-blob
        progress: the caller has gone on to the next member by then)."""

        def job() -> Future[None]:
            pool = self.ingest.pool()
            synced = copy_and_hash(source, size, path, hasher, what, None, pool, alongside.stopping)
            if synced is None:
                self.ingest.kernel_copy = False
                synced = self._written(cast(IO[bytes], source), size, path, hasher, None, what)
            self._check(hasher, expected, path, what, synced)
            return synced

        staged, durable = alongside.submit(job)
        self.ingest.track_sync(path, durable)
        return StagedBlob(expected, size, path, pending=staged)

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
        synced = self._written(source, size, path, hasher, on_chunk, what)
        return self._verified(hasher, expected, path, size, what, synced)

    def _written(
        self,
        source: IO[bytes],
        size: int,
        path: Path,
        hasher: hashlib._Hash,
        on_chunk: OnChunk | None,
        what: str,
    ) -> Future[None]:
        """Three buffers in rotation: while the writer thread writes one chunk, this thread
        reads the next and hashes it (hashlib and os.write release the GIL), so reading,
        hashing and writing overlap instead of adding up. Returns the future of the file's
        fsync; the caller checks the digest."""
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
            return writer.finish()
        except BaseException:
            writer.abandon()
            path.unlink(missing_ok=True)
            raise

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
        digest = self._check(hasher, expected, path, what, synced)
        self.ingest.track_sync(path, synced)
        return StagedBlob(digest, size, path)

    @staticmethod
    def _check(
        hasher: hashlib._Hash, expected: Digest | None, path: Path, what: str, synced: Future[None]
    ) -> Digest:
        """The staged file's digest, which must be *expected*; a wrong file is removed."""
        try:
            return checked_digest(hasher, expected, what)
        except ContentError:
            with contextlib.suppress(BaseException):
                synced.result()  # the staged file is closed before it is removed
            path.unlink(missing_ok=True)
            raise

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
        digest = checked_digest(hasher, expected, what)
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
        self._alongside_pool: ThreadPoolExecutor | None = None

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

    def sink(self, staging: Path, alongside: bool = False) -> StagingDir:
        """The sink that writes blobs into *staging* (a directory from :meth:`staging_dir`);
        *alongside*: large blobs may be staged while the caller reads on (see
        :class:`StagingDir`; the caller then calls its ``wait``)."""
        jobs = min((os.cpu_count() or 1) - 1, 3)  # the caller hashes too
        if not alongside or jobs < 1:
            return StagingDir(self, staging, None)
        if self._alongside_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._alongside_pool = ThreadPoolExecutor(jobs, thread_name_prefix="cargohold-stage")
        return StagingDir(self, staging, Alongside(self._alongside_pool, jobs))

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
        fsync_dir(staging)

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
