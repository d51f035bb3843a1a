"""File-system helpers shared by the blob store, its staging and the archive writer.

They are the few places where cargohold talks to the kernel about files rather than about
content: reserving blocks, starting writeback early, opening a store file only when it is a
regular one, making directory entries durable, and naming a full disk in one line. Every call
goes through the ``os`` module's attributes (never names imported from it), so that a test can
wrap them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, TypeVar

from ..errors import DamagedBlobError, NotFoundError, StorageFullError
from ..oci.digests import Digest

if TYPE_CHECKING:
    from concurrent.futures import Future

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Read and write in chunks this large: big enough that per-call overhead vanishes, small
#: enough that memory stays flat whatever the blob's size.
CHUNK_SIZE: Final = 1 << 20
#: Write errors that mean the store's disk (or the process's file size limit) is full.
OUT_OF_SPACE: Final = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def raise_if_full(exc: BaseException, what: str, where: str) -> None:
    """Turn an out-of-space write error into one line that names *what* was being written."""
    if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
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
        if exc.errno in OUT_OF_SPACE:
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


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of *data* at *fd*'s position (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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


def fsync_dir(path: Path) -> None:
    """Make the entries of directory *path* (renames into it, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parallel_map(function: Callable[[_T], _R], items: Iterable[_T], threads: int) -> Iterator[_R]:
    """*function* of each of *items* on *threads* threads, the results in order.

    For calls that wait on the device (unlinks, fsyncs): many in flight at once let the
    filesystem serve them together. At most four calls per thread are in flight: a future
    for each of 150,000 items at once would hold about 200 MB.
    """
    from concurrent.futures import ThreadPoolExecutor  # not every command needs threads

    with ThreadPoolExecutor(threads, thread_name_prefix="cargohold-many") as pool:
        window: deque[Future[_R]] = deque()
        for item in items:
            window.append(pool.submit(function, item))
            if len(window) >= 4 * threads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
