"""The blob store: content-addressed files under ``content/blobs/<alg>/<hex>``.

Writes follow containerd's local content store: bytes stream into a private file under
``content/ingest/`` while they are hashed, the size and digest are checked, the file is fsynced
and then renamed into place. A rename within one filesystem is atomic, so a reader or a crash
only ever sees a whole, verified blob or none. Committed blobs are made read-only so that an
accidental write fails instead of corrupting content that other images share.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import mmap
import os
import shutil
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import (
    IO,
    TYPE_CHECKING,
    BinaryIO,
    Final,
    Protocol,
    TypeVar,
    cast,
    runtime_checkable,
)

from ..errors import ContentError, DamagedBlobError, NotFoundError, StorageFullError
from ..oci.digests import ALGORITHMS, Digest
from ..oci.mediatypes import MAX_JSON_LIMIT

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Read and write in chunks this large: big enough that per-call overhead vanishes, small
#: enough that memory stays flat whatever the blob's size.
CHUNK_SIZE: Final = 1 << 20
#: Chunks of the staging pipeline: larger, so that handing them between threads costs little.
_PIPELINE_CHUNK: Final = 4 << 20
_BLOB_MODE: Final = 0o444
#: Errors of ``copy_file_range`` that mean the kernel cannot copy between these two files.
_NO_KERNEL_COPY: Final = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
)
#: Unlinks or fsyncs in flight at once when many blobs are deleted or committed (see
#: BlobStore.delete_many and commit_many).
_MANY_THREADS: Final = 32
#: The name of a staging directory's pack (staged files have 32 hexadecimal digits).
_PACK_NAME: Final = "pack"
#: Write errors that mean the store's disk (or the process's file size limit) is full.
_OUT_OF_SPACE: Final = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


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


@runtime_checkable
class FileRange(Protocol):
    """A source whose bytes are a range of a regular file (a member of an archive file).

    Its bytes can be copied by the kernel into the staged file, and hashed there: they then
    never pass through a user-space buffer, and what is hashed is exactly what is stored,
    whatever happens to the source file meanwhile.
    """

    def tell(self) -> int:
        """How many of the source's bytes were consumed (staging by copy starts at 0)."""

    def copy_range(self, fd: int, start: int, length: int) -> int:
        """Copy bytes [start, start + length) of the source to *fd* at offset *start*, with
        ``copy_file_range``; returns how many were copied (fewer at the end of the file)."""

    def consumed(self, n: int) -> None:
        """*n* more bytes of the source were staged (the source's position and progress)."""


#: A blob only hashed keeps this many leading bytes (enough to sniff its compression).
_KEPT_HEAD: Final = 512
#: Blobs at most this large are staged into one file shared by the staging directory (its
#: pack), not a file each: creating, fsyncing and deleting a file costs far more than a tiny
#: blob's bytes (an archive may hold 150,000 of them, most of them perhaps never needed).
#: Only a blob the import commits is written out to a file of its own, and fsynced then.
PACK_LIMIT: Final = 64 << 10
#: How far a reservation of blocks runs ahead of the bytes that have arrived, when the source
#: is not a file whose size bounds it (a pipe may claim 8 GiB and send nothing).
RESERVE_AHEAD: Final = 64 << 20


class BlobStore:
    """Verified, immutable blobs on disk, shared by every namespace of a store."""

    #: Documents in the store were verified on the way in, perhaps under a raised limit.
    document_limit: int = MAX_JSON_LIMIT

    def __init__(self, root: Path) -> None:
        self._executor: ThreadPoolExecutor | None = None
        #: Each staging directory's pack of small blobs, open while it is written.
        self._packs: dict[Path, _Pack] = {}
        self._packs_lock = threading.Lock()
        #: The fsyncs of staged files still running or failed, by path; commit waits for one.
        self._syncing: dict[str, Future[None]] = {}
        self._kernel_copy = hasattr(os, "copy_file_range")  # Linux only
        self.root = root
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"

    def _pool(self) -> ThreadPoolExecutor:
        """Threads for copies, writes and fsyncs: they release the GIL, so they overlap
        hashing (one more than a blob's copy and write need, for the previous blob's fsync)."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor  # not every command writes

            self._executor = ThreadPoolExecutor(3, thread_name_prefix="cargohold-io")
        return self._executor

    def path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex

    def _path_name(self, digest: Digest) -> str:
        """The blob's path as a string: for the checks made once per archive member (a Path
        costs more time, and interns the digest's hex digits for as long as it lives)."""
        return f"{self.blobs_dir}/{digest.algorithm}/{digest.hex}"

    def exists(self, digest: Digest) -> bool:
        return os.path.isfile(self._path_name(digest))

    def blob_size(self, digest: Digest) -> int | None:
        """The blob's size on disk, or None when the store does not have it.

        An entry that is there but cannot be followed (a symlink to nothing, a loop) counts
        as present with its own size: :meth:`open` then says what is wrong with it, and
        ``content rm`` can remove it.
        """
        name = self._path_name(digest)
        try:
            return os.stat(name).st_size
        except OSError:
            pass
        try:
            return os.lstat(name).st_size
        except FileNotFoundError:
            return None

    def regular_size(self, digest: Digest) -> int | None:
        """The size of the blob when it is a regular file (the only thing a blob may be), else
        None: absent, or an entry that :meth:`open` would refuse."""
        try:
            st = os.lstat(self._path_name(digest))
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def open(self, digest: Digest, verify: bool = False) -> BinaryIO:
        """The committed blob, for reading. Only a regular file is a blob: an entry that is a
        symlink, FIFO, device, socket or directory is refused (:class:`DamagedBlobError`),
        never followed or opened in a way that could block or touch a device.

        With *verify*, the reader hashes what it reads (it must be read in order, with
        ``read(n)``) and the read that finds the end raises :class:`DamagedBlobError` when the
        bytes do not match *digest*: every byte is handed out first, then the error.
        """
        f = open_regular(self.path(digest), digest)
        if not verify:
            return f
        return cast(BinaryIO, _VerifyingReader(f, digest))

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """A small blob (a manifest, index or config) in memory; refuses anything over *limit*."""
        with self.open(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ContentError(f"blob {digest} is larger than {limit} bytes")
        # Documents are small and decide what else is read, kept or deleted: a damaged one is
        # reported as the store's fault (with the repair), never parsed as if it were valid.
        if Digest.of_bytes(data, digest.algorithm) != digest:
            raise DamagedBlobError(digest, "does not match its digest")
        return data

    def iter_digests(self) -> Iterator[Digest]:
        """Every committed blob; files whose names are not valid digests are skipped."""
        for digest, _, _ in self.iter_blobs():
            yield digest

    def iter_blobs(self) -> Iterator[tuple[Digest, int, float]]:
        """Every committed blob with its size and modification time, from one directory scan
        (a store holds tens of thousands of blobs: no per-blob path objects or lookups)."""
        for algorithm in ALGORITHMS:
            try:
                entries = os.scandir(self.blobs_dir / algorithm)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    try:
                        digest = Digest.from_hex(algorithm, entry.name)
                        st = entry.stat(follow_symlinks=False)
                    except (ValueError, FileNotFoundError):
                        continue
                    yield digest, st.st_size, st.st_mtime

    # -- writing -------------------------------------------------------------------------

    def staging_dir(self, name: str) -> Path:
        """A private directory under ``ingest/`` for one writer (one import's lease)."""
        path = self.ingest_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stage(
        self,
        source: IO[bytes],
        size: int,
        staging: Path | None,
        expected: Digest | None = None,
        what: str = "blob",
        algorithm: str = "sha256",
        on_chunk: Callable[[int], None] | None = None,
        keep_limit: int = 0,
    ) -> StagedBlob:
        """Copy exactly *size* bytes from *source* into *staging*, hashing as they pass.

        The copy is verified against *expected* (when given) before it returns; a short read
        or a wrong digest raises :class:`ContentError` naming *what*. With *staging* None
        nothing is written: the bytes are hashed, and kept in memory when the blob is at most
        *keep_limit* bytes and looks like JSON (it may be a manifest or config).
        """
        hasher = expected.hasher() if expected is not None else hashlib.new(algorithm)
        if staging is not None and size <= PACK_LIMIT:
            return self._stage_packed(source, size, staging, hasher, expected, what, on_chunk)
        path = staging / os.urandom(16).hex() if staging is not None else None
        kept = bytearray()
        synced: Future[None] | None = None
        if (
            path is not None
            and size
            and self._kernel_copy
            and isinstance(source, FileRange)
            and source.tell() == 0
        ):
            try:
                synced = self._stage_copied(source, size, path, hasher, what, on_chunk)
            except _KernelCopyUnavailable:
                self._kernel_copy = False  # not between these filesystems: read and write
            else:
                return self._verified(hasher, expected, path, size, what, kept, synced)
        writer = _Writer(path, self._pool()) if path is not None else None
        try:
            # Three buffers in rotation: while the writer thread writes one chunk, this thread
            # reads the next and hashes it (hashlib and os.write release the GIL), so reading,
            # hashing and writing overlap instead of adding up.
            chunk_size = min(_PIPELINE_CHUNK, max(size, 1))
            buffers = [memoryview(bytearray(chunk_size)) for _ in range(3 if writer else 1)]
            remaining, turn, reserved = size, 0, 0
            while remaining:
                view = buffers[turn % len(buffers)]
                if writer is not None:
                    writer.wait_for(turn - len(buffers))  # this buffer's previous write
                n = source.readinto(view[: min(remaining, chunk_size)])  # type: ignore[attr-defined]
                if not n:
                    raise ContentError(
                        f"{what}: truncated, {size - remaining} of {size} bytes present"
                    )
                chunk = view[:n]
                if writer is not None:
                    # The size is only what the source claims: blocks are reserved as its
                    # bytes arrive, a bounded step ahead of them (never past the next chunk's
                    # end, so no write in flight overlaps a reservation being made).
                    arrived = size - remaining + n
                    if arrived + chunk_size > reserved:
                        end = min(size, arrived + RESERVE_AHEAD)
                        reserve(writer.fd, end, reserved)
                        reserved = end
                    writer.write(turn, chunk)
                elif len(kept) < _KEPT_HEAD or (size <= keep_limit and _json_like(kept)):
                    kept += chunk
                hasher.update(chunk)
                remaining -= n
                turn += 1
                if on_chunk is not None:
                    on_chunk(n)
            synced = writer.finish() if writer is not None else None
        except BaseException as exc:
            if writer is not None:
                writer.abandon()
            if path is not None:
                path.unlink(missing_ok=True)
            raise_if_full(exc, what, f"the store ({self.ingest_dir})")
            raise
        if path is None and not (size <= keep_limit and _json_like(kept)):
            kept = kept[:_KEPT_HEAD]
        return self._verified(hasher, expected, path, size, what, kept, synced)

    def _verified(
        self,
        hasher: hashlib._Hash,
        expected: Digest | None,
        path: Path | None,
        size: int,
        what: str,
        kept: bytearray,
        synced: Future[None] | None,
    ) -> StagedBlob:
        digest = _digest(hasher, expected)
        if expected is not None and digest != expected:
            if synced is not None:
                with contextlib.suppress(BaseException):
                    synced.result()  # the staged file is closed before it is removed
            if path is not None:
                path.unlink(missing_ok=True)
            raise ContentError(f"{what}: content has digest {digest}, not {expected}")
        if path is not None and synced is not None:
            self._track_sync(path, synced)
        return StagedBlob(digest, size, path, bytes(kept))

    def _track_sync(self, path: Path, synced: Future[None]) -> None:
        """Remember a staged file's fsync until it succeeds (the import's blobs hold no
        future each: with its lock and condition, one costs over a kilobyte)."""
        key = str(path)
        self._syncing[key] = synced

        def done(future: Future[None]) -> None:
            if not future.cancelled() and future.exception() is None:
                self._syncing.pop(key, None)

        synced.add_done_callback(done)

    def _stage_packed(
        self,
        source: IO[bytes],
        size: int,
        staging: Path,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: Callable[[int], None] | None,
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
        digest = _digest(hasher, expected)
        if expected is not None and digest != expected:
            raise ContentError(f"{what}: content has digest {digest}, not {expected}")
        try:
            with self._packs_lock:  # a pull stages its documents from several threads
                pack = self._packs.get(staging)
                if pack is None:
                    pack = self._packs[staging] = _Pack(staging / _PACK_NAME)
                offset = pack.append(data)
        except OSError as exc:
            raise_if_full(exc, what, f"the store ({self.ingest_dir})")
            raise
        return StagedBlob(digest, size, pack.path, offset=offset)

    def _unpacked(self, staged: StagedBlob) -> StagedBlob:
        """A packed blob written out to a file of its own beside the pack, and fsynced."""
        assert staged.path is not None and staged.packed
        data = staged.read()
        path = staged.path.parent / os.urandom(16).hex()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            raise_if_full(exc, f"blob {staged.digest}", f"the store ({self.ingest_dir})")
            raise
        return StagedBlob(staged.digest, staged.size, path)

    def _stage_copied(
        self,
        source: FileRange,
        size: int,
        path: Path,
        hasher: hashlib._Hash,
        what: str,
        on_chunk: Callable[[int], None] | None,
    ) -> Future[None]:
        """Stage by kernel copy: a pool thread copies chunk k + 1 into the staged file while
        this thread hashes chunk k where it landed (mapped, not read: no copy at all here).

        Returns the future of the staged file's fsync. Raises :class:`_KernelCopyUnavailable`
        (having removed the file) when the very first copy finds the kernel cannot do it.
        """
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        pool = self._pool()
        pending: list[tuple[int, int, Future[int]]] = []
        planned = 0

        def copy(start: int, length: int) -> int:
            done = 0
            while done < length:
                got = source.copy_range(fd, start + done, length - done)
                if not got:
                    break
                done += got
            return done

        def plan_next() -> None:
            nonlocal planned
            length = min(_PIPELINE_CHUNK, size - planned)
            pending.append((planned, length, pool.submit(copy, planned, length)))
            planned += length

        try:
            reserve(fd, size)  # a range of a file: the file holds all of it (see FileRange)
            plan_next()
            while pending:
                start, length, future = pending.pop(0)
                try:
                    got = future.result()
                except OSError as exc:
                    if start == 0 and exc.errno in _NO_KERNEL_COPY:
                        raise _KernelCopyUnavailable from None
                    raise
                if got < length:
                    raise ContentError(f"{what}: truncated, {start + got} of {size} bytes present")
                if planned < size:
                    plan_next()
                with mmap.mmap(fd, length, offset=start, prot=mmap.PROT_READ) as mapped:
                    hasher.update(mapped)
                start_writeback(fd, length, start + length)
                source.consumed(length)
                if on_chunk is not None:
                    on_chunk(length)
        except BaseException as exc:
            for _, _, future in pending:
                with contextlib.suppress(BaseException):
                    future.result()
            os.close(fd)
            path.unlink(missing_ok=True)
            raise_if_full(exc, what, f"the store ({self.ingest_dir})")
            raise

        def sync() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        return pool.submit(sync)

    def stage_bytes(self, data: bytes, staging: Path | None, what: str = "blob") -> StagedBlob:
        return self.stage(io.BytesIO(data), len(data), staging, what=what, keep_limit=len(data))

    def stage_gzipped(self, source: StagedBlob, staging: Path) -> StagedBlob:
        """A gzip-compressed copy of a staged blob, hashed as it is written (one pass)."""
        assert source.path is not None, "only a written blob can be compressed"
        import gzip

        path = staging / os.urandom(16).hex()
        with path.open("xb") as raw, source.open() as data:
            counter = _HashingWriter(raw, hashlib.new(source.digest.algorithm))
            with gzip.GzipFile(fileobj=counter, mode="wb", mtime=0, compresslevel=6) as out:
                shutil.copyfileobj(data, out, CHUNK_SIZE)
            raw.flush()
            os.fsync(raw.fileno())
        return StagedBlob(
            Digest(counter.hasher.name, counter.hasher.hexdigest()), counter.size, path
        )

    def commit(self, staged: StagedBlob) -> bool:
        """Move a staged blob into place; False when the store already had a copy.

        A staged blob was verified as it was written, so it replaces whatever copy is there:
        an import reads a blob the store holds only when that copy cannot be trusted for it
        (another namespace's, or damaged), and then the verified copy must win. The rename is
        atomic, and readers that opened the old copy keep reading it.

        The caller fsyncs the blob directories once per batch with :meth:`sync`.
        """
        assert staged.path is not None, "a blob that was only hashed cannot be committed"
        target = self.path(staged.digest)
        if staged.packed:
            staged = self._unpacked(staged)
        else:
            synced = self._syncing.pop(str(staged.path), None)
            if synced is not None:
                synced.result()  # never rename a file whose bytes may not be on disk yet
        assert staged.path is not None
        existed = os.path.lexists(target)
        os.chmod(staged.path, _BLOB_MODE)
        try:
            os.rename(staged.path, target)
        except FileNotFoundError:  # the store's first blob of this algorithm
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged.path, target)
        return not existed

    def commit_many(self, blobs: Iterable[StagedBlob]) -> list[bool]:
        """:meth:`commit` each of *blobs*, in order. The packed ones are written out to files
        of their own by many threads at once, a little ahead of their renames: each waits on
        its fsync, and the filesystem's journal serves many waiting fsyncs with one commit."""

        def prepared(blob: StagedBlob) -> StagedBlob:
            return self._unpacked(blob) if blob.packed else blob

        return [self.commit(blob) for blob in _parallel(prepared, blobs, _MANY_THREADS)]

    def sync(self) -> None:
        """Make renames into the blob directories durable before metadata points at them."""
        for directory in [
            *(self.blobs_dir / algorithm for algorithm in ALGORITHMS),
            self.blobs_dir,  # a new algorithm directory is an entry here
            self.root,  # and a new blobs directory one here
        ]:
            if directory.is_dir():
                _fsync_dir(directory)

    def delete(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def delete_many(self, digests: Iterable[Digest]) -> None:
        """Delete blobs with many unlinks in flight at once.

        An unlink can wait on the device: on a filesystem mounted with ``discard`` it waits
        for the discard of the file's blocks (about 0.1 ms each on a virtual disk), so one at
        a time, 10,000 small blobs take a second; thirty-two at once take half that.
        """
        paths = [self._path_name(digest) for digest in digests]

        def unlink(path: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        if len(paths) < 8:
            for path in paths:
                unlink(path)
            return
        for _ in _parallel(unlink, paths, _MANY_THREADS):
            pass

    def remove_staging(self, name: str) -> None:
        with self._packs_lock:
            pack = self._packs.pop(self.ingest_dir / name, None)
        if pack is not None:
            pack.close()
        shutil.rmtree(self.ingest_dir / name, ignore_errors=True)

    def staging_names(self) -> list[str]:
        try:
            return os.listdir(self.ingest_dir)
        except FileNotFoundError:
            return []

    def verify(self, digest: Digest) -> bool:
        """Re-hash a committed blob; False when its bytes no longer match its name, or when
        it is not a regular file at all."""
        hasher = digest.hasher()
        try:
            f = self.open(digest)
        except DamagedBlobError:
            return False
        with f:
            while chunk := f.read(CHUNK_SIZE):
                hasher.update(chunk)
        return hasher.hexdigest() == digest.hex


class _VerifyingReader(io.RawIOBase):
    """A blob's bytes as they are read, hashed; at the end they must match the digest.

    Unbuffered, so that no bytes read before the end are held back when the end raises; and
    without a descriptor, since a kernel copy from one would bypass the hash.
    """

    def __init__(self, raw: BinaryIO, digest: Digest) -> None:
        self._raw = raw
        self._digest = digest
        self._hasher = digest.hasher()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        elif self._hasher.hexdigest() != self._digest.hex:
            actual = f"{self._hasher.name}:{self._hasher.hexdigest()}"
            raise DamagedBlobError(
                self._digest, f"does not match its digest (its bytes hash to {actual})"
            )
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _KernelCopyUnavailable(Exception):
    """copy_file_range cannot copy from this source to the store (another filesystem, on an
    older kernel): the blob is read and written instead."""


class _HashingWriter:
    """A file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes], hasher: hashlib._Hash) -> None:
        self.raw = raw
        self.hasher = hasher
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _Writer:
    """Writes a staged file's chunks in order on a background thread, then fsyncs it there.

    Writes go to one single-threaded queue in submission order (the pool's first thread is
    reserved by submitting each write only after the previous one), so the file is written
    sequentially; :meth:`finish` returns a future of the fsync and close.
    """

    def __init__(self, path: Path, pool: ThreadPoolExecutor) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.pool = pool
        self.pending: dict[int, Future[None]] = {}
        self.last: Future[None] | None = None

    def write(self, turn: int, chunk: memoryview) -> None:
        previous = self.last

        def job() -> None:
            if previous is not None:
                previous.result()
            view = chunk
            while view:
                view = view[os.write(self.fd, view) :]
            start_writeback(self.fd, len(chunk))

        self.last = self.pending[turn] = self.pool.submit(job)

    def wait_for(self, turn: int) -> None:
        future = self.pending.pop(turn, None)
        if future is not None:
            future.result()

    def finish(self) -> Future[None]:
        previous = self.last
        fd = self.fd

        def job() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        if previous is not None:
            previous.result()  # a write error belongs to this blob, reported now
        self.pending.clear()
        return self.pool.submit(job)

    def abandon(self) -> None:
        for future in self.pending.values():
            with contextlib.suppress(BaseException):
                future.result()
        if self.last is not None:
            with contextlib.suppress(BaseException):
                self.last.result()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_regular(path: Path, digest: Digest) -> BinaryIO:
    """Open the store's file for *digest* at *path* for reading, if it is a regular file.

    The entry is looked at first (``lstat``) so that a device node is never opened (opening
    one can act on it), then opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink swapped in
    meanwhile fails, a FIFO cannot block) and checked again on the open descriptor: what is
    read is a regular file. The descriptor is then made blocking again.
    """
    try:
        entry = path.lstat()
    except FileNotFoundError:
        raise NotFoundError(f"blob {digest} not found in the store") from None
    if not stat.S_ISREG(entry.st_mode):
        raise DamagedBlobError(digest, f"is {_file_kind(entry.st_mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        f = open(path, "rb", opener=lambda name, _: os.open(name, flags))  # noqa: SIM115
    except FileNotFoundError:
        raise NotFoundError(f"blob {digest} not found in the store") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DamagedBlobError(digest, "is a symbolic link, not a regular file") from None
        raise
    mode = os.fstat(f.fileno()).st_mode
    if not stat.S_ISREG(mode):  # replaced between the look and the open
        f.close()
        raise DamagedBlobError(digest, f"is {_file_kind(mode)}, not a regular file")
    os.set_blocking(f.fileno(), True)
    return f


def _file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for an error message."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    )
    return next((name for test, name in kinds if test(mode)), "an unknown kind of file")


class _Pack:
    """A staging directory's small blobs, one after another in one file (see PACK_LIMIT)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.size = 0

    def append(self, data: bytes | bytearray) -> int:
        """Write *data* at the end; returns its offset."""
        offset, view = self.size, memoryview(data)
        while view:
            view = view[os.pwrite(self.fd, view, offset + len(data) - len(view)) :]
        self.size += len(data)
        return offset

    def close(self) -> None:
        os.close(self.fd)


def _parallel(function: Callable[[_T], _R], items: Iterable[_T], threads: int) -> Iterator[_R]:
    """*function* of each of *items* on *threads* threads, the results in order.

    At most four calls per thread are in flight: a future for each of 150,000 items at once
    would hold about 200 MB.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="cargohold-many") as pool:
        window: deque[Future[_R]] = deque()
        for item in items:
            window.append(pool.submit(function, item))
            if len(window) >= 4 * threads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def raise_if_full(exc: BaseException, what: str, where: str) -> None:
    """Turn an out-of-space write error into one line that names *what* was being written."""
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE:
        raise StorageFullError(f"{what}: {exc.strerror} while writing it to {where}") from None


def reserve(fd: int, end: int, start: int = 0) -> None:
    """Allocate the blocks of bytes [*start*, *end*) of a new file before they are written.

    Writes into reserved blocks cost less (no delayed allocation, and the kernel's copies
    from tar offsets that are not page-aligned run faster), and a full disk fails at once.
    Out-of-space errors are raised (as OSError); a filesystem without ``fallocate`` is
    simply written. Callers reserve only what their source can deliver: a size read from
    an archive's header is a claim, not a fact.
    """
    if end <= start or not hasattr(os, "posix_fallocate"):  # Linux and the BSDs have it
        return
    try:
        os.posix_fallocate(fd, start, end - start)
    except OSError as exc:
        if exc.errno in _OUT_OF_SPACE:
            raise


def start_writeback(fd: int, length: int, end: int | None = None) -> None:
    """Start writing the last *length* bytes written to *fd* (before *end*, by default its
    position) to disk now, not at the fsync.

    On Linux, ``POSIX_FADV_DONTNEED`` starts writeback of a range's dirty pages without
    waiting for it, so the disk works while the next bytes are produced and the final fsync
    has little left to do (it also keeps large copies from flooding the page cache). Not
    every descriptor supports it (pipes do not): then it is simply skipped.
    """
    with contextlib.suppress(OSError, AttributeError):
        if end is None:
            end = os.lseek(fd, 0, os.SEEK_CUR)
        os.posix_fadvise(fd, end - length, length, os.POSIX_FADV_DONTNEED)


def _digest(hasher: hashlib._Hash, expected: Digest | None) -> Digest:
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
