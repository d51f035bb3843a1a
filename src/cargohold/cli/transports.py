"""skopeo's transport prefixes on archive arguments: ``oci-archive:FILE[:REF]``,
``docker-archive:FILE[:REF]`` and ``oci:DIR[:REF]``, so a command line copied from skopeo
works here too.

A path that exists as written is always a path, even one that starts like a prefix
(``oci:backup.tar`` as a file name); only a name that exists nowhere is read as a transport.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import CargoholdError

Transport = Literal["oci-archive", "docker-archive", "oci"]
_TRANSPORTS: Final[dict[str, Transport]] = {
    "oci-archive": "oci-archive",
    "docker-archive": "docker-archive",
    "oci": "oci",
}


@dataclass(frozen=True, slots=True)
class Location:
    """An archive argument split into its transport (``None``: a plain path), its path and
    the reference skopeo allows after the path (``None`` when absent)."""

    path: str
    transport: Transport | None = None
    reference: str | None = None


def parse_location(value: str) -> Location:
    """Split *value* as skopeo does: the path ends at the first colon after the transport,
    unless the whole rest exists as a path (a path with a colon in it)."""
    if value == "-" or os.path.lexists(value):
        return Location(value)
    transport, sep, rest = value.partition(":")
    kind = _TRANSPORTS.get(transport)
    if not sep or kind is None:
        return Location(value)
    if os.path.lexists(rest):
        return Location(rest, kind)
    path, sep, reference = rest.partition(":")
    if not path:
        raise CargoholdError(f"{value}: no path after {transport}:")
    if sep and not reference:
        raise CargoholdError(f"{value}: empty reference after the path")
    return Location(path, kind, reference or None)
