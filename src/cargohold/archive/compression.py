"""Compressed streams: detection by magic bytes and streaming decompression.

Archives arrive as ``.tar``, ``.tar.gz``, ``.tar.zst``, ``.tar.xz`` or ``.tar.bz2``, from files
and pipes alike; users should not have to say which. Decompression happens in-process (no
external ``xz``/``unpigz`` from an untrusted PATH) and streams, so no uncompressed copy of the
archive ever lands on disk.
"""

from __future__ import annotations

import io
from typing import IO, Final, Literal, cast

from ..errors import InvalidArchiveError

Compression = Literal["none", "gzip", "zstd", "xz", "bzip2"]

_MAGIC: Final[tuple[tuple[bytes, Compression], ...]] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
#: Largest zstd window we accept (the format's default maximum for decoders is 128 MiB);
#: a larger one is a memory attack.
ZSTD_MAX_WINDOW: Final = 1 << 27


def detect(head: bytes) -> Compression:
    """The compression a stream uses, from its first bytes."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)  # type: ignore[attr-defined, no-any-return]


def peek(stream: IO[bytes], seekable: bool, size: int = 6) -> tuple[bytes, IO[bytes]]:
    """The first *size* bytes of *stream*, and a stream that still starts at them."""
    if seekable:
        position = stream.tell()
        head = stream.read(size)
        stream.seek(position)
        return head, stream
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head, io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)


def decompressed(
    stream: IO[bytes],
    kind: Compression,
    max_ratio: float | None = None,
    max_bytes: int | None = None,
    floor: int = 64 << 20,
) -> IO[bytes]:
    """A reader of the decompressed bytes of *stream*.

    With *max_ratio* or *max_bytes* the output is bounded as it is produced: more than
    *max_bytes*, or more than *floor* plus *max_ratio* times the compressed bytes consumed so
    far, raises :class:`InvalidArchiveError` (a decompression bomb) before it is written out.
    """
    if kind == "none":
        return stream
    counted = _Counting(stream, _ZstdFrames() if kind == "zstd" else None)
    source = cast(IO[bytes], io.BufferedReader(counted, buffer_size=1 << 20))
    reader: IO[bytes]
    # Each codec is imported when an archive uses it, not by every command.
    if kind == "gzip":
        import gzip

        reader = cast(IO[bytes], gzip.GzipFile(fileobj=source, mode="rb"))
    elif kind == "zstd":
        import zstandard

        zstd = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            source, read_size=1 << 20, read_across_frames=True
        )
        reader = cast(IO[bytes], io.BufferedReader(zstd, buffer_size=1 << 20))
    elif kind == "xz":
        import lzma

        reader = cast(IO[bytes], lzma.LZMAFile(source, mode="rb"))  # noqa: SIM115
    elif kind == "bzip2":
        import bz2

        reader = cast(IO[bytes], bz2.BZ2File(source, mode="rb"))
    else:
        raise ValueError(f"cannot read {kind} compression")
    if max_ratio is None and max_bytes is None:
        return reader
    bounded = _Bounded(reader, counted, kind, max_ratio, max_bytes, floor)
    return cast(IO[bytes], io.BufferedReader(bounded, buffer_size=1 << 20))


class _Counting(io.RawIOBase):
    """Counts the compressed bytes a decompressor consumes, and for zstd follows the frames,
    so that input ending inside a frame is an error (the zstd reader takes it for the end)."""

    def __init__(self, raw: IO[bytes], frames: _ZstdFrames | None = None) -> None:
        self._raw = raw
        self._frames = frames
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        if self._frames is not None:
            if n:
                self._frames.feed(memoryview(buffer)[:n])
            elif not self._frames.at_boundary():
                raise InvalidArchiveError("zstd compressed archive is truncated (inside a frame)")
        return n


class _ZstdFrames:
    """Follows the frame and block structure of a zstd stream (RFC 8878) without decoding
    it: enough to tell whether the input stopped between frames or in the middle of one."""

    _MAGIC: Final = 0xFD2FB528

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4
        self._field = bytearray()
        self._skip = 0
        self._checksum = False

    def at_boundary(self) -> bool:
        return self._state == "magic" and not self._field and not self._skip

    def feed(self, data: memoryview) -> None:
        position = 0
        while position < len(data):
            if self._skip:
                n = min(self._skip, len(data) - position)
                self._skip -= n
                position += n
                continue
            n = min(self._need - len(self._field), len(data) - position)
            self._field += data[position : position + n]
            position += n
            if len(self._field) == self._need:
                value = int.from_bytes(self._field, "little")
                first = self._field[0]
                self._field.clear()
                self._advance(value, first)

    def _expect(self, state: str, need: int, skip: int = 0) -> None:
        self._state, self._need, self._skip = state, need, skip

    def _advance(self, value: int, first: int) -> None:
        if self._state == "magic":
            if value == self._MAGIC:
                self._expect("descriptor", 1)
            elif value & 0xFFFFFFF0 == 0x184D2A50:
                self._expect("skippable", 4)
            else:
                raise InvalidArchiveError("corrupt zstd compressed archive (bad frame magic)")
        elif self._state == "skippable":
            self._expect("magic", 4, skip=value)
        elif self._state == "descriptor":
            single = first >> 5 & 1
            self._checksum = bool(first >> 2 & 1)
            rest = (0 if single else 1) + (0, 1, 2, 4)[first & 3]
            rest += ((1 if single else 0), 2, 4, 8)[first >> 6]
            self._expect("header", rest) if rest else self._expect("block", 3)
        elif self._state == "header":
            self._expect("block", 3)
        elif self._state == "block":
            last, kind, size = value & 1, value >> 1 & 3, value >> 3
            if kind == 3:
                raise InvalidArchiveError("corrupt zstd compressed archive (reserved block type)")
            skip = 1 if kind == 1 else size
            if not last:
                self._expect("block", 3, skip)
            elif self._checksum:
                self._expect("checksum", 4, skip)
            else:
                self._expect("magic", 4, skip)
        elif self._state == "checksum":
            self._expect("magic", 4)


class _Bounded(io.RawIOBase):
    """Decompressed output that stops, with an error, where a bomb would begin."""

    def __init__(
        self,
        reader: IO[bytes],
        counted: _Counting,
        kind: Compression,
        max_ratio: float | None,
        max_bytes: int | None,
        floor: int,
    ) -> None:
        self._reader = reader
        self._counted = counted
        self._kind = kind
        self._max_ratio = max_ratio
        self._max_bytes = max_bytes
        self._floor = floor
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._reader.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        if self._max_bytes is not None and self.count > self._max_bytes:
            raise InvalidArchiveError(
                f"{self._kind} compressed archive expands beyond {self._max_bytes} bytes"
                " (a decompression bomb? raise --max-uncompressed-size to allow it)"
            )
        if (
            self._max_ratio is not None
            and self.count > self._floor + self._max_ratio * self._counted.count
        ):
            raise InvalidArchiveError(
                f"{self._kind} compressed archive expands more than {self._max_ratio:g} times"
                f" ({self.count} bytes from {self._counted.count}; a decompression bomb?"
                " raise --max-expansion to allow it)"
            )
        return n


def compressor(kind: Compression, out: IO[bytes]) -> IO[bytes]:
    """A writer that compresses into *out* (closing it does not close *out*)."""
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6)  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        writer = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
            out, closefd=False, write_return_read=True
        )
        return writer
    raise ValueError(f"cannot write {kind} compression")
