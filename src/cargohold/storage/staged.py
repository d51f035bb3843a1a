"""Staged blobs, and the sinks their bytes go to while they are hashed.

A :class:`StagedBlob` is what staging hands back: verified, written to the ingest area (or
only hashed), not yet visible in the store. A :class:`Sink` is where the bytes go; the one
that writes nothing (:data:`HASH_ONLY`, for an archive that is only inspected) is here, the
one that writes a staging directory is :class:`cargohold.storage.ingest.StagingDir`.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Final, Protocol

from ..errors import ContentError
from ..oci.digests import Digest
from .files import open_regular
from .writers import PIPELINE_CHUNK

if TYPE_CHECKING:
    from concurrent.futures import Future

#: A blob only hashed keeps this many leading bytes (enough to sniff its compression).
KEPT_HEAD: Final = 512

#: Called with the number of bytes of each chunk staged (progress).
OnChunk = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """A verified blob written to the ingest area but not yet visible in the store.

    A small blob is bytes [*offset*, *offset* + *size*) of its staging directory's pack (see
    :data:`PACK_LIMIT`); a larger one is the whole file at *path* (*offset* -1). A blob that
    was only hashed (an archive being inspected, nothing written) has no *path*; it keeps its
    bytes when they may be a JSON document, else only its first bytes.
    """

    digest: Digest
    size: int
    path: Path | None
    kept: bytes = b""
    offset: int = -1
    #: A blob staged alongside (see :class:`StagingDir`): done once it is verified.
    pending: Future[Future[None]] | None = field(default=None, compare=False, repr=False)

    @property
    def packed(self) -> bool:
        return self.offset >= 0

    def verified(self) -> None:
        """Wait until the blob is verified (at once unless it is staged alongside); raises
        :class:`ContentError` when its content does not match its digest."""
        if self.pending is not None:
            self.pending.result()

    def read(self) -> bytes:
        """The whole blob (callers check the size first: this is for documents). A *path*
        may be the store's own file (a blob an import found stored): only a regular file
        is read there, as by :meth:`BlobStore.open`."""
        self.verified()
        if self.path is not None:
            if self.packed:
                return self._read(self.size)
            with open_regular(self.path, self.digest) as f:
                return f.read()
        if len(self.kept) != self.size:
            raise ContentError(f"blob {self.digest} was not kept in memory")
        return self.kept

    def head(self, n: int) -> bytes:
        self.verified()
        if self.path is None:
            return self.kept[:n]
        if self.packed:
            return self._read(min(n, self.size))
        with open_regular(self.path, self.digest) as f:
            return f.read(n)

    def open(self) -> BinaryIO:
        """A reader of the blob's bytes."""
        assert self.path is not None, "a blob that was only hashed has no file"
        self.verified()
        return io.BytesIO(self.read()) if self.packed else self.path.open("rb")

    def _read(self, n: int) -> bytes:
        assert self.path is not None
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, n, self.offset)
        finally:
            os.close(fd)
        if len(data) != n:
            raise ContentError(f"blob {self.digest}: staged copy is truncated")
        return data


class Sink(Protocol):
    """Where a blob's bytes go while they are hashed: the one thing that differs between an
    import (a staging directory) and an inspection (nowhere), so both read and check alike."""

    def stage(
        self,
        source: IO[bytes],
        size: int,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
        keep_limit: int,
    ) -> StagedBlob:
        """Consume exactly *size* bytes of *source* into *hasher*; the blob, verified against
        *expected* when given (:class:`ContentError` naming *what* otherwise, or when the
        source is short). *keep_limit*: see :meth:`Ingest.stage`."""

    def wait(self) -> None:
        """Wait until every blob staged is verified (a sink may verify a blob after
        :meth:`stage` returned it, see ``ingest.StagingDir``); raises the first failure.
        Nothing still reads from a source :meth:`stage` was given when this returns."""

    def cancel(self) -> None:
        """Stop verifying blobs still in flight, soon: their import failed and will use none
        of them (:meth:`wait` then returns as soon as they have stopped)."""


class HashOnly:
    """The sink of ``archive inspect``: nothing is written. A blob is kept in memory when it
    is at most *keep_limit* bytes and looks like JSON (it may be a manifest or config); of
    the others, only the first bytes (to sniff a layer's compression)."""

    def stage(
        self,
        source: IO[bytes],
        size: int,
        hasher: hashlib._Hash,
        expected: Digest | None,
        what: str,
        on_chunk: OnChunk | None,
        keep_limit: int,
    ) -> StagedBlob:
        kept = bytearray()
        for chunk in read_chunks(source, size, what, 1):
            if len(kept) < KEPT_HEAD or (size <= keep_limit and _json_like(kept)):
                kept += chunk
            hasher.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        if not (size <= keep_limit and _json_like(kept)):
            kept = kept[:KEPT_HEAD]
        digest = checked_digest(hasher, expected, what)
        return StagedBlob(digest, size, None, bytes(kept))

    def wait(self) -> None:
        """Nothing to wait for: every blob is verified before :meth:`stage` returns."""

    def cancel(self) -> None:
        """Nothing in flight to stop."""


#: Stage nothing, only hash and check (see :class:`HashOnly`).
HASH_ONLY: Final = HashOnly()


def read_chunks(
    source: IO[bytes],
    size: int,
    what: str,
    buffers: int,
    reuse: Callable[[int], None] | None = None,
) -> Iterator[memoryview]:
    """Exactly *size* bytes of *source*, in chunks read into *buffers* buffers in rotation;
    :class:`ContentError` naming *what* when the source ends first. *reuse(turn)* is called
    before the buffer of chunk number *turn* is read into again (its chunk must be done with).
    """
    chunk_size = pipeline_chunk(size)
    views = [memoryview(bytearray(chunk_size)) for _ in range(buffers)]
    remaining, turn = size, 0
    while remaining:
        view = views[turn % buffers]
        if reuse is not None:
            reuse(turn - buffers)
        n = source.readinto(view[: min(remaining, chunk_size)])  # type: ignore[attr-defined]
        if not n:
            raise ContentError(f"{what}: truncated, {size - remaining} of {size} bytes present")
        yield view[:n]
        remaining -= n
        turn += 1


def pipeline_chunk(size: int) -> int:
    """The chunk size of a staging of *size* bytes."""
    return min(PIPELINE_CHUNK, max(size, 1))


def checked_digest(hasher: hashlib._Hash, expected: Digest | None, what: str) -> Digest:
    """What *hasher* computed, which must be *expected* when that is given."""
    digest = _computed(hasher, expected)
    if expected is not None and digest != expected:
        raise ContentError(f"{what}: content has digest {digest}, not {expected}")
    return digest


def _computed(hasher: hashlib._Hash, expected: Digest | None) -> Digest:
    """What *hasher* computed: *expected* itself when it matches (an archive's blobs are kept
    by the thousand, and each copy of a digest costs some 200 bytes)."""
    computed = hasher.hexdigest()
    if expected is not None and expected.hex == computed and expected.algorithm == hasher.name:
        return expected
    return Digest(hasher.name, computed)


def _json_like(head: bytes | bytearray) -> bool:
    """Whether a blob's first bytes could start a JSON object (a document, not a layer)."""
    stripped = bytes(head).lstrip(b" \t\r\n")
    return not stripped or stripped.startswith(b"{")
