"""Reading an archive in volumes: finding the set, and reading it as one verified stream.

``image import OUT.001`` (or ``OUT.sha256``) reads the volumes its checksum list names, in
order, as one stream, and checks each volume's SHA-256 when its last byte has been read, before
that byte is handed on: a volume that is missing, of the wrong size or damaged stops the read
with one line naming it. Volumes are opened only when the stream reaches them, so an import
can get as far as the first bad one (and a resumed import, see ``operations.resuming``, can
start at a later one). The checksum list is hostile input like the archive (see
:func:`cargohold.storage.volumes.parse_volume_list`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, cast

from ..errors import InvalidArchiveError, NotFoundError, VolumeError
from ..storage.volumes import CHECKSUM_SUFFIX, MAX_CHECKSUM_FILE, VolumeList, parse_volume_list

_VOLUME: Final = re.compile(r"(.+)\.([0-9]{3,})")
#: What to do about a bad volume, said after its name.
RESEND: Final = "re-send this volume"


@dataclass(frozen=True, slots=True)
class VolumeSet:
    """A split archive found on disk: its folder, what its checksum list says, and the list's
    own SHA-256 (what identifies the archive for a resumed import)."""

    directory: Path
    listed: VolumeList
    list_digest: str

    @property
    def label(self) -> str:
        """The archive's path as if it were one file (``DIR/OUT``)."""
        return str(self.directory / self.listed.base)

    @property
    def list_name(self) -> str:
        return f"{self.listed.base}{CHECKSUM_SUFFIX}"

    def path(self, number: int) -> Path:
        return self.directory / self.listed.name(number)


def find_volumes(path: Path) -> VolumeSet | None:
    """The split archive *path* names (``OUT.sha256``, or a volume ``OUT.NNN`` with its list
    beside it), or None when *path* is an archive of its own.

    A volume without its checksum list is refused (``cat OUT.0* |`` reads one without checks);
    so is a file beside the list that looks like a volume of it but is not listed (an extra
    volume, say of an older export), since ``OUT.0*`` would take it in.
    """
    name = path.name
    if name.endswith(CHECKSUM_SUFFIX) and len(name) > len(CHECKSUM_SUFFIX):
        base = name.removesuffix(CHECKSUM_SUFFIX)
        list_path = path
    else:
        match = _VOLUME.fullmatch(name)
        if match is None:
            return None
        base = match.group(1)
        list_path = path.with_name(f"{base}{CHECKSUM_SUFFIX}")
        if not list_path.exists():
            if path.is_file() and _looks_split(path, base):
                raise NotFoundError(
                    f"{list_path.name} not found: the volumes of {base} are read with their"
                    f" checksum list (or joined without checks: cat {base}.0* | ... import -)"
                )
            return None
    data = _read_list(list_path)
    listed = parse_volume_list(data, base, list_path.name)
    found = VolumeSet(list_path.parent, listed, hashlib.sha256(data).hexdigest())
    _refuse_extra(found)
    return found


def _looks_split(path: Path, base: str) -> bool:
    """Whether *path* is one of several files numbered like volumes of one archive, from 1
    and with as many digits (``app.tar.2024`` beside ``app.tar.2023`` is no volume)."""
    width = len(path.name) - len(base) - 1
    numbered = [
        m[2]
        for n in os.listdir(path.parent)
        if (m := _VOLUME.fullmatch(n)) and m[1] == base and len(m[2]) == width
    ]
    return len(numbered) > 1 and "1".zfill(width) in numbered


def _read_list(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFoundError(f"archive {path} not found") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArchiveError(f"{path.name}: not a regular file")
        data = f.read(MAX_CHECKSUM_FILE + 1)
    return data


def _refuse_extra(found: VolumeSet) -> None:
    listed = {found.listed.name(n) for n in range(1, found.listed.count + 1)}
    for name in sorted(os.listdir(found.directory)):
        match = _VOLUME.fullmatch(name)
        if match and match[1] == found.listed.base and name not in listed:
            raise VolumeError(
                name,
                f"not listed in {found.list_name} (an extra volume?); move it away to import",
            )


#: Called with a volume's number once its last byte was read and its checksum matched.
OnVerified = Callable[[int], None]


class VolumeReader(io.RawIOBase):
    """Volumes *first* … last of *volumes* as one stream, each checked as it ends.

    The stream starts *skip* bytes into volume *first* (a resumed import starts inside a
    volume, at a member's header). A volume's checksum is compared when its last byte has
    been read, before that byte is returned, so whatever the reader of the stream has seen
    when *on_verified* hears of a volume came from verified volumes. Volumes up to number
    *trusted* were verified by an earlier run and are not checked again (nor read before
    *skip*): what a resumed import reads of them is the start of the member that runs into
    the first volume not verified yet.
    """

    def __init__(
        self,
        volumes: VolumeSet,
        first: int = 1,
        skip: int = 0,
        on_verified: OnVerified | None = None,
        trusted: int = 0,
    ) -> None:
        self.volumes = volumes
        self.trusted = trusted
        #: The highest volume verified so far (an earlier run's count to begin with).
        self.verified = trusted
        self.on_verified = on_verified
        self.number = first
        #: Bytes read from the volume files (what the import reports as bytesRead).
        self.bytes_read = 0
        #: Volumes opened by this reader.
        self.opened = 0
        self._skip = skip
        self._fd = -1
        self._done = 0
        self._hasher = _BackgroundHash()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        while self.number <= self.volumes.listed.count:
            if self._fd < 0:
                self._open()
            if self._skip:
                self._discard()
                continue
            remaining = self.volumes.listed.size(self.number) - self._done
            n = self._read(view[: min(len(view), remaining)]) if view else 0
            if self._done == self.volumes.listed.size(self.number):
                self._verify()
            if n or not view:
                return n
        return 0

    def _open(self) -> None:
        name = self.volumes.listed.name(self.number)
        try:
            fd = os.open(self.volumes.path(self.number), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise VolumeError(name, f"missing: {RESEND}") from None
        except OSError as exc:
            raise VolumeError(name, f"cannot be read ({exc.strerror})") from None
        st = os.fstat(fd)
        expected = self.volumes.listed.size(self.number)
        if not stat.S_ISREG(st.st_mode) or st.st_size != expected:
            os.close(fd)
            shown = f"{st.st_size} bytes" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise VolumeError(name, f"{shown}, the checksum list says {expected}: {RESEND}")
        self._fd, self._done = fd, 0
        self._hasher.restart()
        self.opened += 1
        if self.number <= self.trusted and self._skip:  # verified before: no need to hash it
            os.lseek(fd, self._skip, os.SEEK_SET)
            self._done, self._skip = self._skip, 0
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def _read(self, view: memoryview) -> int:
        n = os.readv(self._fd, [view]) if view else 0
        if view and not n:
            name = self.volumes.listed.name(self.number)
            raise VolumeError(name, f"shrank while it was read: {RESEND}")
        if self.number > self.trusted:
            self._hasher.update(view[:n])
        self._done += n
        self.bytes_read += n
        return n

    def _discard(self) -> None:
        scratch = memoryview(bytearray(min(self._skip, 1 << 20)))
        while self._skip:
            n = self._read(scratch[: min(self._skip, len(scratch))])
            self._skip -= n

    def _verify(self) -> None:
        name = self.volumes.listed.name(self.number)
        os.close(self._fd)
        self._fd = -1
        if self.number <= self.trusted:
            self.number += 1
            return
        if self._hasher.hexdigest() != self.volumes.listed.digests[self.number - 1]:
            raise VolumeError(name, f"checksum mismatch: {RESEND}")
        verified = self.verified = self.number
        self.number += 1
        if self.on_verified is not None:
            self.on_verified(verified)

    def blame(self) -> None:
        """After the stream's reader failed in the middle of a volume (a member that does not
        match its digest, a decompression error): read the rest of that volume and check it,
        so that a damaged volume is named as the cause rather than what it broke. Raises its
        :class:`VolumeError`; returns when the volume is sound (the failure stands)."""
        if self._fd < 0 or self.number <= self.trusted:
            return
        scratch = memoryview(bytearray(1 << 20))
        size = self.volumes.listed.size(self.number)
        while self._done < size:
            self._read(scratch[: min(len(scratch), size - self._done)])
        self._verify()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._hasher.close()
        super().close()


class _BackgroundHash:
    """SHA-256 of a volume computed on a thread of its own, from copies of what was read.

    The import hashes every blob it stages on the main thread; a volume's checksum is a
    second hash of the same bytes. On another core (hashlib lets go of the GIL) it costs
    little time instead of doubling the hashing. A copy is hashed, not the caller's buffer,
    which the caller may fill again at once; at most :data:`_SLOTS` copies are in flight.
    """

    _SLOTS: Final = 3

    def __init__(self) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cargohold-volume-hash")
        self._hasher = hashlib.sha256()
        self._slots = [bytearray() for _ in range(self._SLOTS)]
        self._jobs: list[Future[None] | None] = [None] * self._SLOTS
        self._turn = 0

    def restart(self) -> None:
        self._drain()
        self._hasher = hashlib.sha256()

    def update(self, data: memoryview) -> None:
        slot = self._turn % self._SLOTS
        self._turn += 1
        job = self._jobs[slot]
        if job is not None:
            job.result()  # the copy in this slot is hashed: it may be overwritten
        copy = self._slots[slot]
        copy[:] = data
        self._jobs[slot] = self._pool.submit(self._hasher.update, copy)

    def hexdigest(self) -> str:
        self._drain()
        return self._hasher.hexdigest()

    def _drain(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                job.result()
                self._jobs[slot] = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def volume_stream(reader: VolumeReader) -> BinaryIO:
    """*reader* as the stream the archive readers take. Not buffered here: the tar reader
    buffers once, and every byte buffered ahead is one scanned later than its volume was
    verified (what a resumed import can skip is what was scanned by then)."""
    return cast(BinaryIO, reader)
