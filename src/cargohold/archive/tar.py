"""Strict tar header reading: every override of the standard library's ``tarfile`` is here.

``tarfile`` is lenient where an image archive must not be: it ends an archive quietly at a
damaged header, reads extended headers of any claimed size, runs backtracking regular
expressions over PAX records, expands sparse members and keeps every header it has read. The
classes and functions here close those gaps, so the rest of the package reads tar headers only
through them and never touches ``tarfile``'s private parts.
"""

from __future__ import annotations

import re
import tarfile
import tarfile as tarfile_module
from collections.abc import Iterator
from typing import IO, Any, Final, cast

from ..errors import InvalidArchiveError

#: Largest PAX or GNU long-name header we read.
MAX_HEADER_BYTES: Final = 1 << 20
#: Longest run of digits a PAX header may hold (a length, a time: never more than 30).
_MAX_PAX_DIGITS: Final = 32

# tarfile's header errors are not part of its public interface, but are stable since 3.2
_TRUNCATED_HEADER: Final[type[Exception]] = tarfile_module.TruncatedHeaderError  # type: ignore[attr-defined]
_INVALID_HEADER: Final[type[Exception]] = tarfile_module.InvalidHeaderError  # type: ignore[attr-defined]
_EOF_HEADER: Final[type[Exception]] = tarfile_module.EOFHeaderError  # type: ignore[attr-defined]
_EMPTY_HEADER: Final[type[Exception]] = tarfile_module.EmptyHeaderError  # type: ignore[attr-defined]

_REFUSED_KINDS: Final = {
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
}


def open_archive(source: IO[bytes], seekable: bool) -> tarfile.TarFile:
    """A tar reader over *source*: random access when it is a file, a stream otherwise."""
    try:
        if seekable:
            return tarfile.open(fileobj=source, mode="r:", bufsize=1 << 20, tarinfo=_StrictTarInfo)
        return tarfile.open(fileobj=source, mode="r|", bufsize=1 << 20, tarinfo=_StrictTarInfo)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive ({exc})") from None


def headers(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The headers of a tar read in random-access mode, each forgotten once the next is read.

    Iterating a TarFile keeps every header in ``TarFile.members`` (for look-ups by name, which
    an import never makes): an archive of 150,000 tiny members would hold 150,000 of them.
    """
    while (info := archive.next()) is not None:
        cast(Any, archive).members.clear()  # not in the type stubs; plain list since 2.x
        yield info


def member_kind(info: tarfile.TarInfo) -> str:
    """``"file"``, ``"dir"``, ``"symlink"``, or a description of a type an archive may not hold."""
    if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
        return "sparse file"  # its holes would be expanded: a bomb without compression
    if info.size < 0:
        raise InvalidArchiveError(f"member {info.name!r}: negative size {info.size}")
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    return _REFUSED_KINDS.get(info.type, f"member of type {info.type!r}")


def padded_size(info: tarfile.TarInfo) -> int:
    """The bytes a member's data takes in the archive, with its padding to a whole block."""
    return cast(int, cast(Any, info)._block(info.size))


class HeaderSource:
    """What ``TarInfo.fromtarfile`` needs of a TarFile, over a stream read once.

    Member data is read through :meth:`readinto_upto` by whoever reads the member, and the
    rest of it skipped with :meth:`skip_to` before the next header is read.
    """

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.fileobj = self
        self.pax_headers: dict[str, str] = {}
        self.offset = 0
        self.position = 0

    def read(self, size: int) -> bytes:
        data = _read_fully(self.stream, size)
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def readinto_upto(self, view: memoryview) -> int:
        n = _readinto_fully(self.stream, view)
        self.position += n
        return n

    def skip_to(self, offset: int) -> None:
        """Discard the rest of a member's data and its padding."""
        while self.position < offset:
            chunk = self.stream.read(min(offset - self.position, 1 << 20))
            if not chunk:
                raise InvalidArchiveError("archive is truncated (inside a member's data)")
            self.position += len(chunk)
        self.offset = offset


def next_header(source: HeaderSource) -> tarfile.TarInfo | None:
    """The next header of a stream (with the strict checks below), or None at the end."""
    try:
        return _StrictTarInfo.fromtarfile(cast(tarfile.TarFile, source))
    except _EOF_HEADER:
        return None  # the end-of-archive marker
    except _EMPTY_HEADER:
        if source.position == 0:
            raise InvalidArchiveError("not a valid tar archive (empty file)") from None
        return None  # ended at a member boundary without a marker, as Go's reader allows


def _read_fully(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _readinto_fully(stream: IO[bytes], view: memoryview) -> int:
    """Fill *view* unless the stream ends: a pipe hands over 64 KiB per read."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


class _StrictTarInfo(tarfile.TarInfo):
    """Header reading as strict as Go's ``archive/tar``, which containerd uses.

    - tarfile ends an archive quietly at a truncated or invalid header after the first
      member; here that is an error, so a damaged archive is never taken for a shorter one;
    - PAX and GNU long-name headers are read whole into memory, however large they claim to
      be: the absurd ones are refused first (Go's limit is 1 MiB too);
    - PAX records are checked in one linear pass before tarfile's regular expressions see
      them (on older Pythons those backtrack for minutes on long digit runs, CVE-2024-6232).
    """

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return super().fromtarfile(tarfile)
        except (_TRUNCATED_HEADER, _INVALID_HEADER) as exc:
            if isinstance(exc, _EOF_HEADER):
                raise  # the end-of-archive marker
            offset = cast(Any, tarfile).offset
            if isinstance(exc, _TRUNCATED_HEADER):
                raise InvalidArchiveError(
                    f"not a valid tar archive or truncated: partial header at offset {offset}"
                ) from None
            raise InvalidArchiveError(
                f"not a valid tar archive: bad header at offset {offset} ({exc})"
            ) from None

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header_size(self)
        tar = cast(Any, tarfile)
        fileobj = tar.fileobj
        data = fileobj.read(cast(Any, self)._block(self.size))
        _check_pax_records(data[: self.size], self.offset)
        tar.fileobj = _Replay(data, fileobj)
        try:
            return super()._proc_pax(tarfile)  # type: ignore[misc, no-any-return]
        finally:
            tar.fileobj = fileobj

    def _proc_gnusparse_10(
        self, next: tarfile.TarInfo, pax_headers: dict[str, str], tarfile: tarfile.TarFile
    ) -> None:
        """A GNU 1.0 sparse member keeps its map in its data, which tarfile reads with the
        header, as many entries as the map's first line claims (a list growing with the
        input, and a ValueError at a map cut short). Sparse members are refused anyway."""
        shown = next.name if len(next.name) <= 100 else f"{next.name[:60]}…"
        raise InvalidArchiveError(f"member {shown!r}: sparse file not allowed in an image archive")

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header_size(self)
        return super()._proc_gnulong(tarfile)  # type: ignore[misc, no-any-return]


class _Replay:
    """The archive stream with a block already read put back, for tarfile to read again."""

    def __init__(self, data: bytes, stream: IO[bytes]) -> None:
        self._data: bytes | None = data
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._data is not None:
            data, self._data = self._data, None
            assert size == len(data)
            return data
        return self._stream.read(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _check_pax_records(data: bytes, offset: int) -> None:
    """PAX records are ``<length> <key>=<value>\\n``; anything else is refused here."""
    if re.search(rb"\d{%d}" % (_MAX_PAX_DIGITS + 1), data):
        raise InvalidArchiveError(
            f"not a valid tar archive: PAX header at offset {offset} holds an absurdly long number"
        )
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.find(b" ", position, position + _MAX_PAX_DIGITS + 1)
        digits = data[position:space] if space > position else b""
        length = int(digits) if digits.isdigit() else 0
        end = position + length
        if (
            length < 5
            or end > len(data)
            or data[end - 1 : end] != b"\n"
            or b"=" not in data[space:end]
        ):
            raise InvalidArchiveError(
                f"not a valid tar archive: malformed PAX record at offset {offset}"
            )
        position = end


def _check_header_size(info: tarfile.TarInfo) -> None:
    if info.size > MAX_HEADER_BYTES:
        raise tarfile.HeaderError(
            f"extended header of {info.size} bytes exceeds {MAX_HEADER_BYTES}"
        )
