"""How staged bytes reach the disk: on a background thread, by the kernel, or into a pack.

Staging is bound by three costs that can overlap: reading the source, hashing, and writing
(then fsyncing). The writers here take the writing off the hashing thread (hashlib and the
``os`` calls release the GIL), so the three run at once instead of adding up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Protocol, runtime_checkable

from ..errors import ContentError
from .files import reserve, start_writeback, write_all

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

#: Chunks of the staging pipeline: larger than reads elsewhere, so that handing them between
#: threads costs little.
PIPELINE_CHUNK: Final = 4 << 20
#: Bytes of a staged chunk read back at once to be hashed (it is still in the CPU's cache).
HASH_BUFFER: Final = 1 << 20
#: The name of a staging directory's pack (staged files have 32 hexadecimal digits).
PACK_NAME: Final = "pack"
#: Errors of ``copy_file_range`` that mean the kernel cannot copy between these two files.
_NO_KERNEL_COPY: Final = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
)
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


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


class BackgroundWriter:
    """Writes a staged file's chunks in order on a background thread, then fsyncs it there.

    Writes go to one single-threaded queue in submission order (the pool's first thread is
    reserved by submitting each write only after the previous one), so the file is written
    sequentially; :meth:`finish` returns a future of the fsync and close.
    """

    def __init__(self, path: Path, pool: ThreadPoolExecutor) -> None:
        self.fd = os.open(path, _NEW_FILE, 0o600)
        self.pool = pool
        self.pending: dict[int, Future[None]] = {}
        self.last: Future[None] | None = None

    def write(self, turn: int, chunk: memoryview) -> None:
        previous = self.last

        def job() -> None:
            if previous is not None:
                previous.result()
            write_all(self.fd, chunk)
            start_writeback(self.fd, len(chunk))

        self.last = self.pending[turn] = self.pool.submit(job)

    def wait_for(self, turn: int) -> None:
        """Wait until the chunk of *turn* is written (its buffer may then be reused)."""
        future = self.pending.pop(turn, None)
        if future is not None:
            future.result()

    def finish(self) -> Future[None]:
        previous = self.last
        fd = self.fd
        if previous is not None:
            previous.result()  # a write error belongs to this blob, reported now
        self.pending.clear()
        return self.pool.submit(_fsync_and_close, fd)

    def abandon(self) -> None:
        """Wait for the writes in flight, ignoring their errors, and close the file."""
        for future in self.pending.values():
            with contextlib.suppress(BaseException):
                future.result()
        if self.last is not None:
            with contextlib.suppress(BaseException):
                self.last.result()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Pack:
    """A staging directory's small blobs, one after another in one file (see PACK_LIMIT)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, _NEW_FILE, 0o600)
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


class StagingCancelled(Exception):
    """A blob staged alongside was stopped at a chunk's end because its import failed
    elsewhere (a wrong member, Ctrl-C): nothing it staged is used, and its file is gone."""


def copy_and_hash(
    source: FileRange,
    size: int,
    path: Path,
    hasher: hashlib._Hash,
    what: str,
    on_chunk: Callable[[int], None] | None,
    pool: ThreadPoolExecutor,
    stop: threading.Event | None = None,
) -> Future[None] | None:
    """Stage by kernel copy: a pool thread copies chunk k + 1 into the new file at *path*
    while this thread hashes chunk k where it landed: read back from the new file, so what is
    hashed is what is stored. Read, not mapped: the chunk is still in the CPU's cache, and a
    1 MiB read into one reused buffer costs less than faulting in a mapping's 1,024 pages (the
    hashing of a 396 MB archive took 0.25 s instead of 0.32 s), and a file cut short meanwhile
    is an error rather than a SIGBUS.

    Returns the future of the staged file's fsync, or None (having removed the file) when the
    very first copy finds that the kernel cannot copy between these files (another
    filesystem, on an older kernel): the caller then reads and writes instead. Once *stop* is
    set, raises :class:`StagingCancelled` at the next chunk (a blob staged alongside does not
    finish a copy its import has given up on; see :meth:`Alongside.cancel`).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    pending: list[tuple[int, int, Future[int]]] = []
    buffer = memoryview(bytearray(min(HASH_BUFFER, max(size, 1))))
    planned = 0

    def plan_next() -> None:
        nonlocal planned
        length = min(PIPELINE_CHUNK, size - planned)
        pending.append((planned, length, pool.submit(_copy, source, fd, planned, length)))
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
                    os.close(fd)
                    path.unlink(missing_ok=True)
                    return None
                raise
            if got < length:
                raise ContentError(f"{what}: truncated, {start + got} of {size} bytes present")
            if stop is not None and stop.is_set():
                raise StagingCancelled(what)
            if planned < size:
                plan_next()
            _hash_back(fd, start, length, hasher, buffer, what)
            start_writeback(fd, length, start + length)
            source.consumed(length)
            if on_chunk is not None:
                on_chunk(length)
    except BaseException:
        for _, _, future in pending:
            with contextlib.suppress(BaseException):
                future.result()
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return pool.submit(_fsync_and_close, fd)


def _hash_back(
    fd: int, start: int, length: int, hasher: hashlib._Hash, buffer: memoryview, what: str
) -> None:
    """Hash bytes [start, start + length) of the staged file *fd*, read into *buffer*."""
    end = start + length
    while start < end:
        n = os.preadv(fd, [buffer[: min(len(buffer), end - start)]], start)
        if not n:
            raise ContentError(f"{what}: staged copy is shorter than {end} bytes")
        hasher.update(buffer[:n])
        start += n


def _copy(source: FileRange, fd: int, start: int, length: int) -> int:
    """Bytes [*start*, *start* + *length*) of *source* copied to *fd* (one kernel copy may
    copy fewer); how many were, fewer only at the end of the source's file."""
    done = 0
    while done < length:
        got = source.copy_range(fd, start + done, length - done)
        if not got:
            break
        done += got
    return done


class HashingWriter:
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


class Alongside:
    """Blobs staged and verified on threads of their own while the caller reads on.

    One blob's SHA-256 cannot be split between cores, and hashing is what an import from a
    file spends most of its time on (the kernel does the copying). A large blob whose digest
    is known in advance (an OCI layout's ``blobs/sha256/<hex>``) can be hashed on another core
    while the caller goes on to the next member and hashes that one: two blobs at once instead
    of one after the other. The caller must :meth:`wait` before what it read from (an archive
    file's descriptor) is closed, and before it uses what was staged: a job's failure (a
    digest that does not match) is raised there.

    One is made for each staging (one import); *pool* may be shared between them, *jobs* is
    how many of this one's may be in flight at once.
    """

    def __init__(self, pool: ThreadPoolExecutor, jobs: int) -> None:
        self._limit = jobs
        self._pool = pool
        self._jobs: list[Future[Future[None]]] = []
        self._lock = threading.Lock()
        #: Set by :meth:`cancel`; each job's copy checks it at every chunk.
        self.stopping = threading.Event()

    def cancel(self) -> None:
        """Stop every job at its next chunk (within a few MiB): the import failed, or was
        interrupted, and nothing staged will be used. A large layer would otherwise be copied
        and hashed to its end before the error, or Ctrl-C, could end the command."""
        self.stopping.set()

    def free(self) -> bool:
        """Whether a job could start now without waiting for another to end."""
        with self._lock:
            self._jobs = [job for job in self._jobs if not job.done() or job.exception()]
            return sum(not job.done() for job in self._jobs) < self._limit

    def failure(self) -> BaseException | None:
        """The first failure of a job that has ended, if any."""
        with self._lock:
            return next((job.exception() for job in self._jobs if job.done()), None)

    def submit(self, job: Callable[[], Future[None]]) -> tuple[Future[Future[None]], Future[None]]:
        """Run *job*, which stages and verifies one blob and returns the future of its fsync.
        Returns the job's own future (done when the blob is verified) and one that completes
        when the blob is verified and on disk."""
        from concurrent.futures import Future  # not every command stages

        staged = self._pool.submit(job)
        durable: Future[None] = Future()

        def chain(done: Future[Future[None]]) -> None:
            error = done.exception()
            if error is not None:
                durable.set_exception(error)
            else:
                done.result().add_done_callback(lambda synced: _pass_on(synced, durable))

        staged.add_done_callback(chain)
        with self._lock:
            self._jobs.append(staged)
        return staged, durable

    def wait(self) -> None:
        """Wait for every job; raises the first failure (after all have ended: none may still
        read from its source when this returns). A job stopped by :meth:`cancel` is not one."""
        with self._lock:
            jobs, self._jobs = self._jobs, []
        error: BaseException | None = None
        for job in jobs:
            try:
                job.result()
            except StagingCancelled:
                pass
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


def _pass_on(source: Future[None], target: Future[None]) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(None)
