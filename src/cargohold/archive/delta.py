"""Delta archives: an export that leaves out the blobs its receiver already holds, and the list
of what it left out, which its import checks against the receiving namespace.

The list is a member of its own, :data:`DELTA_MEMBER` (media type :data:`DELTA_MEDIA_TYPE`)::

    {"mediaType": "application/vnd.cargohold.delta.v1+json",
     "omitted": [{"digest": "sha256:<hex>", "size": <bytes>}, ...]}      # sorted by digest

A member rather than an annotation on ``index.json``: the list can hold thousands of entries
(an annotation is a string, so it would be JSON inside a string), ``index.json`` stays what every
OCI reader expects, and the member is found and read before planning like the other layout
documents. Other OCI readers ignore the member; a delta has no ``manifest.json``, so
``docker load`` refuses it instead of loading half an image.

An import of a delta succeeds only when the receiving namespace holds every omitted blob, of
the listed size (:func:`check_held`, before anything is planned), and every blob its images
need is either in the archive or in the list with the size its descriptor gives
(:func:`check_plan`). The walk of the images reads omitted documents from the store only
through the namespace's holdings, so a list cannot make an import accept a blob the namespace
does not hold, whatever it says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from ..errors import IncompleteDeltaError, InvalidArchiveError, InvalidDigestError
from ..oci.digests import Digest
from ..oci.mediatypes import Descriptor, dump_json, load_json
from .members import BLOB_NAME

DELTA_MEMBER: Final = "cargohold-delta.json"
DELTA_MEDIA_TYPE: Final = "application/vnd.cargohold.delta.v1+json"
#: How many missing digests the refusal of an incomplete delta names.
SHOWN_MISSING: Final = 3


def encode_delta(omitted: Mapping[Digest, int]) -> bytes:
    """The :data:`DELTA_MEMBER` of an archive that leaves out *omitted* (digest to size)."""
    entries = [{"digest": str(d), "size": size} for d, size in sorted(omitted.items())]
    return dump_json({"mediaType": DELTA_MEDIA_TYPE, "omitted": entries})


def parse_delta(data: bytes, limit: int) -> dict[Digest, int]:
    """The omitted blobs a :data:`DELTA_MEMBER` lists, checked strictly."""
    what = f"member {DELTA_MEMBER!r}"
    document = load_json(data, what, limit)
    if not isinstance(document, dict) or document.get("mediaType") != DELTA_MEDIA_TYPE:
        media_type = document.get("mediaType") if isinstance(document, dict) else None
        raise InvalidArchiveError(
            f"{what}: not a delta list this cargohold reads (mediaType {str(media_type)[:80]!r},"
            f" expected {DELTA_MEDIA_TYPE})"
        )
    entries = document.get("omitted")
    if not isinstance(entries, list):
        raise InvalidArchiveError(f"{what}: omitted must be a list")
    omitted: dict[Digest, int] = {}
    for i, entry in enumerate(entries):
        where = f"{what}: omitted[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArchiveError(f"{where} is not an object")
        try:
            digest = Digest.parse(entry.get("digest"))
        except InvalidDigestError as exc:
            raise InvalidArchiveError(f"{where}: {exc}") from None
        size = entry.get("size")
        if type(size) is not int or size < 0:
            raise InvalidArchiveError(f"{where}: size must be a non-negative integer")
        if digest in omitted:
            raise InvalidArchiveError(f"{where}: {digest} is listed twice")
        omitted[digest] = size
    return omitted


def blob_members(names: Iterable[str]) -> set[Digest]:
    """The digests of the ``blobs/<alg>/<hex>`` members among *names* (others are ignored)."""
    found: set[Digest] = set()
    for name in names:
        match = BLOB_NAME.match(name)
        if match is None:
            continue
        try:
            found.add(Digest.parse(f"{match.group(1)}:{match.group(2)}"))
        except InvalidDigestError:
            continue
    return found


def missing_blobs(
    omitted: Mapping[Digest, int],
    held_size: Callable[[Digest], int | None],
    reusable: Callable[[Digest, int], bool],
) -> list[tuple[Digest, int]]:
    """The omitted blobs the receiving namespace cannot supply, in digest order.

    *held_size* is the size of the namespace's copy of a blob (None when it does not hold
    it): a list that gives another size is refused outright, being a lie about the content.
    *reusable* is the rule a normal import applies to the store's copy (and leases it)."""
    missing = []
    for digest, size in sorted(omitted.items()):
        actual = held_size(digest)
        if actual is not None and actual != size:
            raise InvalidArchiveError(
                f"member {DELTA_MEMBER!r}: lists {digest} with {size} bytes; the blob has {actual}"
            )
        if actual is None or not reusable(digest, size):
            missing.append((digest, size))
    return missing


def incomplete(missing: list[tuple[Digest, int]], namespace: str) -> IncompleteDeltaError:
    """The one-line refusal of a delta whose omitted blobs the namespace does not all hold."""
    total = sum(size for _, size in missing)
    shown = ", ".join(str(d) for d, _ in missing[:SHOWN_MISSING])
    more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
    noun = "blob" if len(missing) == 1 else "blobs"
    return IncompleteDeltaError(
        f"delta archive: namespace {namespace} lacks {len(missing)} omitted {noun}"
        f" ({total} bytes): {shown}{more}"
    )


def check_archive_omits(omitted: Mapping[Digest, int], members: Iterable[str]) -> None:
    """A delta that lists a blob as omitted and also contains it contradicts itself."""
    for digest in sorted(blob_members(members) & omitted.keys()):
        raise InvalidArchiveError(
            f"member {DELTA_MEMBER!r}: lists {digest} as omitted, but the archive contains it"
        )


def check_plan(
    omitted: Mapping[Digest, int], in_archive: set[Digest], needed: Mapping[Digest, Descriptor]
) -> None:
    """Every blob the delta's images need is in the archive, or listed as omitted with the size
    its descriptor gives."""
    for digest, desc in needed.items():
        if digest in in_archive:
            continue
        listed = omitted.get(digest)
        if listed is None:
            raise InvalidArchiveError(
                f"delta archive: {digest} is neither in the archive nor in its list of omitted"
                " blobs"
            )
        if listed != desc.size:
            raise InvalidArchiveError(
                f"member {DELTA_MEMBER!r}: lists {digest} with {listed} bytes; its descriptor"
                f" says {desc.size}"
            )
