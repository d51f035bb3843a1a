"""What an import will commit, and the names it gives the images it brings.

OCI layouts and docker archives name their images differently (index annotations, RepoTags,
a legacy ``repositories`` file), but once each has said which names it proposes for which
image, the rules are the same: ``--tag`` replaces them for a single image, a nameless image
gets a digest name under the base name, a name claiming a digest must name that digest, and no
name may point at two images. Both planners end here.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Final

from ..errors import InvalidArchiveError, InvalidReferenceError
from ..oci.digests import Digest
from ..oci.graph import ImageGraph
from ..oci.mediatypes import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor
from ..oci.references import Reference, check_name_digest, parse_repository
from ..oci.referrers import Referrer

_ARCHIVE_SUFFIXES: Final = (".tar", ".tgz", ".tar.gz", ".tar.zst", ".tar.zstd", ".tar.xz", ".oci")


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """A name the import will create or update, and the content it will point at."""

    name: str
    target: Descriptor
    created: str | None
    #: Manifests the image's index lists but the archive lacked (imported with skip_missing).
    skipped: tuple[Descriptor, ...] = ()


@dataclass(slots=True)
class ImportPlan:
    """What an import will commit: the names, and every blob their images need."""

    images: list[PlannedImage] = field(default_factory=list)
    needed: dict[Digest, Descriptor] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    index_blob: bytes | None = None
    #: The signatures, attestations and SBOMs kept for the images (their blobs are needed).
    referrers: list[Referrer] = field(default_factory=list)


def default_base_name(path: str | None, today: datetime.date | None = None) -> str:
    """``my-app.tar`` → ``my-app``; stdin, or a file name that is no valid repository name,
    gives ``import-YYYY-MM-DD`` as ctr does."""
    fallback = f"import-{(today or datetime.date.today()).isoformat()}"
    if path is None:
        return fallback
    base = os.path.basename(path)
    lowered = base.lower()
    for suffix in sorted(_ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            base = base[: -len(suffix)]
            break
    try:
        parse_repository(base)
    except InvalidReferenceError:
        return fallback
    return base


def assign_names(
    plan: ImportPlan,
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]],
    base: str,
    tags: tuple[str, ...],
    digest_names: bool,
) -> None:
    """Turn the archive's images and the names it gives them into the plan's names."""
    images: dict[Digest, tuple[Descriptor, ImageGraph, list[str]]] = {}
    for entry, graph, names in graphs:
        if entry.digest in images:
            images[entry.digest][2].extend(names)
        else:
            images[entry.digest] = (entry, graph, list(names))
    if tags:
        if len(images) > 1:
            raise InvalidArchiveError(
                f"--tag names one image, but the archive holds {len(images)} images"
            )
        entry, graph, _ = next(iter(images.values()))
        images = {entry.digest: (entry, graph, [str(Reference.parse(t)) for t in tags])}
    named: dict[str, Digest] = {}
    for entry, graph, names in images.values():
        plan.needed.update(graph.blobs)
        digest_name = f"{base}@{entry.digest}"
        if digest_names:
            names.append(digest_name)
        elif not names:
            plan.warnings.append(
                f"image {entry.digest} has no name in the archive; imported as {digest_name}"
            )
            names.append(digest_name)
        target = Descriptor(entry.media_type, entry.digest, entry.size, _kept_annotations(entry))
        for name in names:
            try:
                check_name_digest(name, entry.digest)
            except InvalidReferenceError as exc:
                raise InvalidArchiveError(str(exc)) from None
            if named.setdefault(name, entry.digest) != entry.digest:
                raise InvalidArchiveError(
                    f"the archive gives the name {name} to two different images"
                )
            if all(p.name != name for p in plan.images):
                plan.images.append(PlannedImage(name, target, graph.created, tuple(graph.skipped)))


def _kept_annotations(entry: Descriptor) -> dict[str, str]:
    """Annotations stored with an image; the name annotations are rewritten on every export."""
    return {
        k: v
        for k, v in entry.annotations.items()
        if k not in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME)
    }
