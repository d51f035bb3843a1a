"""Opening an archive to read: a file (any compression), a layout directory or a stream, as
the members of its tar, with progress counted in bytes read."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, Final, cast

from ..errors import CargoholdError, InvalidArchiveError, NotFoundError
from ..limits import EXPANSION_FLOOR, Limits
from ..progress import Progress
from .members import Member, directory_members, stream_members, tar_members
from .tar import open_archive

#: Most data accepted after a tar's end-of-archive marker (writers pad to a record size).
MAX_TRAILING_BYTES: Final = 64 << 20


@contextmanager
def open_members(
    source: str | Path | BinaryIO, progress: Progress, title: str, limits: Limits | None
) -> Iterator[Iterator[Member]]:
    """The members of an archive file (any compression), a layout directory, or a stream."""

    if isinstance(source, (str, Path)) and str(source) != "-":
        path = Path(source)
        if path.is_dir():
            progress.start(title, None)
            yield directory_members(path)
            return
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"archive {source} not found") from None
        with f, _file_members(f, progress, title, limits) as members:
            yield members
        return
    stream = sys.stdin.buffer if isinstance(source, (str, Path)) else source
    whole = _whole_file(stream)
    if whole is not None:  # stdin redirected from a file: read it as the file
        with whole, _file_members(whole, progress, title, limits) as members:
            yield members
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


@contextmanager
def _file_members(
    f: BinaryIO, progress: Progress, title: str, limits: Limits | None
) -> Iterator[Iterator[Member]]:
    """The members of an open archive file: an uncompressed regular file's member data is
    read by offset, straight from the file (the kernel copies it where it lands)."""
    seekable = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    total = os.fstat(f.fileno()).st_size if seekable else None
    progress.start(title, total)
    counted = _Counted(f, progress)
    reader = cast(IO[bytes], counted)
    with _tar_members(reader, seekable, limits, f.fileno(), counted.advance) as members:
        yield members
    if total is not None:
        progress.update(total)  # the tar's end padding is never read


def _whole_file(stream: IO[bytes]) -> BinaryIO | None:
    """*stream* as a file of its own when it is a regular file read from its start (``<
    archive.tar``, ``/dev/stdin`` on a file): then it is read as the file named would be,
    by offset and with the kernel's copy. None for a pipe, a terminal, or a file that was
    partly read already (its archive starts where the reading stopped)."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        # The position as the reader sees it (nothing buffered ahead) and as the file has it.
        if stream.tell() != 0 or os.lseek(fd, 0, os.SEEK_CUR) != 0:
            return None
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return os.fdopen(os.dup(fd), "rb")


class _Counted(io.RawIOBase):
    """A reader that tells the progress display how many of the archive's bytes were read.

    Bytes read: not the position, because member data may be read after every header has
    been (docker layers, see archive.scan) and through :meth:`advance` rather than
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
) -> Iterator[Iterator[Member]]:
    import lzma
    import zlib

    import zstandard

    from . import compression

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
            with open_archive(stream, seekable) as tar:
                # member data straight from the file, when it is an uncompressed one
                if kind == "none" and raw_fd is not None:
                    yield tar_members(tar, raw_fd, on_read)
                else:
                    yield tar_members(tar, end=end)
        else:
            yield stream_members(stream)
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
