"""Compressed streams: detection by magic bytes and streaming decompression.

Archives arrive as ``.tar``, ``.tar.gz``, ``.tar.zst``, ``.tar.xz`` or ``.tar.bz2``, from files
and pipes alike; users should not have to say which. Decompression happens in-process (no
external ``xz``/``unpigz`` from an untrusted PATH) and streams, so no uncompressed copy of the
archive ever lands on disk.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from typing import IO, Final, Literal, cast

import zstandard

from .errors import InvalidArchiveError

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
    counted = _Counting(stream)
    source = cast(IO[bytes], io.BufferedReader(counted, buffer_size=1 << 20))
    reader: IO[bytes]
    if kind == "gzip":
        reader = cast(IO[bytes], gzip.GzipFile(fileobj=source, mode="rb"))
    elif kind == "zstd":
        zstd = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            source, read_size=1 << 20, read_across_frames=True
        )
        reader = cast(IO[bytes], io.BufferedReader(zstd, buffer_size=1 << 20))
    elif kind == "xz":
        reader = cast(IO[bytes], lzma.LZMAFile(source, mode="rb"))  # noqa: SIM115
    elif kind == "bzip2":
        reader = cast(IO[bytes], bz2.BZ2File(source, mode="rb"))
    else:
        raise ValueError(f"cannot read {kind} compression")
    if max_ratio is None and max_bytes is None:
        return reader
    bounded = _Bounded(reader, counted, kind, max_ratio, max_bytes, floor)
    return cast(IO[bytes], io.BufferedReader(bounded, buffer_size=1 << 20))


class _Counting(io.RawIOBase):
    """Counts the compressed bytes a decompressor consumes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return n


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
        return gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6)  # type: ignore[return-value]
    if kind == "zstd":
        writer = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
            out, closefd=False, write_return_read=True
        )
        return writer
    raise ValueError(f"cannot write {kind} compression")
