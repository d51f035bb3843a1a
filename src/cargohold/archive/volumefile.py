"""The volumes of an uncompressed split archive as one file read at random, every volume
verified before the import commits anything.

An uncompressed archive file is imported without its blobs passing through Python: the
kernel copies each member's bytes into the staged file and the hash is taken there. Volumes
keep that: a member's bytes are copied from the volume files that hold them. The volumes'
checksums are computed on a thread of their own, volume after volume, alongside the import
(on another core, they cost little time): nothing is committed before every checksum has
matched (:meth:`VolumeFile.finish`), a bad volume stops the import as soon as it is found,
and a resumed import's records cover only members that end in verified volumes. Each blob
is checked by its digest where it was stored, as in any archive; a document is used only
after the commit's wait for every volume.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO, cast

from ..errors import VolumeError
from .members import Member, tar_members
from .tar import open_archive
from .volumes import RESEND, VolumeSet

#: Bytes each read of the verifying thread takes.
_CHUNK = 1 << 20


class VolumeFile(io.RawIOBase):
    """Volumes as one seekable file. Volumes up to *trusted* were verified by an earlier run
    (see ``operations.resuming``); the others are verified in order on a thread of their own
    (:attr:`verified` says how far it got), and :meth:`finish` waits for all of them."""

    def __init__(self, volumes: VolumeSet, trusted: int = 0) -> None:
        self.volumes = volumes
        self.trusted = trusted
        #: Hears how many more of the archive's bytes the import read (progress).
        self.on_read: Callable[[int], None] = _ignore
        #: The highest volume verified so far (an earlier run's count to begin with).
        self.verified = trusted
        self._fds: dict[int, int] = {}
        self._fds_lock = threading.Lock()
        self._opened = 0
        self._error: VolumeError | None = None
        self._failed = 0  # the volume that failed its verification
        self._position = 0
        self._trusted_read = 0
        self._verified_read = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cargohold-volume-check")
        count = volumes.listed.count
        self._checks: dict[int, Future[None]] = {
            n: self._pool.submit(self._check, n) for n in range(trusted + 1, count + 1)
        }

    # -- what the import reports ------------------------------------------------------

    @property
    def bytes_read(self) -> int:
        """Bytes of the volumes read once: the verified ones whole, trusted ones as used."""
        return self._verified_read + self._trusted_read

    @property
    def opened(self) -> int:
        """Volumes opened by this run."""
        return self._opened

    # -- the verifying thread -----------------------------------------------------------

    def _check(self, number: int) -> None:
        """Verify volume *number* (on the verifying thread, volume after volume). After a bad
        volume the later ones are not read, and fail with its error: a member that could
        be skipped over the bad one must not make the import go on past it."""
        if self._error is not None:
            raise self._error
        try:
            fd = self._fd(number)
            hasher, view, offset = hashlib.sha256(), memoryview(bytearray(_CHUNK)), 0
            size = self.volumes.listed.size(number)
            while offset < size:  # read, not mapped: a volume cut short meanwhile is an error
                n = os.preadv(fd, [view[: min(_CHUNK, size - offset)]], offset)
                if not n:
                    raise VolumeError(self.volumes.listed.name(number), f"shrank: {RESEND}")
                hasher.update(view[:n])
                offset += n
                self._verified_read += n
            if hasher.hexdigest() != self.volumes.listed.digests[number - 1]:
                name = self.volumes.listed.name(number)
                raise VolumeError(name, f"checksum mismatch: {RESEND}")
        except VolumeError as exc:
            self._error, self._failed = exc, number
            raise
        self.verified = number

    def _check_failed(self, number: int) -> None:
        """Stop when the import needs a volume from the one that failed its verification on:
        what lies before it still counts (a resumed import need not read it again)."""
        if self._error is not None and number >= self._failed:
            raise self._error

    def finish(self) -> None:
        """Wait for every volume's verification (the end of the archive is read last, if at
        all: its padding is no member's)."""
        for check in self._checks.values():
            check.result()

    def blame(self) -> None:
        """After the import failed on what it read (a member that does not match its digest):
        wait for the checks of the volumes it read from, so that a damaged volume is named as
        the cause rather than what it broke (the checks run behind the reads). Raises that
        volume's :class:`VolumeError`; returns when they are sound (the failure stands)."""
        with self._fds_lock:
            touched = max(self._fds, default=0)
        for number in range(self.trusted + 1, touched + 1):
            self._checks[number].result()

    # -- files --------------------------------------------------------------------------

    def _fd(self, number: int) -> int:
        with self._fds_lock:
            fd = self._fds.get(number)
            if fd is None:
                fd = self._fds[number] = self._open(number)
                self._opened += 1
            return fd

    def _open(self, number: int) -> int:
        name = self.volumes.listed.name(number)
        try:
            fd = os.open(self.volumes.path(number), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise VolumeError(name, f"missing: {RESEND}") from None
        except OSError as exc:
            raise VolumeError(name, f"cannot be read ({exc.strerror})") from None
        st = os.fstat(fd)
        expected = self.volumes.listed.size(number)
        if not stat.S_ISREG(st.st_mode) or st.st_size != expected:
            os.close(fd)
            shown = f"{st.st_size} bytes" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise VolumeError(name, f"{shown}, the checksum list says {expected}: {RESEND}")
        return fd

    def _volume(self, offset: int) -> int:
        return offset // self.volumes.listed.volume_size + 1

    def locate(self, offset: int, size: int) -> Callable[[], IO[bytes]]:
        """A reader of archive bytes [offset, offset + size) straight from the volume files,
        which the kernel can copy from."""
        pieces = []
        while size > 0:
            number = self._volume(offset)
            start = self.volumes.listed.start(number)
            length = min(size, start + self.volumes.listed.size(number) - offset)
            if number > self.volumes.listed.count or length <= 0:
                break  # past the end: the tar reader says the member is truncated
            self._check_failed(number)
            if number <= self.trusted:
                self._trusted_read += length
            pieces.append((self._fd(number), offset - start, length))
            offset, size = offset + length, size - length
        return lambda: cast(IO[bytes], _Pieces(pieces, self.on_read))

    # -- the file -----------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self.volumes.listed.total_size
        self._position = max(offset, 0)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill *buffer* (across volumes: tar reads a header whole or takes it for the end)."""
        view, got = memoryview(buffer).cast("B"), 0
        while got < len(view) and self._position < self.volumes.listed.total_size:
            number = self._volume(self._position)
            start = self.volumes.listed.start(number)
            left = start + self.volumes.listed.size(number) - self._position
            self._check_failed(number)
            part = view[got : got + left]
            n = os.preadv(self._fd(number), [part], self._position - start)
            if not n:
                raise VolumeError(self.volumes.listed.name(number), f"shrank: {RESEND}")
            if number <= self.trusted:
                self._trusted_read += n
            self._position += n
            got += n
            self.on_read(n)
        return got

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        super().close()


class _Pieces(io.RawIOBase):
    """A member's bytes in one or more volume files (a :class:`FileRange`): read by offset,
    or copied by the kernel into the staged file, piece by piece."""

    def __init__(self, pieces: list[tuple[int, int, int]], on_read: Callable[[int], None]) -> None:
        self._pieces = pieces  # (descriptor, offset in its file, length)
        self._position = 0
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def _at(self, position: int) -> tuple[int, int, int] | None:
        """The piece holding member byte *position*: descriptor, offset there, bytes left."""
        for fd, offset, length in self._pieces:
            if position < length:
                return fd, offset + position, length - position
            position -= length
        return None

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        found = self._at(self._position)
        if found is None:
            return 0
        fd, offset, left = found
        view = memoryview(buffer).cast("B")[:left]
        n = os.preadv(fd, [view], offset)
        self.consumed(n)
        return n

    def copy_range(self, fd: int, start: int, length: int) -> int:
        """Copy member bytes [start, start + length) into *fd* at *start* (from the piece
        that holds *start*: fewer at its end; the caller asks again for the rest)."""
        found = self._at(start)
        if found is None:
            return 0
        source, offset, left = found
        return os.copy_file_range(source, fd, min(length, left), offset, start)

    def tell(self) -> int:
        return self._position

    def consumed(self, n: int) -> None:
        self._position += n
        self._on_read(n)

    def close(self) -> None:  # the descriptors belong to the volume file
        super().close()


def _ignore(_n: int) -> None:
    pass


@contextmanager
def volume_members(volumes: VolumeFile, start: int) -> Iterator[Iterator[Member]]:
    """The members of the uncompressed archive *volumes* holds, from the header at *start*;
    every volume is verified by the end of the block."""
    volumes.seek(start)
    with open_archive(cast(IO[bytes], volumes), True) as tar:
        yield tar_members(tar, end=volumes.volumes.listed.total_size, locate=volumes.locate)
    volumes.finish()
