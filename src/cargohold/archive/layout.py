"""Planning the import of an OCI image layout: which images its ``index.json`` yields, by name.

Each top-level entry of the index is walked with the platform matcher over the archive's
contents (so every size and media type is checked, and missing content named), and its names
come from containerd's annotation, then the OCI ref name; ``--index-name`` names the index
itself.
"""

from __future__ import annotations

from typing import NoReturn

from ..errors import InvalidArchiveError, InvalidReferenceError
from ..oci.digests import Digest
from ..oci.graph import ImageGraph
from ..oci.mediatypes import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    MAX_JSON_LIMIT,
    OCI_INDEX,
    Descriptor,
    is_index,
    is_manifest,
    load_json,
    parse_index,
)
from ..oci.platforms import PlatformMatcher
from ..oci.references import Reference, check_name_digest, is_tag, parse_repository
from .contents import ArchiveContents, walk_archive
from .plan import ImportPlan, PlannedImage, assign_names
from .referrers import plan_referrers, split_entries


def plan_oci(
    contents: ArchiveContents,
    matcher: PlatformMatcher,
    base_name: str,
    tags: tuple[str, ...] = (),
    digest_names: bool = False,
    index_name: str | None = None,
    skip_missing: bool = False,
    keep_referrers: bool = True,
) -> ImportPlan:
    """Decide which images and names an OCI layout archive yields, and check they are whole;
    and which of its referrers (signatures, SBOMs: see :mod:`.referrers`) go with them."""
    _check_layout(contents.layout)
    if contents.index_json is None:
        raise InvalidArchiveError("missing index.json in OCI layout")
    index = parse_index(contents.index_json, "index.json", None)
    base = parse_repository(base_name)
    plan = ImportPlan()
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]] = []
    split = split_entries(contents, index.manifests)
    for i, entry in split.images:
        what = f"index.json manifests[{i}] ({entry.digest.short})"
        if not (is_index(entry.media_type) or is_manifest(entry.media_type)):
            plan.warnings.append(
                f"{what}: skipped, media type {entry.media_type!r} is not an image"
            )
            continue
        if not matcher.matches(entry.platform):
            continue
        graph = walk_archive(contents, entry, matcher, what, skip_missing=skip_missing)
        graphs.append((entry, graph, _entry_names(entry, base, what)))
    if not graphs:
        _refuse_empty(index.manifests, matcher)
    assign_names(plan, graphs, base, tags, digest_names)
    if keep_referrers:
        names = {
            e.annotations[ANNOTATION_REF_NAME]: e.digest
            for _, e in split.images
            if ANNOTATION_REF_NAME in e.annotations
        }
        subjects = {d for _, graph, _ in graphs for d in graph.documents}
        kept = plan_referrers(contents, split.candidates, subjects, names)
        plan.referrers = kept.referrers
        plan.needed.update(kept.needed)
        plan.warnings.extend(kept.warnings)
    if index_name is not None:
        digest = Digest.of_bytes(contents.index_json)
        target = Descriptor(OCI_INDEX, digest, len(contents.index_json))
        plan.index_blob = contents.index_json
        plan.needed[digest] = target
        plan.images.append(PlannedImage(_index_image_name(index_name, digest, plan), target, None))
    return plan


def _refuse_empty(entries: tuple[Descriptor, ...], matcher: PlatformMatcher) -> NoReturn:
    """Say why an index yields no image: none is one we can import, none matches, or none."""
    unsupported = [e.media_type for e in entries if not _is_image(e.media_type)]
    if unsupported and len(unsupported) == len(entries):
        schema1 = any("manifest.v1" in t for t in unsupported)
        raise InvalidArchiveError(
            f"index.json lists no image cargohold can import ({', '.join(unsupported)})"
            + ("; Docker schema 1 manifests are not supported" if schema1 else "")
        )
    if entries:
        raise InvalidArchiveError(f"no image in the archive matches {matcher}")
    raise InvalidArchiveError("the archive's index.json lists no images")


def _index_image_name(index_name: str, digest: Digest, plan: ImportPlan) -> str:
    """``--index-name`` checked as every other name is: a name claiming a digest must name
    that digest, and no name may point at two images."""
    name = str(Reference.parse(index_name))
    try:
        check_name_digest(name, digest)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"--index-name: {exc}") from None
    if any(p.name == name for p in plan.images):
        raise InvalidArchiveError(
            f"--index-name {name} is also the name of an image of the archive"
        )
    return name


def _is_image(media_type: str) -> bool:
    return is_index(media_type) or is_manifest(media_type)


def _check_layout(layout: bytes | None) -> None:
    if layout is None:
        raise InvalidArchiveError("not an OCI image layout: the archive has no oci-layout member")
    doc = load_json(layout, "oci-layout", MAX_JSON_LIMIT)
    version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
    if version != "1.0.0":
        raise InvalidArchiveError(f"oci-layout: unsupported image layout version {version!r}")


def _entry_names(entry: Descriptor, base: str, what: str) -> list[str]:
    """Names an index.json entry gives its image: containerd's annotation first, then the
    OCI ref name (a bare tag is put under *base*)."""
    full = entry.annotations.get(ANNOTATION_IMAGE_NAME)
    ref_name = entry.annotations.get(ANNOTATION_REF_NAME)
    try:
        if full:
            return [str(Reference.parse(full))]
        if ref_name:
            if is_tag(ref_name):
                return [str(Reference.parse(f"{base}:{ref_name}"))]
            return [str(Reference.parse(ref_name))]
    except InvalidReferenceError as exc:
        raise InvalidArchiveError(f"{what}: {exc}") from None
    return []
