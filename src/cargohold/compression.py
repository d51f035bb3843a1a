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
from typing import IO, Final, Literal

import zstandard

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


def decompressed(stream: IO[bytes], kind: Compression) -> IO[bytes]:
    """A reader of the decompressed bytes of *stream*."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            stream, read_size=1 << 20, read_across_frames=True
        )
        return io.BufferedReader(reader, buffer_size=1 << 20)
    if kind == "xz":
        return lzma.LZMAFile(stream, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(stream, mode="rb")
    return stream


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
