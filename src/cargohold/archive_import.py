"""Reading image archives: one streaming pass over a tar, every member verified on the way in.

The archive is hostile until proven otherwise. Member names are normalised and checked before
they mean anything, only regular files and directories are accepted, each ``blobs/<alg>/<hex>``
member is hashed while it is staged and must match its name, and the documents are parsed
strictly. Nothing reaches the store here: blobs go to the import's private staging directory,
and the caller commits the ones the selected images need once the whole archive has passed.
"""

from __future__ import annotations

import datetime
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from .blobstore import BlobStore, StagedBlob
from .digests import Digest
from .errors import (
    ContentError,
    InvalidArchiveError,
    InvalidDigestError,
    InvalidDocumentError,
    InvalidReferenceError,
)
from .images import ImageGraph, walk
from .mediatypes import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    DEFAULT_JSON_LIMIT,
    OCI_INDEX,
    Descriptor,
    is_index,
    is_manifest,
    load_json,
    parse_index,
)
from .platforms import PlatformMatcher
from .references import Reference, is_tag, parse_repository

#: Most members an archive may have; an image with more is an attack on our memory.
MAX_MEMBERS: Final = 200_000
#: Longest member name we accept.
MAX_NAME_LENGTH: Final = 1024
_BLOB_NAME: Final = re.compile(r"^blobs/([^/]+)/([^/]+)$")
_ARCHIVE_SUFFIXES: Final = (".tar", ".tgz", ".tar.gz", ".tar.zst", ".tar.zstd", ".tar.xz", ".oci")


@dataclass(slots=True)
class ArchiveContents:
    """What one pass over an archive found; also the content source for walking its images."""

    store: BlobStore
    layout: bytes | None = None
    index_json: bytes | None = None
    manifest_json: bytes | None = None
    staged: dict[Digest, StagedBlob] = field(default_factory=dict)
    #: Blobs named in the archive that the store already had; their bytes were not needed.
    present: set[Digest] = field(default_factory=set)
    members: set[str] = field(default_factory=set)

    def blob_size(self, digest: Digest) -> int | None:
        staged = self.staged.get(digest)
        if staged is not None:
            return staged.size
        return self.store.blob_size(digest)

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        staged = self.staged.get(digest)
        if staged is None:
            return self.store.read_blob(digest, limit)
        if staged.size > limit:
            raise InvalidDocumentError(f"document {digest} of {staged.size} bytes exceeds {limit}")
        return staged.path.read_bytes()


def member_name(raw: str) -> str:
    """The normalised name of an archive member; refuses names that could escape or collide."""
    if "\x00" in raw or "\\" in raw:
        raise InvalidArchiveError(f"member {raw!r}: name contains NUL or backslash")
    if len(raw) > MAX_NAME_LENGTH:
        raise InvalidArchiveError(f"member {raw[:60]!r}…: name longer than {MAX_NAME_LENGTH}")
    if raw.startswith("/"):
        raise InvalidArchiveError(f"member {raw!r}: absolute name")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArchiveError(f"member {raw!r}: name contains '..'")
    return "/".join(parts)


def scan(
    archive: tarfile.TarFile,
    store: BlobStore,
    staging: Path,
    already_stored: Callable[[Digest], bool],
) -> ArchiveContents:
    """Read every member once, staging blobs and keeping the small layout documents.

    *already_stored* is asked before a blob's bytes are read: when it says the store has the
    blob (and has protected it for this import), the member is skipped; the store's copy was
    verified when it was written.
    """
    contents = ArchiveContents(store)
    count = 0
    try:
        for member in archive:
            count += 1
            if count > MAX_MEMBERS:
                raise InvalidArchiveError(f"archive has more than {MAX_MEMBERS} members")
            _scan_member(archive, member, contents, staging, already_stored)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None
    except EOFError:
        raise InvalidArchiveError("archive is truncated") from None
    return contents


def _scan_member(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    contents: ArchiveContents,
    staging: Path,
    already_stored: Callable[[Digest], bool],
) -> None:
    name = member_name(member.name)
    if member.isdir():
        return
    if not member.isreg():
        kind = {
            tarfile.SYMTYPE: "symbolic link",
            tarfile.LNKTYPE: "hard link",
            tarfile.CHRTYPE: "character device",
            tarfile.BLKTYPE: "block device",
            tarfile.FIFOTYPE: "FIFO",
        }.get(member.type, f"member of type {member.type!r}")
        raise InvalidArchiveError(f"member {name!r}: {kind} not allowed in an image archive")
    if not name:
        raise InvalidArchiveError(f"member {member.name!r}: empty name")
    if name in contents.members:
        raise InvalidArchiveError(f"member {name!r}: appears twice in the archive")
    contents.members.add(name)
    if name in ("oci-layout", "index.json", "manifest.json"):
        data = _read_small(archive, member, name)
        if name == "oci-layout":
            contents.layout = data
        elif name == "index.json":
            contents.index_json = data
        else:
            contents.manifest_json = data
        return
    match = _BLOB_NAME.match(name)
    if match is None:
        return  # other files (docker's legacy files, READMEs) are not image content
    try:
        expected = Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except InvalidDigestError as exc:
        raise InvalidArchiveError(f"member {name!r}: {exc}") from None
    if expected in contents.staged or expected in contents.present:
        raise InvalidArchiveError(f"member {name!r}: blob appears twice in the archive")
    if already_stored(expected):
        contents.present.add(expected)
        return
    source = archive.extractfile(member)
    assert source is not None  # a regular file always has data
    try:
        contents.staged[expected] = contents.store.stage(
            source, member.size, staging, expected, what=f"member {name!r}"
        )
    except ContentError as exc:
        raise InvalidArchiveError(str(exc)) from None


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    if member.size > DEFAULT_JSON_LIMIT:
        raise InvalidArchiveError(
            f"member {name!r}: {member.size} bytes exceeds the JSON limit of {DEFAULT_JSON_LIMIT}"
        )
    source = archive.extractfile(member)
    assert source is not None
    data = source.read(member.size)
    if len(data) != member.size:
        raise InvalidArchiveError(f"member {name!r}: truncated")
    return data


def open_archive(source: IO[bytes], seekable: bool) -> tarfile.TarFile:
    """A tar reader over *source*: random access when it is a file, a stream otherwise."""
    try:
        if seekable:
            return tarfile.open(fileobj=source, mode="r:", bufsize=1 << 20)
        return tarfile.open(fileobj=source, mode="r|", bufsize=1 << 20)
    except tarfile.TarError as exc:
        raise InvalidArchiveError(f"not a valid tar archive ({exc})") from None


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


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """A name the import will create or update, and the content it will point at."""

    name: str
    target: Descriptor
    created: str | None


@dataclass(slots=True)
class ImportPlan:
    """What an import will commit: the names, and every blob their images need."""

    images: list[PlannedImage] = field(default_factory=list)
    needed: dict[Digest, Descriptor] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    index_blob: bytes | None = None


def plan_oci(
    contents: ArchiveContents,
    matcher: PlatformMatcher,
    base_name: str,
    tags: tuple[str, ...] = (),
    digest_names: bool = False,
    index_name: str | None = None,
) -> ImportPlan:
    """Decide which images and names an OCI layout archive yields, and check they are whole."""
    _check_layout(contents.layout)
    if contents.index_json is None:
        raise InvalidArchiveError("missing index.json in OCI layout")
    index = parse_index(contents.index_json, "index.json", None)
    base = parse_repository(base_name)
    plan = ImportPlan()
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]] = []
    for i, entry in enumerate(index.manifests):
        what = f"index.json manifests[{i}] ({entry.digest.short})"
        if not (is_index(entry.media_type) or is_manifest(entry.media_type)):
            plan.warnings.append(
                f"{what}: skipped, media type {entry.media_type!r} is not an image"
            )
            continue
        if not matcher.matches(entry.platform):
            continue
        graph = walk(contents, entry, matcher, what)
        graphs.append((entry, graph, _entry_names(entry, base, what)))
    if not graphs:
        if index.manifests:
            raise InvalidArchiveError(f"no image in the archive matches {matcher}")
        raise InvalidArchiveError("the archive's index.json lists no images")
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
            if named.setdefault(name, entry.digest) != entry.digest:
                raise InvalidArchiveError(
                    f"the archive gives the name {name} to two different images"
                )
            if all(p.name != name for p in plan.images):
                plan.images.append(PlannedImage(name, target, graph.created))
    if index_name is not None:
        digest = Digest.of_bytes(contents.index_json)
        target = Descriptor(OCI_INDEX, digest, len(contents.index_json))
        plan.index_blob = contents.index_json
        plan.needed[digest] = target
        plan.images.append(PlannedImage(str(Reference.parse(index_name)), target, None))
    return plan


def _check_layout(layout: bytes | None) -> None:
    if layout is None:
        raise InvalidArchiveError("not an OCI image layout: the archive has no oci-layout member")
    doc = load_json(layout, "oci-layout")
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


def _kept_annotations(entry: Descriptor) -> dict[str, str]:
    """Annotations stored with an image; the name annotations are rewritten on every export."""
    return {
        k: v
        for k, v in entry.annotations.items()
        if k not in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME)
    }
