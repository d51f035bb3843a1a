"""A blob's upload, in the three ways the Distribution API offers: one streamed PUT
(monolithic), PATCH chunks then a PUT (chunked), or a cross-repository mount (no bytes sent).

Local bytes are checked against the blob's size and digest as they are read, and before the
last of them leaves, so a registry never commits content that does not match its digest.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import IO, Final

import httpx

from ..errors import (
    ContentError,
    RegistryConnectionError,
    RegistryContentError,
    RegistryError,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTooSlowError,
)
from ..oci.digests import Digest
from .auth import Authenticator, pull_scopes, push_scopes
from .http import LOGGER_NAME, Attempts, Body, Session
from .messages import Target
from .responses import DIGITS, announced_digest, expect, location

__all__ = ["DEFAULT_MONOLITHIC_LIMIT", "DEFAULT_UPLOAD_CHUNK_SIZE", "Uploader"]

logger = logging.getLogger(LOGGER_NAME)

#: Blobs smaller than this are pushed in one streamed PUT; larger ones in PATCH chunks. By
#: default every blob goes in one PUT, as containerd and docker push them (half the requests
#: and no chunk held in memory); a smaller limit is for a registry, or a proxy before it, with
#: a request size limit.
DEFAULT_MONOLITHIC_LIMIT: Final = 1 << 62
#: The size of one PATCH of a chunked upload. A chunk is held in memory so that it can be sent
#: again after an authentication challenge; several uploads run in parallel, so keep it modest.
DEFAULT_UPLOAD_CHUNK_SIZE: Final = 8 << 20
#: Largest chunk a registry may demand through ``OCI-Chunk-Min-Length`` before we stream the
#: blob in one PUT instead (a chunk is held in memory).
_MAX_CHUNK: Final = 64 << 20
_UPLOAD_RANGE: Final = re.compile(r"(?:bytes=)?0-([0-9]{1,20})")

#: Opens the local blob's bytes from the start (again when an upload starts over).
Opener = Callable[[], IO[bytes]]


class Uploader:
    """Uploads and mounts the blobs of one registry.

    *chunk_size* is the most read from the local blob at once for a monolithic upload;
    *upload_chunk_size* the size of one PATCH; blobs under *monolithic_limit* go in one PUT.
    """

    def __init__(
        self,
        session: Session,
        auth: Authenticator,
        *,
        chunk_size: int,
        upload_chunk_size: int,
        monolithic_limit: int,
    ) -> None:
        self._session = session
        self._auth = auth
        self._chunk_size = chunk_size
        self._upload_chunk_size = upload_chunk_size
        self._monolithic_limit = monolithic_limit

    def upload(
        self,
        target: Target,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Opener,
        mount_from: str | None,
    ) -> bool:
        """Push a blob, starting over after a transient failure while the retry policy
        allows (a registry too slow is not retried); True when it was mounted instead."""
        attempts = Attempts(self._session.retry)
        while True:
            try:
                return self._upload_once(repository, digest, size, open_reader, mount_from, target)
            except RegistryTooSlowError:
                raise
            except (RegistryServerError, RegistryConnectionError) as exc:
                retry_after = exc.retry_after if isinstance(exc, RegistryServerError) else None
                if not attempts.retry(retry_after):
                    raise
                logger.debug("%s: upload starts over after: %s", target, exc)

    def mount(self, target: Target, repository: str, digest: Digest, from_repository: str) -> bool:
        """Ask for a mount; True when the registry did it. An upload session it opens instead
        is cancelled."""
        mounted, session = self._start(
            repository, digest, from_repository, target, Attempts(self._session.retry)
        )
        if session is not None:
            self._cancel(session[0], repository, target)
        return mounted

    def _upload_once(
        self,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Opener,
        mount_from: str | None,
        target: Target,
    ) -> bool:
        """One try: open a session (or mount), send the bytes, and cancel the session if
        anything fails, so that no half-written upload lingers on the registry."""
        mounted, session = self._start(repository, digest, mount_from, target, None)
        if session is None:
            return mounted
        url, min_chunk = session
        try:
            chunk = max(self._upload_chunk_size, min_chunk)
            if size < self._monolithic_limit or chunk > _MAX_CHUNK:
                self._put_monolithic(url, repository, digest, size, open_reader, target)
            else:
                self._put_chunked(url, repository, digest, size, open_reader, chunk, target)
        except Exception:
            self._cancel(url, repository, target)
            raise
        return False

    def _start(
        self,
        repository: str,
        digest: Digest,
        mount_from: str | None,
        target: Target,
        attempts: Attempts | None,
    ) -> tuple[bool, tuple[httpx.URL, int] | None]:
        """POST an upload (or a mount); (True, None) when mounted, else the session's URL and
        the registry's minimum chunk length."""
        reporter = self._session.reporter
        url = self._session.url(f"/v2/{repository}/blobs/uploads/")
        scopes = push_scopes(repository)
        if mount_from is not None:
            url = url.copy_merge_params({"mount": str(digest), "from": mount_from})
            scopes |= pull_scopes(mount_from)
        what = "blob mount" if mount_from is not None else "blob upload"
        response = self._auth.open("POST", url, target, what, scopes, body=b"", attempts=attempts)
        with closing(response):
            expect(reporter, response, target, what, 201, 202)
            if response.status_code == 201:
                if mount_from is None:
                    raise reporter.error(
                        RegistryProtocolError, target, "registry created a blob out of nothing"
                    )
                return True, None
            where = location(reporter, response, target)
            minimum = response.headers.get("oci-chunk-min-length", "").strip()
            return False, (where, int(minimum) if DIGITS.fullmatch(minimum) else 0)

    def _put_monolithic(
        self,
        url: httpx.URL,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Opener,
        target: Target,
    ) -> None:
        """The whole blob in the closing PUT, streamed; read again if the PUT is answered
        with a challenge."""

        def body() -> Iterator[bytes]:
            return self._session.metered(self._read_local(open_reader, digest, size, target))

        self._finish(url, repository, digest, target, body, size=size)

    def _put_chunked(
        self,
        url: httpx.URL,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Opener,
        chunk_size: int,
        target: Target,
    ) -> None:
        """The blob in PATCHes of *chunk_size* bytes (each held in memory, to be sent again
        after a challenge), then an empty closing PUT."""
        hasher = digest.hasher()
        offset = 0
        with open_reader() as reader:
            while offset < size:
                data = _read_exactly(reader, min(chunk_size, size - offset))
                hasher.update(data)
                end = offset + len(data)
                if end == size or len(data) < min(chunk_size, size - offset):
                    _check_local_end(reader, hasher, digest, size, end, target)
                url = self._patch(url, repository, target, data, offset)
                offset = end
        self._finish(url, repository, digest, target, b"", size=0)

    def _patch(
        self, url: httpx.URL, repository: str, target: Target, data: bytes, offset: int
    ) -> httpx.URL:
        """Send one chunk at *offset*; returns where the upload goes on."""
        reporter = self._session.reporter
        end = offset + len(data)
        response = self._auth.open(
            "PATCH", url, target, "blob upload", push_scopes(repository),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{end - 1}",
                "Content-Length": str(len(data)),
            },
            body=functools.partial(self._session.metered, (data,)),
        )  # fmt: skip
        with closing(response):
            expect(reporter, response, target, "blob upload", 202, 204)
            url = location(reporter, response, target, default=url)
            confirmed = _UPLOAD_RANGE.fullmatch(response.headers.get("range", "").strip())
            if confirmed is not None and int(confirmed[1]) != end - 1:
                raise reporter.error(
                    RegistryProtocolError, target,
                    f"registry holds bytes 0-{confirmed[1]} of the upload, not 0-{end - 1}",
                )  # fmt: skip
        return url

    def _finish(
        self,
        url: httpx.URL,
        repository: str,
        digest: Digest,
        target: Target,
        body: Body,
        *,
        size: int,
    ) -> None:
        """The closing PUT naming the digest; the registry must store the blob under it."""
        reporter = self._session.reporter
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self._auth.open(
            "PUT", url.copy_merge_params({"digest": str(digest)}), target, "blob upload",
            push_scopes(repository), headers=headers, body=body,
        )  # fmt: skip
        with closing(response):
            expect(reporter, response, target, "blob upload", 201, 204)
            announced = announced_digest(reporter, response, target)
        if announced is not None and announced != digest:
            raise reporter.error(
                RegistryContentError, target, f"registry stored the blob as {announced}"
            )

    def _cancel(self, url: httpx.URL, repository: str, target: Target) -> None:
        """Drop an upload session we will not finish; it expires on its own if this fails."""
        try:
            response = self._auth.open(
                "DELETE", url, target, "blob upload", push_scopes(repository), allow=range(600)
            )
            response.close()
        except RegistryError as exc:
            logger.debug("%s: cancelling the upload failed: %s", target, exc)

    def _read_local(
        self, open_reader: Opener, digest: Digest, size: int, target: Target
    ) -> Iterator[bytes]:
        """The local blob's bytes, checked before the last chunk leaves: content that does not
        match aborts the request, so the registry never commits it."""
        hasher = digest.hasher()
        with open_reader() as reader:
            offset = 0
            while True:
                chunk = reader.read(min(self._chunk_size, size - offset))
                if not chunk and offset < size:
                    raise ContentError(f"{target}: the local blob has {offset} bytes, not {size}")
                hasher.update(chunk)
                offset += len(chunk)
                if offset > size:
                    raise ContentError(f"{target}: the local blob has more than {size} bytes")
                if offset == size:
                    _check_local_end(reader, hasher, digest, size, offset, target)
                if chunk:
                    yield chunk
                if offset == size:
                    return


def _read_exactly(reader: IO[bytes], n: int) -> bytes:
    """*n* bytes, fewer only at the end of the file (a read may return less than asked)."""
    parts: list[bytes] = []
    remaining = n
    while remaining:
        chunk = reader.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _check_local_end(
    reader: IO[bytes],
    hasher: hashlib._Hash,
    digest: Digest,
    size: int,
    offset: int,
    target: Target,
) -> None:
    """The local blob must end at *size* bytes with *digest*; checked before its last bytes are
    sent, so that a registry never commits the wrong content."""
    if offset < size:
        raise ContentError(f"{target}: the local blob has {offset} bytes, not {size}")
    if reader.read(1):
        raise ContentError(f"{target}: the local blob has more than {size} bytes")
    if hasher.hexdigest() != digest.hex:
        raise ContentError(
            f"{target}: the local blob's content does not match its digest "
            f"({digest.algorithm}:{hasher.hexdigest()})"
        )
