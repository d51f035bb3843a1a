"""What a caller hands the registry client, checked before it reaches a URL or a setting:
repository names, tags and digests (a URL path is built from them), blob sizes, chunk sizes
and the speed floor. Each check raises the error a caller's mistake deserves
(:class:`InvalidReferenceError` for a name, :class:`ValueError` for a number).
"""

from __future__ import annotations

from ..errors import InvalidReferenceError
from ..oci.digests import Digest
from ..oci.mediatypes import MAX_BLOB_SIZE
from ..oci.references import Reference, is_tag

__all__ = ["check_floor", "check_settings", "check_size", "checked_reference"]


def check_size(size: int) -> None:
    """Refuse a blob size no blob can have, before it goes into a request."""
    if type(size) is not int or not 0 <= size <= MAX_BLOB_SIZE:
        raise ValueError(f"blob size {size!r} is out of range")


def checked_reference(
    host: str, repository: str, reference: str | Digest
) -> tuple[str, Digest | None]:
    """Validate a repository name and a tag or digest before they go into a URL; returns the
    reference as the URL names it, and its digest when it is one."""
    Reference(host, repository)
    if isinstance(reference, Digest):
        return str(reference), reference
    if ":" in reference:
        digest = Digest.parse(reference)
        return str(digest), digest
    if not is_tag(reference):
        raise InvalidReferenceError(f"invalid tag {reference[:100]!r}")
    return reference, None


def check_settings(
    host: str, chunk_size: int, upload_chunk_size: int, monolithic_limit: int
) -> None:
    """Refuse a host that is no reference domain, and chunk sizes that are not positive."""
    try:
        Reference(host, "x")
    except InvalidReferenceError:
        raise InvalidReferenceError(f"invalid registry host {host[:100]!r}") from None
    if chunk_size < 1 or upload_chunk_size < 1 or monolithic_limit < 0:
        raise ValueError("chunk sizes must be positive")


def check_floor(speed_limit: int, speed_time: float) -> None:
    """Refuse a speed floor that is not a number of bytes a second over a finite time."""
    if type(speed_limit) is not int or speed_limit < 0:
        raise ValueError(f"speed limit {speed_limit!r} is not a number of bytes per second")
    if not speed_time > 0 or speed_time == float("inf"):
        raise ValueError(f"speed time {speed_time!r} is not a positive number of seconds")
