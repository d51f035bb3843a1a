"""Archives in volumes: an export's bytes cut into files of one size, and their checksum list.

Media have size limits (FAT32 stops at 4 GiB, a DVD at 4.7 GB, transfer appliances at their
own cap) and links drop. ``OUT.001``, ``OUT.002``, … are byte slices of exactly the archive
the same export writes unsplit, so ``cat OUT.0* > OUT`` gives it back and any tool reads that.
``OUT.sha256`` lists each volume's SHA-256 in the format ``sha256sum -c`` reads, with names
relative to its own folder, so a receiver checks the volumes with nothing but coreutils; its
``#`` lines (which ``sha256sum -c`` skips, also with ``--strict``) record the total size, the
volume size and the count, so a reader knows every volume's size before reading it.

Writing is all or nothing: the volumes are written into a hidden directory beside ``OUT``,
renamed into place only once the whole archive is written, and the checksum list comes last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, cast

from ..errors import InvalidArchiveError, OutputPathError
from .files import fsync_dir

#: The checksum list's name: ``OUT`` plus this.
CHECKSUM_SUFFIX: Final = ".sha256"
#: Fewest digits of a volume's number (more when there are more volumes).
VOLUME_DIGITS: Final = 3
#: Most volumes of one archive (and so lines of a checksum list worth reading).
MAX_VOLUMES: Final = 100_000
#: Largest checksum list read: MAX_VOLUMES lines and the comments.
MAX_CHECKSUM_FILE: Final = 16 << 20
#: Smallest volume: a tar block. Smaller would be a mistake, not a medium.
MIN_VOLUME_SIZE: Final = 512
#: What the first comment line says: the format of the list, for a later version to check.
FORMAT_LINE: Final = "# cargohold volumes 1"
_HEX: Final = re.compile(r"[0-9a-f]{64}")
_TEMP_DIR: Final = re.compile(r"\.(.+)\.volumes-[0-9a-f]{16}\.tmp")


def volume_name(base: str, number: int, count: int) -> str:
    """The name of volume *number* (from 1) of *count*: ``base.001``, at least three digits."""
    width = max(VOLUME_DIGITS, len(str(count)))
    return f"{base}.{number:0{width}d}"


@dataclass(frozen=True, slots=True)
class VolumeList:
    """What a checksum list says: the archive's base name, sizes and each volume's digest."""

    base: str
    total_size: int
    volume_size: int
    digests: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.digests)

    def name(self, number: int) -> str:
        return volume_name(self.base, number, self.count)

    def size(self, number: int) -> int:
        """Volume *number*'s size: the volume size, but the last one's, which is the rest."""
        if number < self.count:
            return self.volume_size
        return self.total_size - self.volume_size * (self.count - 1)

    def start(self, number: int) -> int:
        """Where volume *number* begins in the whole archive."""
        return self.volume_size * (number - 1)

    def render(self) -> bytes:
        lines = [
            FORMAT_LINE,
            f"# total-size {self.total_size}",
            f"# volume-size {self.volume_size}",
            f"# volumes {self.count}",
            *(f"{digest}  {self.name(i)}" for i, digest in enumerate(self.digests, 1)),
        ]
        return ("\n".join(lines) + "\n").encode()


def parse_volume_list(data: bytes, base: str, label: str) -> VolumeList:
    """Read a checksum list (*label* names it in errors) of the archive named *base*.

    The list is untrusted: every line must be a comment this format writes or a digest and
    the name of the next volume, ``base.NNN`` in order, beside the list itself. A name with
    a folder, ``..``, another base or out of order is refused, so the list can make nothing
    but its own volumes be read. The recorded sizes must agree with each other.
    """
    if len(data) > MAX_CHECKSUM_FILE:
        raise InvalidArchiveError(f"{label}: larger than {MAX_CHECKSUM_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArchiveError(f"{label}: not a checksum list (not UTF-8 text)") from None
    fields: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            _comment(line, fields, label, number)
        elif line.strip():
            pairs.append(_checksum_line(line, label, number))
    for key in ("total-size", "volume-size", "volumes"):
        if key not in fields:
            raise InvalidArchiveError(
                f"{label}: no '# {key}' line; not a checksum list cargohold wrote"
            )
    listed = VolumeList(base, fields["total-size"], fields["volume-size"], ())
    count = fields["volumes"]
    if not 1 <= count <= MAX_VOLUMES or len(pairs) != count:
        raise InvalidArchiveError(f"{label}: says {count} volumes but lists {len(pairs)}")
    listed = VolumeList(base, listed.total_size, listed.volume_size, tuple(d for d, _ in pairs))
    for index, (_, name) in enumerate(pairs, 1):
        if name != listed.name(index):
            raise InvalidArchiveError(
                f"{label}: line for volume {index} names {name!r}, not {listed.name(index)}"
                " beside the list; refused"
            )
    if listed.volume_size < MIN_VOLUME_SIZE or not (
        listed.volume_size * (count - 1) < listed.total_size <= listed.volume_size * count
    ):
        raise InvalidArchiveError(
            f"{label}: {count} volumes of {listed.volume_size} bytes cannot hold"
            f" {listed.total_size} bytes"
        )
    return listed


def _comment(line: str, fields: dict[str, int], label: str, number: int) -> None:
    parts = line[1:].split()
    if len(parts) == 2 and parts[0] in ("total-size", "volume-size", "volumes"):
        if parts[0] in fields or not parts[1].isdigit() or len(parts[1]) > 18:
            raise InvalidArchiveError(f"{label}: line {number}: bad or repeated {parts[0]}")
        fields[parts[0]] = int(parts[1])


def _checksum_line(line: str, label: str, number: int) -> tuple[str, str]:
    digest, sep, name = line.partition(" ")
    if not sep or not _HEX.fullmatch(digest) or name[:1] not in (" ", "*"):
        raise InvalidArchiveError(f"{label}: line {number} is not '<sha256>  <volume>'")
    return digest, name[1:]


# -- writing --------------------------------------------------------------------------------

#: Writes the archive into the stream it is given; returns the bytes written.
ArchiveWriter = Callable[[BinaryIO], int]


@dataclass(frozen=True, slots=True)
class WrittenVolumes:
    """What a split export wrote: the archive's size and the volumes' paths, in order."""

    size: int
    paths: tuple[Path, ...]
    checksums: Path


def write_volumes(out: Path, volume_size: int, write: ArchiveWriter, sync: bool) -> WrittenVolumes:
    """Write the archive *write* produces as volumes of *volume_size* bytes named after *out*,
    and their checksum list; nothing is left under those names if the export fails.

    Volumes of an earlier export to the same *out* beyond the new count are removed (the set
    is replaced as a whole, as one file would be); so is a checksum list that would vouch for
    volumes that are no longer its own.
    """
    if volume_size < MIN_VOLUME_SIZE:
        raise OutputPathError(f"--split-size must be at least {MIN_VOLUME_SIZE} bytes")
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise OutputPathError(f"directory {directory} does not exist")
    base = out.name
    _remove_dead_temporaries(directory, base)
    temp = directory / f".{base}.volumes-{os.urandom(8).hex()}.tmp"
    try:
        temp.mkdir(mode=0o700)
    except OSError as exc:
        raise OutputPathError(f"cannot write in {directory}: {exc.strerror}") from None
    lock = os.open(temp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a later export leaves a live one alone
        splitter = _Splitter(temp, volume_size, sync)
        try:
            buffered = io.BufferedWriter(splitter, 1 << 20)  # type: ignore[type-var]
            written = write(cast(BinaryIO, buffered))
            buffered.flush()
            splitter.finish()
        finally:
            splitter.close()
        listed = VolumeList(base, splitter.total, volume_size, tuple(splitter.digests))
        if listed.count > MAX_VOLUMES:
            raise OutputPathError(f"{listed.count} volumes: more than {MAX_VOLUMES}")
        paths = _publish(temp, directory, listed, sync)
    finally:
        os.close(lock)
        shutil.rmtree(temp, ignore_errors=True)
    assert written == listed.total_size
    return WrittenVolumes(written, paths, directory / f"{base}{CHECKSUM_SUFFIX}")


class _Splitter(io.RawIOBase):
    """A writer that cuts what it is given into files of *volume_size* bytes, hashing each."""

    def __init__(self, directory: Path, volume_size: int, sync: bool) -> None:
        self.directory = directory
        self.volume_size = volume_size
        self.sync = sync
        self.digests: list[str] = []
        self.total = 0
        self._fd = -1
        self._filled = 0
        self._hasher = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a split archive has no one descriptor")

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        while view:
            if self._fd < 0 or self._filled == self.volume_size:
                self._next()
            part = view[: self.volume_size - self._filled]
            done = 0
            while done < len(part):
                done += os.write(self._fd, part[done:])
            self._hasher.update(part)
            self._filled += len(part)
            self.total += len(part)
            view = view[len(part) :]
        return len(data)

    def _next(self) -> None:
        self._end_volume()
        path = self.directory / str(len(self.digests) + 1)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._filled = 0
        self._hasher = hashlib.sha256()

    def _end_volume(self) -> None:
        if self._fd >= 0:
            if self.sync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self.digests.append(self._hasher.hexdigest())

    def finish(self) -> None:
        if self.total == 0:
            raise OutputPathError("the archive is empty; no volume written")
        self._end_volume()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


def _publish(temp: Path, directory: Path, listed: VolumeList, sync: bool) -> tuple[Path, ...]:
    """Rename the written volumes into place and write the checksum list last; on a failure,
    the volumes already renamed are removed again."""
    checksums = directory / f"{listed.base}{CHECKSUM_SUFFIX}"
    new_list = temp / "list"
    new_list.write_bytes(listed.render())
    if sync:
        _fsync_file(new_list)
    for number in range(1, listed.count + 1):
        _check_replaceable(directory / listed.name(number))
    _check_replaceable(checksums)
    stale = _listed_before(checksums, listed)
    with contextlib.suppress(FileNotFoundError):
        checksums.unlink()  # an old list must not vouch for a mix of old and new volumes
    published: list[Path] = []
    try:
        for number in range(1, listed.count + 1):
            target = directory / listed.name(number)
            os.replace(temp / str(number), target)
            published.append(target)
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        os.replace(new_list, checksums)
    except BaseException:
        for path in published:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    if sync:
        fsync_dir(directory)
    return tuple(published)


def _check_replaceable(path: Path) -> None:
    """Only a regular file (or nothing) is replaced by a volume or a checksum list."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"{path} exists and is not a regular file; not replacing it")


def _listed_before(checksums: Path, listed: VolumeList) -> list[str]:
    """The volumes of an earlier export to the same name that the new one does not replace
    (it had more, or more digits): those its checksum list names, regular files only.
    Without a readable list nothing is taken for a volume (``app.tar.2024`` is a file)."""
    try:
        data = checksums.read_bytes()
        old = parse_volume_list(data, listed.base, checksums.name)
    except (OSError, InvalidArchiveError):
        return []
    new = {listed.name(n) for n in range(1, listed.count + 1)}
    names = (old.name(n) for n in range(1, old.count + 1))
    return [n for n in names if n not in new and _is_regular(checksums.parent / n)]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove_dead_temporaries(directory: Path, base: str) -> None:
    """Hidden directories of killed exports to the same name (no live export holds their
    lock); only this module makes directories of that name."""
    for name in os.listdir(directory):
        match = _TEMP_DIR.fullmatch(name)
        if match is None or match.group(1) != base:
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
