"""The manifest verbs of the OCI Distribution API: a repository's tag list, and its manifests
and indexes read, probed and written by tag or digest, and the referrers API's index.

A manifest is the one document a registry names by tag, so it is where a registry could swap
content: every manifest read is hashed against the digest that names it and against
``Docker-Content-Digest``, and read up to a bound, never whole. :class:`RegistryClient`
(in :mod:`.client`) owns the public verbs and delegates here; blobs go through
:mod:`.downloads` and :mod:`.uploads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import Final, NamedTuple

from ..errors import (
    ContentError,
    RegistryConnectionError,
    RegistryContentError,
    RegistryProtocolError,
    TransferDropped,
)
from ..oci.digests import Digest
from ..oci.mediatypes import (
    DEFAULT_JSON_LIMIT,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from ..oci.references import Reference
from .arguments import checked_reference
from .auth import Authenticator, pull_scopes, push_scopes
from .http import Attempts, Session
from .messages import Reporter, Target
from .responses import (
    MEDIA_TYPE,
    announced_digest,
    content_length,
    expect,
    media_type,
    own_media_type,
)
from .tags import MAX_TAG_PAGES, TAGS_LIMIT, next_page, parse_tags

__all__ = ["MANIFEST_ACCEPT", "ManifestInfo", "ManifestResponse", "Manifests"]

#: What ``get_manifest`` asks for by default: every manifest and index type cargohold stores.
MANIFEST_ACCEPT: Final = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
#: Content types that say nothing about a manifest; its own ``mediaType`` is used instead.
GENERIC_TYPES: Final = frozenset({"application/json", "text/plain", "application/octet-stream"})


class ManifestResponse(NamedTuple):
    """A manifest or index as the registry sent it, verified against its digest."""

    data: bytes
    media_type: str
    digest: Digest


class ManifestInfo(NamedTuple):
    """What a HEAD of a manifest tells: its type, digest and size, when the registry says."""

    media_type: str | None
    digest: Digest | None
    size: int | None


class Manifests:
    """The manifest verbs of one registry host, sent through the client's session and
    authenticator and reported through its reporter (so errors name the same target and
    scrub the same secrets as the client's own)."""

    def __init__(
        self, session: Session, auth: Authenticator, reporter: Reporter, host: str
    ) -> None:
        self._session = session
        self._auth = auth
        self._reporter = reporter
        self.host = host

    def tags(self, repository: str) -> list[str]:
        """Every tag of *repository*, page by page (see :meth:`RegistryClient.list_tags`)."""
        Reference(self.host, repository)
        target = Target(self.host, repository)
        url = self._session.url(f"/v2/{repository}/tags/list").copy_merge_params({"n": 1000})
        tags: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            response = self._auth.open(
                "GET", url, target, "tag list", pull_scopes(repository),
                follow_redirects=True, attempts=Attempts(self._session.retry),
            )  # fmt: skip
            with closing(response):
                expect(self._reporter, response, target, "tag list", 200)
                link = response.headers.get("link")
                try:
                    data = self._session.read_body(response, target, "tag list", TAGS_LIMIT)
                except TransferDropped as dropped:
                    raise self._reporter.error(
                        RegistryConnectionError, target, f"tag list: {dropped.reason}"
                    ) from None
            tags += parse_tags(data, self._reporter, target)
            following = next_page(link, url, self._session, self._reporter, target)
            if following is None:
                return tags
            url = following
        raise self._reporter.error(
            RegistryProtocolError, target, f"tag list has more than {MAX_TAG_PAGES} pages"
        )

    def get(
        self,
        repository: str,
        reference: str | Digest,
        accept: Sequence[str] = MANIFEST_ACCEPT,
        *,
        limit: int = DEFAULT_JSON_LIMIT,
    ) -> ManifestResponse:
        """A manifest, verified (see :meth:`RegistryClient.get_manifest`)."""
        text, pinned = checked_reference(self.host, repository, reference)
        target = Target(self.host, repository, text)
        data, announced, content_type = self._read(repository, text, target, accept, limit)
        digest = pinned or Digest.of_bytes(data)
        for expected, source in ((pinned, "its digest"), (announced, "Docker-Content-Digest")):
            if expected is not None and Digest.of_bytes(data, expected.algorithm) != expected:
                actual = Digest.of_bytes(data, expected.algorithm)
                raise self._reporter.error(
                    RegistryContentError, target,
                    f"manifest does not match {source} {expected}: the registry sent {actual}",
                )  # fmt: skip
        if content_type is None or content_type in GENERIC_TYPES:
            content_type = own_media_type(data) or content_type
        if content_type is None:
            raise self._reporter.error(RegistryProtocolError, target, "manifest has no media type")
        return ManifestResponse(data, content_type, digest)

    def _read(
        self, repository: str, text: str, target: Target, accept: Sequence[str], limit: int
    ) -> tuple[bytes, Digest | None, str | None]:
        """GET a manifest's bytes, its announced digest and its Content-Type, the whole GET
        tried again (within the retry policy) when the body breaks off."""
        url = self._session.url(f"/v2/{repository}/manifests/{text}")
        headers = {"Accept": ", ".join(accept)}
        attempts = Attempts(self._session.retry)
        while True:
            response = self._auth.open(
                "GET", url, target, "manifest", pull_scopes(repository),
                headers=headers, follow_redirects=True, attempts=attempts,
            )  # fmt: skip
            with closing(response):
                expect(self._reporter, response, target, "manifest", 200)
                content_type = media_type(response)
                announced = announced_digest(self._reporter, response, target)
                try:
                    data = self._session.read_body(response, target, "manifest", limit)
                    return data, announced, content_type
                except TransferDropped as dropped:
                    if not attempts.retry():
                        raise self._reporter.error(
                            RegistryConnectionError, target, f"manifest: {dropped.reason}"
                        ) from None

    def head(
        self, repository: str, reference: str | Digest, accept: Sequence[str] = MANIFEST_ACCEPT
    ) -> ManifestInfo | None:
        """A manifest's HEAD (see :meth:`RegistryClient.head_manifest`)."""
        text, pinned = checked_reference(self.host, repository, reference)
        target = Target(self.host, repository, text)
        response = self._auth.open(
            "HEAD", self._session.url(f"/v2/{repository}/manifests/{text}"), target, "manifest",
            pull_scopes(repository), headers={"Accept": ", ".join(accept)},
            follow_redirects=True, attempts=Attempts(self._session.retry), allow={404},
        )  # fmt: skip
        with closing(response):
            if response.status_code == 404:
                return None
            expect(self._reporter, response, target, "manifest", 200)
            announced = announced_digest(self._reporter, response, target)
            if pinned is not None and announced is not None and announced != pinned:
                raise self._reporter.error(
                    RegistryContentError, target,
                    f"registry names manifest {pinned} by another digest, {announced}",
                )  # fmt: skip
            return ManifestInfo(
                media_type(response),
                announced or pinned,
                content_length(self._reporter, response, target),
            )

    def put(self, repository: str, reference: str | Digest, data: bytes, media_type: str) -> Digest:
        """Push a manifest (see :meth:`RegistryClient.put_manifest`)."""
        text, pinned = checked_reference(self.host, repository, reference)
        target = Target(self.host, repository, text)
        if not MEDIA_TYPE.fullmatch(media_type):
            raise ValueError(f"invalid media type {media_type[:100]!r}")
        digest = Digest.of_bytes(data, pinned.algorithm if pinned is not None else "sha256")
        if pinned is not None and digest != pinned:
            raise ContentError(f"{target}: the manifest's bytes have digest {digest}")
        response = self._auth.open(
            "PUT", self._session.url(f"/v2/{repository}/manifests/{text}"), target,
            "manifest upload", push_scopes(repository), headers={"Content-Type": media_type},
            body=data, attempts=Attempts(self._session.retry),
        )  # fmt: skip
        with closing(response):
            expect(self._reporter, response, target, "manifest upload", 200, 201, 202, 204)
            announced = announced_digest(self._reporter, response, target)
        if announced is not None and announced != Digest.of_bytes(data, announced.algorithm):
            raise self._reporter.error(
                RegistryContentError, target,
                f"registry stored the manifest as {announced}, not as its bytes' {digest}",
            )  # fmt: skip
        return digest

    def referrers(
        self, repository: str, subject: Digest, *, limit: int = DEFAULT_JSON_LIMIT
    ) -> bytes | None:
        """The referrers API's index (see :meth:`RegistryClient.get_referrers`)."""
        text = f"referrers/{subject}"
        target = Target(self.host, repository, text)
        response = self._auth.open(
            "GET", self._session.url(f"/v2/{repository}/{text}"), target, "referrers list",
            pull_scopes(repository), headers={"Accept": OCI_INDEX}, follow_redirects=True,
            attempts=Attempts(self._session.retry), allow={404, 405},
        )  # fmt: skip
        with closing(response):
            if response.status_code in (404, 405):
                return None
            expect(self._reporter, response, target, "referrers list", 200)
            return self._session.read_body(response, target, "referrers list", limit)
