"""Docker's ``manifest.json`` in an exported archive: what ``docker load`` and podman read.

docker names an image's config and layers by their paths in the archive and loads one
platform's manifest per image, so each exported image contributes the manifest its platform
matcher prefers; images sharing that manifest share one entry, which lists all their tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..oci.digests import Digest
from ..oci.graph import ImageGraph
from ..oci.mediatypes import dump_json
from ..oci.platforms import PlatformMatcher
from ..oci.references import Reference


def blob_path(digest: Digest) -> str:
    """Where an OCI layout keeps the blob *digest*: ``blobs/<algorithm>/<hex>``."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


@dataclass(slots=True)
class DockerEntry:
    """One ``manifest.json`` entry: docker loads one platform's manifest per image."""

    config: Digest
    layers: list[Digest]
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "Config": blob_path(self.config),
            "RepoTags": self.tags or None,
            "Layers": [blob_path(layer) for layer in self.layers],
        }


class DockerManifest:
    """The entries of ``manifest.json``, gathered image by image in export order."""

    def __init__(self) -> None:
        self.entries: dict[Digest, DockerEntry] = {}

    def add(self, graph: ImageGraph, matcher: PlatformMatcher, reference: Reference) -> None:
        """Add the image *reference* names (walked as *graph*): the manifest *matcher* prefers,
        tagged with the familiar name unless the reference is by digest. An image without such
        a manifest has no entry."""
        chosen = graph.preferred(matcher)
        if chosen is None:
            return
        manifest = chosen.manifest
        entry = self.entries.setdefault(
            chosen.descriptor.digest,
            DockerEntry(manifest.config.digest, [layer.digest for layer in manifest.layers]),
        )
        if reference.digest is None and reference.familiar() not in entry.tags:
            entry.tags.append(reference.familiar())

    def encode(self) -> bytes | None:
        """The compact ``manifest.json`` document, or None when no image has an entry."""
        if not self.entries:
            return None
        return dump_json([entry.to_json() for entry in self.entries.values()])
