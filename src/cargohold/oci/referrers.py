"""Referrers: the artifacts (signatures, attestations, SBOMs) that refer to a manifest or index.

Three conventions say that an artifact belongs to an image, and a registry, an OCI layout or a
store may hold any of them:

- OCI 1.1 referrers: a manifest with a ``subject`` descriptor, listed by the registry's
  referrers API, or, where the registry has no such API, by an index at the tag
  ``<alg>-<hex>`` (the referrers tag schema);
- cosign's attachments: a manifest stored under the tag ``<alg>-<hex>.sig`` (``.att``,
  ``.sbom``), named after the digest of the image it belongs to and carrying no ``subject``.

Every one is kept as a :class:`Referrer`: the subject's digest, the descriptor the referrers API
lists for the artifact (its ``artifactType`` and annotations pulled up from the manifest), and
its *kind*: ``""`` for an OCI referrer, ``"sig"``, ``"att"`` or ``"sbom"`` for an attachment,
which goes back out under its tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..errors import InvalidDocumentError
from .digests import ALGORITHMS, Digest
from .mediatypes import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    MAX_JSON_LIMIT,
    OCI_INDEX,
    Descriptor,
    dump_json,
    is_index,
    is_manifest,
    load_json,
)

#: The kinds of cosign attachment, as the suffix of their tag.
ATTACHMENT_KINDS: Final = ("sig", "att", "sbom")
#: The media type of a cosign simple-signing payload layer.
SIMPLE_SIGNING: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
#: The annotation of that layer's descriptor that holds the base64 signature.
SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
#: The empty descriptor's media type (an artifact manifest's config).
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
#: Most referrers one subject may have, and most levels of referrers of referrers followed:
#: a registry or archive listing more is hostile, not an image's signatures.
MAX_REFERRERS: Final = 1000
MAX_REFERRER_DEPTH: Final = 4


def follow_referrers(subjects: Iterable[Digest], visit: Callable[[Digest], list[Digest]]) -> None:
    """Call *visit* on each of *subjects*, then on each digest the visits return (referrers to
    follow in turn: a signature of an SBOM), level after level, parents before children, at
    most :data:`MAX_REFERRER_DEPTH` levels below the subjects. The one walk of referrers, over
    a store's records or a registry's listings alike; *visit* keeps what it found."""
    level = list(dict.fromkeys(subjects))
    for _ in range(MAX_REFERRER_DEPTH + 1):
        level = [child for subject in level for child in visit(subject)]
        if not level:
            return


_TAG: Final = re.compile(r"([a-z0-9]+)-([a-f0-9]{32,128})(?:\.(sig|att|sbom))?")
_HIDDEN_NAME_KEYS: Final = (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME)


@dataclass(frozen=True, slots=True)
class Referrer:
    """An artifact stored for a subject: what the referrers API would list for it."""

    subject: Digest
    descriptor: Descriptor
    #: ``""`` for an OCI referrer (``subject`` field, tag schema), else the cosign tag suffix.
    kind: str = ""

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest


@dataclass(frozen=True, slots=True)
class DocumentLinks:
    """What a manifest or index says of itself for referrers: its subject and artifact type."""

    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str] = field(default_factory=dict)


def tag_schema_tag(digest: Digest) -> str:
    """The tag of the index that lists *digest*'s referrers where there is no referrers API."""
    return f"{digest.algorithm}-{digest.hex[:64]}"


def attachment_tag(digest: Digest, kind: str) -> str:
    """cosign's tag for an attachment of *kind* to the image *digest* (``sha256-<hex>.sig``)."""
    if kind not in ATTACHMENT_KINDS:
        raise ValueError(f"not an attachment kind: {kind!r}")
    return f"{tag_schema_tag(digest)}.{kind}"


def parse_referrer_tag(tag: str) -> tuple[Digest, str] | None:
    """``(subject, kind)`` of a tag of the tag schema (kind ``""``) or of a cosign attachment;
    None for any other tag."""
    match = _TAG.fullmatch(tag)
    if match is None or match.group(1) not in ALGORITHMS:
        return None
    algorithm, hex_digits, kind = match.groups()
    if len(hex_digits) != ALGORITHMS[algorithm]:
        return None
    return Digest.parse(f"{algorithm}:{hex_digits}"), kind or ""


def document_links(data: bytes, what: str) -> DocumentLinks:
    """The ``subject``, artifact type and annotations of a manifest or index. The artifact type
    is the document's ``artifactType``, else (a manifest) its config's media type, as the
    referrers API reports it."""
    doc = load_json(data, what, MAX_JSON_LIMIT)
    if not isinstance(doc, dict):
        raise InvalidDocumentError(f"{what}: a manifest must be a JSON object")
    subject = None
    if doc.get("subject") is not None:
        subject = Descriptor.from_json(doc["subject"], f"{what} subject")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidDocumentError(f"{what}: artifactType must be a string")
    if artifact_type is None and isinstance(doc.get("config"), dict):
        config_type = doc["config"].get("mediaType")
        artifact_type = config_type if isinstance(config_type, str) else None
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidDocumentError(f"{what}: annotations must map strings to strings")
    return DocumentLinks(subject, artifact_type, annotations)


def referrer_descriptor(desc: Descriptor, links: DocumentLinks) -> Descriptor:
    """The descriptor of a referrer as the referrers API lists it: media type, digest, size,
    the artifact type and the annotations of the manifest."""
    return Descriptor(
        desc.media_type,
        desc.digest,
        desc.size,
        dict(links.annotations),
        artifact_type=links.artifact_type,
    )


def entry_descriptor(referrer: Referrer) -> Descriptor:
    """The referrer's descriptor without the annotations that carry image names, which an
    index listing it must not inherit from the artifact (a reader would take it for a name)."""
    desc = referrer.descriptor
    annotations = {k: v for k, v in desc.annotations.items() if k not in _HIDDEN_NAME_KEYS}
    return Descriptor(
        desc.media_type, desc.digest, desc.size, annotations, artifact_type=desc.artifact_type
    )


def referrers_index(referrers: list[Referrer], artifact_type: str | None = None) -> bytes:
    """The index the referrers API answers (and the tag schema stores) for one subject: its
    OCI referrers, filtered by *artifact_type* when given, sorted by digest."""
    chosen = sorted(
        (r for r in referrers if not r.kind),
        key=lambda r: str(r.digest),
    )
    if artifact_type is not None:
        chosen = [r for r in chosen if r.descriptor.artifact_type == artifact_type]
    manifests = [entry_descriptor(r).to_json() for r in chosen]
    return dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})


def is_document(media_type: str) -> bool:
    """Whether a referrer of this media type can be stored (a manifest or an index)."""
    return is_index(media_type) or is_manifest(media_type)
