"""The image model: walking the graph from a target descriptor to its configs and layers.

One walk serves every operation (import, export, list, check, gc), whatever holds the content:
the store, or an archive being imported. Sources only need to say how big a blob is and hand
over small documents, so the rules for platforms, nesting and verification live here once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from ..errors import (
    ContentError,
    InvalidDocumentError,
    MissingContentError,
    NoMatchingPlatformError,
    NotFoundError,
)
from .digests import Digest
from .mediatypes import (
    Descriptor,
    Manifest,
    config_created,
    config_platform,
    is_index,
    is_manifest,
    parse_config,
    parse_index,
    parse_manifest,
)
from .platforms import Platform, PlatformMatcher

#: Deepest chain of indexes inside indexes we follow; real images use two levels at most.
MAX_INDEX_DEPTH: Final = 8


class ContentSource(Protocol):
    """Where a walk reads content from."""

    #: Largest document this source hands over (an archive's is the import's limit).
    document_limit: int

    def blob_size(self, digest: Digest) -> int | None:
        """Size of the blob, or None when the source does not hold it."""

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """The bytes of a small blob (a manifest, index or config)."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One selected image manifest of a graph, with the platform it runs on."""

    descriptor: Descriptor
    manifest: Manifest
    platform: Platform | None
    created: str | None


@dataclass(slots=True)
class ImageGraph:
    """What a walk found: every blob it needs, and the manifests it selected in order."""

    target: Descriptor
    #: Every blob the graph needs. A digest reached both as a document (index or manifest) and
    #: as a leaf is recorded by its document descriptor: what it is decides how it is treated.
    blobs: dict[Digest, Descriptor] = field(default_factory=dict)
    #: The indexes and manifests the walk read, and the configs and layers they list; one
    #: digest can be in both (the same bytes named as one image's layer and another's manifest).
    documents: dict[Digest, Descriptor] = field(default_factory=dict)
    leaves: dict[Digest, Descriptor] = field(default_factory=dict)
    manifests: list[ManifestEntry] = field(default_factory=list)
    platforms: set[Platform] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    #: Selected manifests left out because their content is absent (``skip_missing``).
    skipped: list[Descriptor] = field(default_factory=list)

    def add_leaf(self, desc: Descriptor) -> None:
        self.leaves.setdefault(desc.digest, desc)
        self.blobs.setdefault(desc.digest, desc)

    @property
    def created(self) -> str | None:
        """The newest ``created`` among the selected manifests (RFC 3339 strings sort by time
        only when they share a format, so this is compared as text like containerd does)."""
        values = [m.created for m in self.manifests if m.created]
        return max(values) if values else None

    def preferred(self, matcher: PlatformMatcher) -> ManifestEntry | None:
        """The manifest docker's manifest.json should describe: of the selected platforms, the
        first that runs on this host, else the first selected (docker loads one per image)."""
        if not self.manifests:
            return None
        host = PlatformMatcher.host()

        def key(m: ManifestEntry) -> tuple[int, int]:
            if m.platform is None:
                return (0, 0)
            return (0 if host.matches(m.platform) else 1, matcher.rank(m.platform))

        return min(self.manifests, key=key)


def walk(
    source: ContentSource,
    target: Descriptor,
    matcher: PlatformMatcher,
    what: str,
    missing_ok: bool = False,
    read_configs: bool = True,
    skip_missing: bool = False,
) -> ImageGraph:
    """Walk the image graph below *target*, keeping the children *matcher* selects.

    Every document read is checked against its descriptor (size and media type). With
    *missing_ok* absent content is listed in ``graph.missing`` instead of raising; that is
    what listing and collection want, while import and export must fail on it.
    """
    graph = ImageGraph(target)
    options = _Options(matcher, missing_ok, read_configs, skip_missing)
    _visit(source, graph, target, options, what, depth=0, seen=set())
    return graph


@dataclass(frozen=True, slots=True)
class _Options:
    matcher: PlatformMatcher
    missing_ok: bool
    read_configs: bool
    skip_missing: bool


# Long: the index and manifest cases of one recursive step, kept side by side to compare.
def _visit(
    source: ContentSource,
    graph: ImageGraph,
    desc: Descriptor,
    options: _Options,
    what: str,
    depth: int,
    seen: set[Digest],
) -> None:
    matcher, missing_ok, read_configs = options.matcher, options.missing_ok, options.read_configs
    if not _present(source, graph, desc, what, missing_ok):
        return
    graph.blobs[desc.digest] = graph.documents.setdefault(desc.digest, desc)
    if desc.digest in seen:
        return
    seen.add(desc.digest)
    if is_index(desc.media_type):
        if depth >= MAX_INDEX_DEPTH:
            raise InvalidDocumentError(f"{what}: indexes nested deeper than {MAX_INDEX_DEPTH}")
        data = _read_present(source, graph, desc, what, missing_ok)
        if data is None:
            return
        index = parse_index(data, f"index {desc.digest}", desc.media_type)
        for child in index.manifests:
            if child.platform is not None:
                graph.platforms.add(child.platform)
        selected = [child for child in index.manifests if matcher.matches(child.platform)]
        if index.manifests and not selected:
            raise NoMatchingPlatformError(
                f"{what}: index {desc.digest.short} has no manifest for {matcher}"
                f" (it has {_platform_list(index.manifests)})"
            )
        absent = [c for c in selected if source.blob_size(c.digest) is None]
        if absent and not missing_ok:
            listing = ", ".join(f"{c.digest} ({c.platform or 'no platform'})" for c in absent)
            if not options.skip_missing or len(absent) == len(selected):
                some = (
                    "1 selected manifest that is"
                    if len(absent) == 1
                    else f"{len(absent)} selected manifests that are"
                )
                raise MissingContentError(
                    f"{what}: index {desc.digest.short} lists {some}"
                    f" missing: {listing}; select the platforms that are present"
                    " with --platform, or import what is there with --skip-missing"
                )
            graph.skipped.extend(absent)
            selected = [c for c in selected if c not in absent]
        for child in selected:
            child_what = f"{what}: manifest {child.digest.short}"
            if child.platform is not None:
                child_what += f" ({child.platform})"
            _visit(source, graph, child, options, child_what, depth + 1, seen)
    elif is_manifest(desc.media_type):
        data = _read_present(source, graph, desc, what, missing_ok)
        if data is None:
            return
        manifest = parse_manifest(data, f"manifest {desc.digest}", desc.media_type)
        config_present = _present(source, graph, manifest.config, f"{what}: config", missing_ok)
        for i, layer in enumerate(manifest.layers):
            if _present(source, graph, layer, f"{what}: layer {i}", missing_ok):
                graph.add_leaf(layer)
        platform = desc.platform
        created = None
        if config_present:
            graph.add_leaf(manifest.config)
            config = (
                _read_present(source, graph, manifest.config, f"{what}: config", missing_ok)
                if read_configs
                else None
            )
            if config is not None:
                doc = parse_config(config, f"config {manifest.config.digest}")
                created = config_created(doc)
                if platform is None:
                    platform = config_platform(doc)
        if platform is not None:
            graph.platforms.add(platform)
        graph.manifests.append(ManifestEntry(desc, manifest, platform, created))


def _present(
    source: ContentSource, graph: ImageGraph, desc: Descriptor, what: str, missing_ok: bool
) -> bool:
    size = source.blob_size(desc.digest)
    if size is None:
        message = f"{what}: {desc.digest} ({desc.media_type}) is missing"
        if missing_ok:
            graph.missing.append(message)
            return False
        raise MissingContentError(message)
    if size != desc.size:
        raise ContentError(
            f"{what}: {desc.digest} has {size} bytes, its descriptor says {desc.size}"
        )
    return True


def _read_present(
    source: ContentSource, graph: ImageGraph, desc: Descriptor, what: str, missing_ok: bool
) -> bytes | None:
    """A document found present a moment ago; another process's gc may have removed it since,
    which *missing_ok* walks (listing, inspection) record like any absent content."""
    try:
        return read_document(source, desc)
    except NotFoundError:
        message = f"{what}: {desc.digest} ({desc.media_type}) is missing"
        if missing_ok:
            graph.missing.append(message)
            return None
        raise MissingContentError(message) from None


def read_document(source: ContentSource, desc: Descriptor) -> bytes:
    limit = source.document_limit
    if desc.size > limit:
        raise InvalidDocumentError(
            f"document {desc.digest} of {desc.size} bytes exceeds the limit of {limit}"
            " (raise it with --max-document-size)"
        )
    return source.read_blob(desc.digest, limit)


def _platform_list(descriptors: tuple[Descriptor, ...]) -> str:
    names = sorted({str(d.platform) for d in descriptors if d.platform is not None})
    return ", ".join(names) if names else "no platforms"


def iter_children(source: ContentSource, desc: Descriptor) -> Iterator[Descriptor]:
    """Direct children of a stored document, for reachability: every platform, no filtering."""
    if is_index(desc.media_type):
        yield from parse_index(
            read_document(source, desc), f"index {desc.digest}", desc.media_type
        ).manifests
    elif is_manifest(desc.media_type):
        yield from parse_manifest(
            read_document(source, desc), f"manifest {desc.digest}", desc.media_type
        ).blobs
