"""A blob's download: streamed into a sink, hashed on the way, never past its declared size,
and resumed with ``Range`` where a connection broke off."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import IO, Final, TypeAlias

import httpx

from ..errors import (
    BelowSpeedFloor,
    RegistryConnectionError,
    RegistryContentError,
    RegistryProtocolError,
    TransferDropped,
)
from ..oci.digests import Digest
from .auth import Authenticator, pull_scopes
from .http import LOGGER_NAME, Attempts, Session, transport_reason
from .messages import Target
from .responses import check_encoding, content_length
from .socketreads import DIRECT_READ_MIN, direct_socket, read_direct
from .speed import SpeedMeter

__all__ = ["DEFAULT_CHUNK_SIZE", "BlobSink", "Downloader", "hash_prefix"]

logger = logging.getLogger(LOGGER_NAME)

#: Downloads hand the sink chunks of at most this many bytes: the memory a download holds.
DEFAULT_CHUNK_SIZE: Final = 1 << 20

_CONTENT_RANGE: Final = re.compile(r"bytes ([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,20}|\*)")

#: Where a download goes: a callable handed each chunk (it must not keep the memoryview, whose
#: buffer may be reused), or a binary file object written to.
BlobSink: TypeAlias = Callable[[memoryview], object] | IO[bytes]


def hash_prefix(sink: BlobSink, length: int, hasher: hashlib._Hash) -> None:
    """Feed *hasher* the first *length* bytes already in a file, to resume a download into it."""
    if callable(sink):
        raise ValueError("resume_from needs a file sink, or the hasher of the bytes already had")
    sink.seek(0)
    remaining = length
    while remaining:
        chunk = sink.read(min(remaining, DEFAULT_CHUNK_SIZE))
        if not chunk:
            raise ValueError(f"resume_from={length}, but the file holds only {length - remaining}")
        hasher.update(chunk)
        remaining -= len(chunk)
    sink.seek(length)
    sink.truncate()


class Downloader:
    """Downloads the blobs of one registry in chunks of at most *chunk_size* bytes; a body
    of at least *direct_min* bytes over plain HTTP is read from the socket, a buffer of
    *chunk_size* bytes at a time (see :mod:`.socketreads`)."""

    def __init__(
        self,
        session: Session,
        auth: Authenticator,
        chunk_size: int,
        direct_min: int = DIRECT_READ_MIN,
    ) -> None:
        self._session = session
        self._auth = auth
        self._chunk_size = chunk_size
        #: Plain-HTTP bodies at least this large are read from the socket (see socketreads).
        self._direct_min = direct_min

    def fetch(
        self,
        target: Target,
        repository: str,
        digest: Digest,
        size: int,
        write: Callable[[memoryview], object],
        hasher: hashlib._Hash,
        resume_from: int,
    ) -> int:
        """Stream the blob from *resume_from* into *write*, resuming where the connection
        breaks off while the retry policy allows; returns the offset reached (the size).
        The caller checks the digest."""
        url = self._session.url(f"/v2/{repository}/blobs/{digest}")
        attempts = Attempts(self._session.retry)
        offset = resume_from
        while offset < size or (size == 0 and resume_from == 0 and offset == 0):
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self._auth.open(
                "GET", url, target, "blob", pull_scopes(repository),
                headers=headers, follow_redirects=True, attempts=attempts,
            )  # fmt: skip
            try:
                with closing(response):
                    offset = self._receive(response, target, offset, size, hasher, write)
                break
            except TransferDropped as dropped:
                logger.debug("%s: %s after %d bytes", target, dropped.reason, dropped.offset)
                offset = dropped.offset
                if not attempts.retry():
                    raise self._session.reporter.error(
                        RegistryConnectionError, target,
                        f"blob download broke off at {offset} of {size} bytes "
                        f"({dropped.reason}), {attempts.failures} attempts",
                    ) from None  # fmt: skip
        return offset

    def _receive(
        self,
        response: httpx.Response,
        target: Target,
        offset: int,
        size: int,
        hasher: hashlib._Hash,
        write: Callable[[memoryview], object],
    ) -> int:
        """Stream one response into the sink from *offset*; returns the offset reached."""
        skip, expected = self._expected(response, target, offset, size)
        reporter = self._session.reporter
        check_encoding(reporter, response, target, "blob")
        length = content_length(reporter, response, target)
        if length is not None and length != expected:
            word = "larger" if length > expected else "smaller"
            raise reporter.error(
                RegistryContentError, target,
                f"blob is {word} than its declared size {size} (the registry sends "
                f"{length + size - expected} bytes)",
            )  # fmt: skip
        return self._stream(response, target, offset, skip, size, hasher, write, length)

    def _expected(
        self, response: httpx.Response, target: Target, offset: int, size: int
    ) -> tuple[int, int]:
        """How many bytes of the body to drop (a registry ignoring ``Range`` sends them all
        again) and how many the body must have, from its status and ``Content-Range``."""
        reporter = self._session.reporter
        status = response.status_code
        if status == 200:
            return offset, size  # the registry ignored Range: drop what we have
        if status != 206:
            raise reporter.error(
                RegistryProtocolError, target, f"unexpected HTTP {status} for a blob"
            )
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if match is None:
            raise reporter.error(RegistryProtocolError, target, "206 without a Content-Range")
        start, end, total = int(match[1]), int(match[2]), match[3]
        if total != "*" and int(total) != size:
            raise reporter.error(
                RegistryContentError, target,
                f"registry has a blob of {total} bytes, not of the declared {size}",
            )  # fmt: skip
        if start != offset or end < start or end >= size:
            raise reporter.error(
                RegistryProtocolError, target,
                f"registry sent bytes {start}-{end} when asked for {offset}-",
            )  # fmt: skip
        return 0, size - offset

    def _stream(
        self,
        response: httpx.Response,
        target: Target,
        offset: int,
        skip: int,
        size: int,
        hasher: hashlib._Hash,
        write: Callable[[memoryview], object],
        length: int | None,
    ) -> int:
        """Hash and write the body from *offset*, after dropping its first *skip* bytes;
        raises :class:`TransferDropped` when it ends early or the connection breaks."""
        session = self._session
        meter = session.meter()
        sock = direct_socket(response, length, self._direct_min)
        if sock is not None and length is not None:
            buffer = memoryview(bytearray(self._chunk_size))
            chunks = read_direct(response, sock, length, buffer, meter)
        else:
            chunks = self._network_chunks(response, meter)
        try:
            for chunk in chunks:
                if skip:
                    dropped = min(skip, len(chunk))
                    skip -= dropped
                    chunk = chunk[dropped:]
                if offset + len(chunk) > size:
                    raise session.reporter.error(
                        RegistryContentError, target,
                        f"blob is larger than its declared size {size}",
                    )  # fmt: skip
                if chunk:
                    hasher.update(chunk)
                    write(chunk)
                    offset += len(chunk)
        except BelowSpeedFloor:
            raise session.too_slow(target, "blob", f"{offset} of {size} bytes received") from None
        except TransferDropped as dropped:  # the body's offset, said as the blob's
            raise TransferDropped(offset, dropped.reason) from None
        except (httpx.TransportError, TimeoutError) as exc:
            timed_out = isinstance(exc, httpx.TimeoutException | TimeoutError)
            if meter is not None and timed_out and meter.expired():
                raise session.too_slow(
                    target, "blob", f"{offset} of {size} bytes received"
                ) from None
            reason = transport_reason(exc) if isinstance(exc, httpx.TransportError) else "timed out"
            raise TransferDropped(offset, reason) from exc
        if offset < size:
            raise TransferDropped(offset, "the response ended early")
        return offset

    def _network_chunks(
        self, response: httpx.Response, meter: SpeedMeter | None
    ) -> Iterator[memoryview]:
        """The body as the network delivers it (at most httpcore's read size), so that the
        floor is checked at every read, cut to the chunk size the sink was promised."""
        for raw in response.iter_raw():
            if meter is not None:
                meter.advance(len(raw))
            for start in range(0, len(raw), self._chunk_size):
                yield memoryview(raw)[start : start + self._chunk_size]
