"""Sizes, names and durations as people read them on a terminal or in a log."""

from __future__ import annotations

import functools
import re


def human_size(size: float) -> str:
    """Binary units, because blob and disk sizes are powers of two far more often than not."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def short_name(name: str) -> str:
    """A blob's label: a digest is unreadable at full length, and 12 hex digits identify a
    blob in practice. A member name holding a digest's hex (a docker layer's
    ``<64 hex>/layer.tar``) is shown by those 12 digits; another name, cut to 24 characters."""
    algorithm, sep, encoded = name.partition(":")
    if sep and "/" not in name and len(encoded) > 12:
        return f"{algorithm}:{encoded[:12]}"
    found = _HEX64.search(name)
    if found is not None:
        return found.group()[:12]
    return ellipsis(name, 24)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def duration(seconds: float) -> str:
    """Short operations read best in seconds, long ones on a clock."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "eta -:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


@functools.cache
def short_media_types() -> dict[str, str]:
    """Media types of image roots by their short names in ``image ls`` (docker's manifest list
    and manifest keep "docker" in front: the two families differ in what they may carry)."""
    # Here, not at the top: every command loads this module, most never show a media type.
    from ..oci.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

    return {
        OCI_INDEX: "index",
        OCI_MANIFEST: "manifest",
        DOCKER_MANIFEST_LIST: "docker-list",
        DOCKER_MANIFEST: "docker-manifest",
    }


def short_media_type(media_type: str) -> str:
    """A root's media type as a word; one not listed stays whole, as it is rare and telling."""
    return short_media_types().get(media_type, media_type)


def ellipsis(text: str, width: int) -> str:
    """*text* cut to *width* characters, the cut shown by a trailing "…"."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def counted(count: int, noun: str) -> str:
    """*count* and *noun*, the noun plural unless the count is one: ``1 blob``, ``2 blobs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
