"""An archive's members, whatever holds them, and the checks on their names.

A tar read at random (a file), a tar read once (a pipe, a decompressor) and an OCI layout
directory all become the same sequence of :class:`Member`, so the scan has one path for all
three. Member names are hostile text until :func:`member_name` has normalised and checked them.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

from ..errors import InvalidArchiveError
from .tar import HeaderSource, headers, member_kind, next_header, padded_size

#: Longest member name we accept.
MAX_NAME_LENGTH: Final = 1024
#: The name of a blob in an OCI layout: ``blobs/<alg>/<hex>``.
BLOB_NAME: Final = re.compile(r"^blobs/([^/]+)/([^/]+)$")


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
    #: Where the member's data and padding end in a tar read once (the next header's
    #: offset from the stream's start); -1 where unknown. A resumed import starts there.
    end: int = -1


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


def resolve_link(name: str, target: str) -> str:
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


#: A reader of bytes [offset, offset + size) of an archive made of several files (a split
#: archive's volumes) straight from the files, or None to read them through the tar reader.
Locate = Callable[[int, int], "Callable[[], IO[bytes]] | None"]


def tar_members(
    archive: tarfile.TarFile,
    raw_fd: int | None = None,
    on_read: Callable[[int], None] | None = None,
    end: int | None = None,
    locate: Locate | None = None,
) -> Iterator[Member]:
    """The members of a tar, in order; the data of each only before the next is reached.

    With *raw_fd*, the descriptor of the uncompressed archive file itself, member data is read
    with ``pread`` straight into the caller's buffer (or copied by the kernel) instead of
    through tarfile's reader, and at any time (*on_read* hears how many bytes were taken).
    *end* is the archive file's size (by default *raw_fd*'s): a member whose header claims
    more data than the file holds after it is refused before anything reads or reserves it.
    With *locate* (instead of *raw_fd*), the archive is made of several files: a member's
    data is read from the files that hold it, where *locate* can, else through *archive*.
    """
    if end is None and raw_fd is not None:
        end = os.fstat(raw_fd).st_size
    try:
        for info in headers(archive):
            kind = member_kind(info)
            if end is not None and kind == "file" and info.offset_data + info.size > end:
                shown = info.name if len(info.name) <= 100 else f"{info.name[:60]}…"
                raise InvalidArchiveError(
                    f"member {shown!r}: truncated, it claims {info.size} bytes but the archive"
                    f" holds {max(end - info.offset_data, 0)} after its header"
                )
            found = locate(info.offset_data, info.size) if locate and kind == "file" else None
            if raw_fd is not None and kind == "file":
                opener = _pread_opener(raw_fd, info.offset_data, info.size, on_read)
                yield Member(info.name, kind, info.size, opener, random_access=True)
            elif locate is not None:
                after = info.offset_data + (padded_size(info) if kind == "file" else 0)
                opener = found if found is not None else _opener(archive, info)
                yield Member(
                    info.name, kind, info.size, opener, info.linkname, random_access=True, end=after
                )
            else:
                yield Member(info.name, kind, info.size, _opener(archive, info), info.linkname)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None
    except EOFError:
        raise InvalidArchiveError("archive is truncated") from None


def stream_members(stream: IO[bytes]) -> Iterator[Member]:
    """The members of a tar read from a stream (a pipe, a decompressor), in one pass.

    Headers are parsed by tarfile's own header code (with the strict checks of ``tar``);
    member data is read straight from *stream* into the caller's buffer. tarfile's stream mode
    copies every byte three more times on its way, which costs more than hashing it.
    """
    source = HeaderSource(stream)
    try:
        while (info := next_header(source)) is not None:
            kind = member_kind(info)
            window = _Window(source, info.size if kind == "file" else 0)
            end = info.offset_data + (padded_size(info) if kind == "file" else 0)
            yield Member(info.name, kind, info.size, window.open, info.linkname, end=end)
            source.skip_to(end)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None


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


class _Window(io.RawIOBase):
    """One member's data, read from the stream in place; it may be read only once."""

    def __init__(self, source: HeaderSource, size: int) -> None:
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
        (see storage.blobs.FileRange); safe from several threads, it moves no position."""
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


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _no_data() -> IO[bytes]:
    raise InvalidArchiveError("member has no data")
