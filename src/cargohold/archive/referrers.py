"""The referrers an OCI layout carries for its images, by every convention that writes them.

Tools put an image's signatures, attestations and SBOMs into ``index.json`` differently, and an
import reads them all:

- oras (oras-go's OCI store) lists every manifest in ``index.json``, referrers untagged: an
  entry without a name whose manifest has a ``subject`` is a referrer of that subject (this is
  also what ``cargohold image export`` writes);
- regctl (``ocidir://``) keeps the referrers tag schema: an index tagged ``sha256-<hex>``
  lists the referrers of ``sha256:<hex>``;
- cosign's attachments, by tag: an entry tagged ``sha256-<hex>.sig`` (``.att``, ``.sbom``) is
  an attachment of ``sha256:<hex>`` (regctl with ``--digest-tags``, and cargohold's export);
- Hauler marks entries with a ``kind`` annotation (``dev.hauler/sigs``, ``atts``, ``sboms``,
  ``referrers``; ``dev.cosignproject.cosign/...`` in older versions and ``cosign save``), the
  subject in ``hauler.dev/subject-digest`` or, without it, the image entry of the same name.

A referrer is kept when its subject is one of the imported images' manifests or indexes (or a
kept referrer); one whose subject the archive lacks is left out with a warning, one whose
subject is another platform's manifest is left out silently, as that manifest is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..errors import CargoholdError, InvalidArchiveError, InvalidReferenceError
from ..oci.digests import Digest
from ..oci.graph import read_document, walk
from ..oci.mediatypes import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    Descriptor,
    is_index,
    parse_index,
)
from ..oci.platforms import PlatformMatcher
from ..oci.references import Reference, is_tag
from ..oci.referrers import (
    MAX_REFERRER_DEPTH,
    Referrer,
    document_links,
    is_document,
    parse_referrer_tag,
    referrer_descriptor,
)
from .contents import ArchiveContents

_KIND_ANNOTATION: Final = "kind"
_SUBJECT_ANNOTATION: Final = "hauler.dev/subject-digest"
_KIND_PREFIXES: Final = {
    "dev.hauler/sigs": "sig", "dev.hauler/atts": "att", "dev.hauler/sboms": "sbom",
    "dev.hauler/referrers": "",
    "dev.cosignproject.cosign/sigs": "sig", "dev.cosignproject.cosign/atts": "att",
    "dev.cosignproject.cosign/sboms": "sbom",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Candidate:
    """An index.json entry (or an entry of a tag-schema index) that is a referrer."""

    descriptor: Descriptor
    kind: str
    what: str
    subject: Digest | None = None
    #: The name of the image it belongs to, when only that says (Hauler without a digest).
    subject_name: str | None = None


@dataclass(slots=True)
class SplitIndex:
    """index.json's entries: the images to plan, and the referrers to keep if their subject is."""

    images: list[tuple[int, Descriptor]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)


def split_entries(contents: ArchiveContents, entries: Sequence[Descriptor]) -> SplitIndex:
    """Tell the referrers among index.json's *entries* from the images."""
    split = SplitIndex()
    for i, entry in enumerate(entries):
        what = f"index.json manifests[{i}] ({entry.digest.short})"
        found = _as_referrers(contents, entry, what)
        if found is None:
            split.images.append((i, entry))
        else:
            split.candidates.extend(found)
    return split


def _as_referrers(
    contents: ArchiveContents, entry: Descriptor, what: str
) -> list[Candidate] | None:
    """The referrers *entry* is or lists, or None when it is an image."""
    marked = entry.annotations.get(_KIND_ANNOTATION, "")
    for prefix, kind in _KIND_PREFIXES.items():
        if marked == prefix or marked.startswith(prefix + "/"):
            return [_hauler_candidate(contents, entry, kind, what)]
    tag = entry_tag(entry)
    parsed = parse_referrer_tag(tag) if tag else None
    if parsed is not None:
        subject, kind = parsed
        if kind:
            return [Candidate(entry, kind, what, subject)]
        if is_index(entry.media_type):
            return _tag_schema(contents, entry, subject, what)
    if tag is None and is_document(entry.media_type):
        subject_desc = _subject(contents, entry, what)
        if subject_desc is not None:
            return [Candidate(entry, "", what, subject_desc)]
    return None


def _hauler_candidate(
    contents: ArchiveContents, entry: Descriptor, kind: str, what: str
) -> Candidate:
    digest_text = entry.annotations.get(_SUBJECT_ANNOTATION)
    if digest_text:
        try:
            return Candidate(entry, kind, what, Digest.parse(digest_text))
        except CargoholdError as exc:
            raise InvalidArchiveError(f"{what}: {_SUBJECT_ANNOTATION}: {exc}") from None
    if not kind:
        return Candidate(entry, kind, what, _subject(contents, entry, what))
    return Candidate(entry, kind, what, None, entry.annotations.get(ANNOTATION_REF_NAME))


def _tag_schema(
    contents: ArchiveContents, entry: Descriptor, subject: Digest, what: str
) -> list[Candidate]:
    """The referrers a tag-schema index lists (the index itself is not kept: it is written
    again wherever the referrers go)."""
    if contents.blob_size(entry.digest) is None:
        return []
    data = read_document(contents, entry)
    index = parse_index(data, f"{what}: referrers of {subject.short}", entry.media_type)
    return [
        Candidate(child, "", f"{what}: referrer {child.digest.short}", subject)
        for child in index.manifests
    ]


def _subject(contents: ArchiveContents, entry: Descriptor, what: str) -> Digest | None:
    """The digest an untagged document's ``subject`` names, if it is present and has one."""
    if contents.blob_size(entry.digest) != entry.size:
        return None
    links = document_links(read_document(contents, entry), what)
    return links.subject.digest if links.subject is not None else None


def entry_tag(entry: Descriptor) -> str | None:
    """The tag of an index.json entry's name (a bare tag or a full reference's), if named."""
    for key in (ANNOTATION_REF_NAME, ANNOTATION_IMAGE_NAME):
        value = entry.annotations.get(key)
        if not value:
            continue
        if is_tag(value):
            return value
        try:
            return Reference.parse(value).tag or ""
        except InvalidReferenceError:
            return ""
    return None


@dataclass(slots=True)
class PlannedReferrers:
    """The referrers an import keeps, and every blob they need."""

    referrers: list[Referrer] = field(default_factory=list)
    needed: dict[Digest, Descriptor] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def plan_referrers(
    contents: ArchiveContents,
    candidates: Iterable[Candidate],
    subjects: set[Digest],
    names: dict[str, Digest],
) -> PlannedReferrers:
    """Keep the *candidates* whose subject is among *subjects* (the imported images' documents)
    or a kept referrer; *names* maps index.json names to digests (for Hauler's entries)."""
    plan = PlannedReferrers()
    pending = [_resolved(c, names) for c in candidates]
    reached = set(subjects)
    seen: set[tuple[Digest, Digest]] = set()
    for _ in range(MAX_REFERRER_DEPTH + 1):
        kept = [c for c in pending if c.subject in reached]
        pending = [c for c in pending if c.subject not in reached]
        for candidate in kept:
            assert candidate.subject is not None
            key = (candidate.subject, candidate.descriptor.digest)
            if key not in seen:
                seen.add(key)
                plan.referrers.append(_planned(contents, candidate, plan))
                reached.add(candidate.descriptor.digest)
        if not kept:
            break
    for candidate in pending:
        if candidate.subject is None or contents.blob_size(candidate.subject) is None:
            named = candidate.subject or candidate.subject_name or "an unnamed image"
            plan.warnings.append(
                f"{candidate.what}: left out, the image it refers to ({named}) is not in"
                " the archive"
            )
    return plan


def _resolved(candidate: Candidate, names: dict[str, Digest]) -> Candidate:
    if candidate.subject is not None or candidate.subject_name is None:
        return candidate
    subject = names.get(candidate.subject_name)
    return Candidate(candidate.descriptor, candidate.kind, candidate.what, subject)


def _planned(contents: ArchiveContents, candidate: Candidate, plan: PlannedReferrers) -> Referrer:
    """Walk a kept referrer (every blob it lists must be in the archive) and describe it."""
    desc = candidate.descriptor
    assert candidate.subject is not None
    if not is_document(desc.media_type):
        raise InvalidArchiveError(
            f"{candidate.what}: referrer of media type {desc.media_type!r} is not a manifest"
        )
    graph = walk(contents, desc, PlatformMatcher.all(), candidate.what, read_configs=False)
    plan.needed.update(graph.blobs)
    links = document_links(read_document(contents, desc), candidate.what)
    return Referrer(candidate.subject, referrer_descriptor(desc, links), candidate.kind)
