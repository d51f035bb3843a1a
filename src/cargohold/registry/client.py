"""A client of the OCI Distribution API, the ground of ``image pull`` and ``image push``.

A registry is an untrusted peer reached over an untrusted network, so every answer is checked the
way an archive is: manifests and blobs are hashed against the digest that names them (and against
``Docker-Content-Digest``), a blob is never accepted past its declared size, every body read
into memory (manifests, tokens, error documents) is read up to a bound, never whole, and every
body sent or received is held to a floor on its progress (curl's ``--speed-limit`` and
``--speed-time``), so that a registry trickling bytes cannot hold a transfer open forever.

Credentials are a liability the client carries for the user: they go only to the registry's
origin (scheme, host and port) and its own token service, never to a storage host a blob GET is
redirected to, nor to a token realm at another origin (another host, another port of the same
host, or plain HTTP) unless the caller allowed it, and they never appear in a repr, a log line or
an exception message. The client keeps no cookies, which are scoped by host and not by port.

One :class:`RegistryClient` serves one registry host and is shared by the threads of a pull or a
push (parallelism over blobs is the caller's): :class:`httpx.Client` is thread-safe, and the
client's own state (bearer tokens, the credentials it loaded) is guarded by locks.

This module holds the verbs; the concepts under them have modules of their own:
``credentials`` (who we are), ``auth`` (challenges, tokens, where credentials may go), ``http``
(sending, redirects, retries, error answers), ``responses`` (reading headers and error
documents), ``speed`` (the floor), ``manifests`` (tags, manifests and referrers), ``downloads``
and ``uploads`` (blob transfers), ``arguments`` (what a caller passes, checked before it reaches
a URL), and ``messages`` (what errors say, scrubbed of secrets).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import IO

import httpx

from ..errors import (
    AccessDeniedError,
    AuthenticationError,
    CredentialsError,
    ForeignRealmError,
    RegistryConnectionError,
    RegistryContentError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTooSlowError,
)
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME
from ..oci.digests import Digest
from ..oci.mediatypes import DEFAULT_JSON_LIMIT
from ..oci.references import DEFAULT_DOMAIN
from .arguments import check_floor, check_settings, check_size, checked_reference
from .auth import Authenticator, TokenCache, pull_scopes
from .authfiles import AuthFile, auth_files, find_credentials, load_docker_credentials
from .credentials import (
    DOCKER_HUB_API_HOST,
    Credentials,
    Identity,
    docker_config_path,
    is_docker_hub,
)
from .downloads import DEFAULT_CHUNK_SIZE, BlobSink, Downloader, hash_prefix
from .http import Attempts, RetryPolicy, Session
from .manifests import MANIFEST_ACCEPT, ManifestInfo, ManifestResponse, Manifests
from .messages import Reporter, Target
from .responses import content_length, expect
from .socketreads import DIRECT_READ_MIN
from .uploads import DEFAULT_MONOLITHIC_LIMIT, DEFAULT_UPLOAD_CHUNK_SIZE, Uploader

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MONOLITHIC_LIMIT",
    "DEFAULT_SPEED_LIMIT",
    "DEFAULT_SPEED_TIME",
    "DEFAULT_UPLOAD_CHUNK_SIZE",
    "MANIFEST_ACCEPT",
    "AccessDeniedError",
    "AuthenticationError",
    "BlobSink",
    "Credentials",
    "CredentialsError",
    "ForeignRealmError",
    "ManifestInfo",
    "ManifestResponse",
    "RegistryClient",
    "RegistryConnectionError",
    "RegistryContentError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryProtocolError",
    "RegistryServerError",
    "RegistryTooSlowError",
    "RetryPolicy",
    "docker_config_path",
    "load_docker_credentials",
]


class RegistryClient:
    """A client of one registry host, shared by the threads of a pull or a push.

    *host* is a reference domain (``docker.io``, ``ghcr.io``, ``localhost:5000``); Docker Hub is
    reached at ``registry-1.docker.io``. *credentials* are used when given, else those stored
    for the host (in the auth file *config_path* alone, else where podman looks: see
    :mod:`.authfiles`) unless *use_docker_config* is false, else the client is anonymous.
    *plain_http* talks HTTP without TLS; *verify* is False to skip TLS verification, or the
    path of a CA certificate (or a directory of ``*.crt``) to trust besides the system's.
    *allow_foreign_realm* lets credentials go to a
    token service at another origin (host or port) than the registry's; never in clear text
    unless the registry is reached in clear text. *transport* replaces httpx's network
    transport (an ``httpx.MockTransport`` in tests of code built on this client).

    *timeout* bounds each wait for the network (connecting, one read, one write); *speed_limit*
    and *speed_time* put a floor under the progress of every body: one that moves fewer than
    *speed_limit* bytes a second for *speed_time* seconds raises :class:`RegistryTooSlowError`
    (*speed_limit* 0 turns the floor off).

    Over plain HTTP, a blob body of at least *direct_read_min* bytes is read straight from
    the connection's socket in chunks of *chunk_size*, and its connection closed afterwards
    rather than reused (see :mod:`.socketreads`); smaller bodies, and every body over TLS,
    go through httpx and keep their connection.
    """

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        config_path: str | os.PathLike[str] | None = None,
        use_docker_config: bool = True,
        plain_http: bool = False,
        verify: bool | str = True,
        allow_foreign_realm: bool = False,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        upload_chunk_size: int = DEFAULT_UPLOAD_CHUNK_SIZE,
        monolithic_limit: int = DEFAULT_MONOLITHIC_LIMIT,
        trust_env: bool = True,
        transport: httpx.BaseTransport | None = None,
        speed_limit: int = DEFAULT_SPEED_LIMIT,
        speed_time: float = DEFAULT_SPEED_TIME,
        direct_read_min: int = DIRECT_READ_MIN,
    ) -> None:
        check_settings(host, chunk_size, upload_chunk_size, monolithic_limit)
        if direct_read_min < 0:
            raise ValueError("direct_read_min must not be negative")
        check_floor(speed_limit, speed_time)
        self.speed_limit = speed_limit
        self.speed_time = float(speed_time)
        self.host = DEFAULT_DOMAIN if is_docker_hub(host) else host
        api_host = DOCKER_HUB_API_HOST if self.host == DEFAULT_DOMAIN else host
        self.base_url = httpx.URL(f"{'http' if plain_http else 'https'}://{api_host}")
        self.plain_http = plain_http
        self.allow_foreign_realm = allow_foreign_realm
        lookup = _stored_credentials(self.host, config_path) if use_docker_config else None
        self._identity = Identity(self.host, credentials, lookup)
        tokens = TokenCache()
        self._reporter = Reporter(self.host, (self._identity.secrets, tokens.values))
        self._session = Session(
            self.base_url, self._identity, self._reporter,
            verify=verify, retry=retry if retry is not None else RetryPolicy(), timeout=timeout,
            trust_env=trust_env, transport=transport,
            speed_limit=self.speed_limit, speed_time=self.speed_time,
        )  # fmt: skip
        self._auth = Authenticator(
            self._session, self._identity, tokens,
            host=self.host, plain_http=plain_http, allow_foreign_realm=allow_foreign_realm,
        )  # fmt: skip
        self._manifests = Manifests(self._session, self._auth, self._reporter, self.host)
        self._downloads = Downloader(self._session, self._auth, chunk_size, direct_read_min)
        self._uploads = Uploader(
            self._session, self._auth, chunk_size=chunk_size,
            upload_chunk_size=upload_chunk_size, monolithic_limit=monolithic_limit,
        )  # fmt: skip

    def __repr__(self) -> str:
        credentials = self._identity.known()
        shown = f", user={credentials.username!r}" if credentials is not None else ""
        return f"RegistryClient({self.host!r}, base_url={str(self.base_url)!r}{shown})"

    #: A client shared by many operations (a sync's, a push of many images) is closed by its
    #: owner with :meth:`close`, not at the end of each operation's ``with``.
    shared: bool = False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.shared:
            self.close()

    # -- the registry ----------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers and accepts the client's credentials (``GET /v2/``,
        authenticated as ``docker login`` does); raises the error that says why not."""
        target = Target(self.host)
        response = self._auth.open(
            "GET", self._session.url("/v2/"), target, "registry", frozenset(),
            attempts=Attempts(self._session.retry),
        )  # fmt: skip
        response.close()

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of *repository*, following the registry's ``Link`` pages (at most
        ``MAX_TAG_PAGES`` of them, each read up to ``TAGS_LIMIT`` bytes)."""
        return self._manifests.tags(repository)

    # -- manifests -------------------------------------------------------------------------

    def get_manifest(
        self,
        repository: str,
        reference: str | Digest,
        accept: Sequence[str] = MANIFEST_ACCEPT,
        *,
        limit: int = DEFAULT_JSON_LIMIT,
    ) -> ManifestResponse:
        """Fetch a manifest or index by tag or digest, verified and at most *limit* bytes.

        The bytes must match the digest of a digest reference, and ``Docker-Content-Digest``
        when the registry sends it. The returned digest is the reference's, else the sha256 of
        the bytes. The media type is the response's ``Content-Type`` (else the document's own
        ``mediaType``); whether it is acceptable is the caller's to judge.
        """
        return self._manifests.get(repository, reference, accept, limit=limit)

    def head_manifest(
        self, repository: str, reference: str | Digest, accept: Sequence[str] = MANIFEST_ACCEPT
    ) -> ManifestInfo | None:
        """What the registry says of a manifest without sending it; None when it has none."""
        return self._manifests.head(repository, reference, accept)

    def put_manifest(
        self, repository: str, reference: str | Digest, data: bytes, media_type: str
    ) -> Digest:
        """Push a manifest or index under a tag or its digest; returns its digest.

        The registry is sent *media_type* as ``Content-Type`` (it stores and serves that type).
        A registry that answers with another ``Docker-Content-Digest`` changed the bytes, which
        would break every digest pointing at them: that is an error.
        """
        return self._manifests.put(repository, reference, data, media_type)

    def get_referrers(
        self, repository: str, subject: Digest, *, limit: int = DEFAULT_JSON_LIMIT
    ) -> bytes | None:
        """The referrers API's index of *subject*'s referrers (at most *limit* bytes), or None
        when the registry has no referrers API (it answers 404 or 405, as Distribution 2.8
        does); the caller then falls back to the referrers tag schema. The index is not
        trusted: each referrer it lists is fetched by digest and its ``subject`` checked."""
        return self._manifests.referrers(repository, subject, limit=limit)

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest) -> int | None:
        """The size of the blob in the repository, or None when the registry has none there."""
        target = Target(self.host, repository, str(digest))
        checked_reference(self.host, repository, digest)
        response = self._auth.open(
            "HEAD", self._session.url(f"/v2/{repository}/blobs/{digest}"), target, "blob",
            pull_scopes(repository), follow_redirects=True,
            attempts=Attempts(self._session.retry), allow={404},
        )  # fmt: skip
        with closing(response):
            if response.status_code == 404:
                return None
            expect(self._reporter, response, target, "blob", 200)
            size = content_length(self._reporter, response, target)
        if size is None:
            raise self._reporter.error(
                RegistryProtocolError, target, "blob HEAD without Content-Length"
            )
        return size

    def fetch_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        sink: BlobSink,
        *,
        resume_from: int = 0,
        hasher: hashlib._Hash | None = None,
    ) -> int:
        """Download a blob of *size* bytes into *sink*, verified; returns the bytes received.

        The blob is streamed in chunks of at most the client's ``chunk_size``, hashed on the
        way; more than *size* bytes are refused before they reach the sink. A connection that
        breaks off is resumed with ``Range: bytes=N-``, and 5xx and 429 answers are retried,
        within the retry policy's attempts; a download slower than the client's speed limit
        for its speed time is abandoned (:class:`RegistryTooSlowError`, not retried). With
        *resume_from* N the sink already holds the
        first N bytes: pass the *hasher* that has seen them, or a file sink opened for reading
        and writing (``r+b``), whose first N bytes are hashed and anything after them dropped.
        On any error the sink holds unverified bytes the caller must discard.
        """
        check_size(size)
        if not 0 <= resume_from <= size:
            raise ValueError(f"resume_from={resume_from} is outside the blob's {size} bytes")
        checked_reference(self.host, repository, digest)
        target = Target(self.host, repository, str(digest))
        write: Callable[[memoryview], object] = sink if callable(sink) else sink.write
        if hasher is None:
            hasher = digest.hasher()
            if resume_from:
                hash_prefix(sink, resume_from, hasher)
        offset = self._downloads.fetch(target, repository, digest, size, write, hasher, resume_from)
        actual = hasher.hexdigest()
        if actual != digest.hex:
            raise self._reporter.error(
                RegistryContentError, target,
                f"blob content does not match its digest (the registry sent "
                f"{digest.algorithm}:{actual})",
            )  # fmt: skip
        return offset - resume_from

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Ask the registry to link a blob of *from_repository* into *repository*, no bytes
        sent; True when it did. A registry that cannot (202) opens an upload session, which is
        cancelled here; ``upload_blob(mount_from=…)`` uploads through it instead."""
        checked_reference(self.host, repository, digest)
        checked_reference(self.host, from_repository, digest)
        target = Target(self.host, repository, str(digest))
        return self._uploads.mount(target, repository, digest, from_repository)

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Callable[[], IO[bytes]],
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Push a blob; True when the registry mounted it from *mount_from* instead.

        *open_reader* opens the blob's bytes from the start; it is called again when the upload
        has to start over after a transient failure. A blob smaller than the client's
        ``monolithic_limit`` goes in one streamed PUT, a larger one in PATCH chunks of
        ``upload_chunk_size``. The bytes are checked against *size* and *digest* as they are
        read: local content that does not match raises :class:`ContentError` before the
        registry could commit it.
        """
        check_size(size)
        checked_reference(self.host, repository, digest)
        if mount_from is not None:
            checked_reference(self.host, mount_from, digest)
        target = Target(self.host, repository, str(digest))
        return self._uploads.upload(target, repository, digest, size, open_reader, mount_from)


def _stored_credentials(
    host: str, config_path: str | os.PathLike[str] | None
) -> Callable[[], Credentials | None]:
    """The lookup of *host*'s stored credentials: in *config_path* alone, or podman's files."""
    files = [AuthFile(Path(config_path))] if config_path is not None else auth_files()
    return functools.partial(find_credentials, host, files)
