"""What the server reads from the store: one namespace's manifests, blobs, tags and catalog.

Every answer comes from the store as it is at the moment of the request, through one
read-only connection (a read in SQLite's WAL mode sees every transaction committed before it
began): an import, a tag or a removal is seen by the next request, and serving never writes.

What a repository may serve: a name of the namespace whose repository it is (a tag), and by
digest the content the namespace holds (what its imports and pulls received and verified).
Content is not partitioned further by repository inside one namespace: the namespace is what
``-n`` chooses to publish.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import BinaryIO, Final

from ..errors import ApiError, CargoholdError, InvalidDigestError
from ..oci.digests import Digest
from ..oci.mediatypes import DEFAULT_JSON_LIMIT, MAX_JSON_LIMIT
from ..oci.references import is_tag
from ..oci.referrers import parse_referrer_tag
from ..operations.context import StoreContext
from ..operations.referrers import find_attachment, referrers_response

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A stored manifest or index: its exact bytes, digest and media type."""

    data: bytes
    digest: Digest
    media_type: str


@dataclass(slots=True)
class Blob:
    """An open blob file (opened before anything is sent: a blob that gc removes meanwhile is
    still read whole from it) and its size."""

    file: BinaryIO
    size: int
    digest: Digest


def parse_digest(text: str) -> Digest:
    """A digest from a URL, or the spec's DIGEST_INVALID (unknown algorithms included)."""
    try:
        return Digest.parse(text)
    except InvalidDigestError as exc:
        raise ApiError(400, "DIGEST_INVALID", str(exc)) from None


class ServedStore:
    """One namespace of a store, read for the registry API."""

    def __init__(self, context: StoreContext) -> None:
        self.context = context
        self.namespace = context.namespace

    def _names(self) -> list[str]:
        return [record.name for record in self.context.meta.list_images(self.namespace)]

    def exists(self, repository: str) -> bool:
        """Whether the namespace has a name (tagged or pinned to a digest) in *repository*."""
        return any(_in_repository(name, repository) for name in self._names())

    def _require(self, repository: str) -> None:
        if not self.exists(repository):
            raise ApiError(404, "NAME_UNKNOWN", f"repository {repository} not known")

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest or index *reference* (a tag or a digest) names in *repository*."""
        if ":" in reference:
            return self._manifest_by_digest(repository, parse_digest(reference))
        record = None
        if is_tag(reference):
            record = self.context.meta.get_image(self.namespace, f"{repository}:{reference}")
        if record is None:
            self._require(repository)
            attached = self._referrer_tag(reference)
            if attached is not None:
                return attached
            raise ApiError(404, "MANIFEST_UNKNOWN", f"manifest {reference} not known")
        data = self._document(record.digest, MAX_JSON_LIMIT)
        return Manifest(data, record.digest, record.media_type)

    def _referrer_tag(self, tag: str) -> Manifest | None:
        """What a tag of the referrers tag schema (``sha256-<hex>``: the index of the
        subject's referrers) or of cosign (``sha256-<hex>.sig``, ``.att``, ``.sbom``: the
        attachment) stands for, when the namespace keeps referrers for that subject; clients
        of registries without the referrers API (cosign, regctl, oras) look there."""
        parsed = parse_referrer_tag(tag)
        if parsed is None:
            return None
        subject, kind = parsed
        if not self.context.meta.holds(self.namespace, subject):
            return None
        if not kind:
            data = referrers_response(self.context, subject)
            return Manifest(data, Digest.of_bytes(data), OCI_INDEX)
        attachment = find_attachment(self.context, tag)
        if attachment is None:
            return None
        desc = attachment.descriptor
        return Manifest(self._document(desc.digest, MAX_JSON_LIMIT), desc.digest, desc.media_type)

    def referrers(self, repository: str, subject: Digest, artifact_type: str | None) -> bytes:
        """The referrers API's answer for *subject*: an OCI index of its OCI referrers (an
        empty one when it has none, as the spec asks, also for an unknown subject)."""
        self._require(repository)
        return referrers_response(self.context, subject, artifact_type)

    def _manifest_by_digest(self, repository: str, digest: Digest) -> Manifest:
        self._require(repository)
        if not self.context.meta.holds(self.namespace, digest):
            raise ApiError(404, "MANIFEST_UNKNOWN", f"manifest {digest} not known")
        named = [
            record.media_type
            for record in self.context.meta.list_images(self.namespace)
            if record.digest == digest and _in_repository(record.name, repository)
        ]
        if named:
            return Manifest(self._document(digest, MAX_JSON_LIMIT), digest, named[0])
        # A manifest an index lists (or a layer asked for as one): read no more than a
        # document may be, and say what it is from its content.
        data = self._document(digest, DEFAULT_JSON_LIMIT)
        media_type = sniff_media_type(data)
        if media_type is None:
            raise ApiError(404, "MANIFEST_UNKNOWN", f"{digest} is not a manifest")
        return Manifest(data, digest, media_type)

    def _document(self, digest: Digest, limit: int) -> bytes:
        """A stored document's bytes, verified against its digest (never a damaged one)."""
        size = self.context.blobs.regular_size(digest)
        if size is None or size > limit:
            raise ApiError(404, "MANIFEST_UNKNOWN", f"manifest {digest} not in the store")
        try:
            return self.context.blobs.read_blob(digest, limit)
        except CargoholdError as exc:
            raise ApiError(404, "MANIFEST_UNKNOWN", f"manifest {digest}: {exc}") from None

    def blob(self, repository: str, digest: Digest) -> Blob:
        """The blob *digest*, opened: only a regular file under ``content/blobs`` named by a
        validated digest, and only content the namespace holds."""
        self._require(repository)
        if not self.context.meta.holds(self.namespace, digest):
            raise ApiError(404, "BLOB_UNKNOWN", f"blob {digest} not known")
        try:
            f = self.context.blobs.open(digest)
        except CargoholdError as exc:  # removed meanwhile, or not a regular file
            raise ApiError(404, "BLOB_UNKNOWN", str(exc)) from None
        return Blob(f, os.fstat(f.fileno()).st_size, digest)

    def tags(self, repository: str) -> list[str]:
        """The tags of *repository*, sorted; NAME_UNKNOWN when it has no name at all."""
        names = [n for n in self._names() if _in_repository(n, repository)]
        if not names:
            raise ApiError(404, "NAME_UNKNOWN", f"repository {repository} not known")
        prefix = f"{repository}:"
        return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))

    def repositories(self) -> list[str]:
        """Every stored repository of the namespace, sorted."""
        found = set()
        for name in self._names():
            at = name.find("@")
            base = name[:at] if at >= 0 else name
            colon = base.rfind(":")
            found.add(base[:colon] if colon > base.rfind("/") else base)
        return sorted(found)


def _in_repository(name: str, repository: str) -> bool:
    """Whether stored *name* (``repo:tag`` or ``repo@digest``) is in *repository*."""
    if not name.startswith(repository):
        return False
    rest = name[len(repository) :]
    return (rest.startswith(":") and "/" not in rest) or rest.startswith("@")


def sniff_media_type(data: bytes) -> str | None:
    """The media type of a stored document asked for by digest with no name to say it: its
    own ``mediaType``, else an OCI index or manifest by its shape (as Distribution decides);
    None when it is no manifest."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("schemaVersion") != 2:
        return None
    if isinstance(document.get("manifests"), list):
        shape = OCI_INDEX
    elif isinstance(document.get("config"), dict) and isinstance(document.get("layers"), list):
        shape = OCI_MANIFEST
    else:
        return None
    media_type = document.get("mediaType")
    return media_type if isinstance(media_type, str) and media_type else shape
