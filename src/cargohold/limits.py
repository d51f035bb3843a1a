"""Bounds on what an untrusted archive can make cargohold read, hold in memory or write, and
on how slowly an untrusted registry may move a transfer.

Every archive is hostile until verified, and verification itself must not be the attack: a
4 GiB "manifest", a PAX header that fills memory, or a few megabytes of zstd that expand to a
terabyte are refused early with a message that names the limit and how to raise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .oci.mediatypes import DEFAULT_JSON_LIMIT, MAX_JSON_LIMIT

#: The floor on a registry transfer's progress, as curl's ``--speed-limit``/``--speed-time``:
#: a body (blob, manifest, token, upload) that moves fewer than DEFAULT_SPEED_LIMIT bytes a
#: second over DEFAULT_SPEED_TIME seconds is abandoned. 1 KiB/s is far below any link that can
#: move an image at all (a 100 MiB layer at that rate takes a day), so a working registry never
#: meets it, while a registry trickling bytes to keep a connection alive is dropped after half
#: a minute instead of holding a pull and its staging forever. 30 s is curl's default speed
#: time, and rides out the pauses of a busy registry or its storage.
DEFAULT_SPEED_LIMIT: Final = 1024
DEFAULT_SPEED_TIME: Final = 30.0

#: A decompressed archive may always reach this size, whatever its ratio (small archives of
#: empty files compress extremely well and are not attacks).
EXPANSION_FLOOR: Final = 64 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one import or inspection; the defaults suit any real image."""

    #: Largest JSON document (index, manifest, config, manifest.json) read into memory.
    document_bytes: int = DEFAULT_JSON_LIMIT
    #: Most a compressed archive may expand, as a multiple of the compressed bytes read so far
    #: (beyond the first EXPANSION_FLOOR bytes); gzip tops out near 1000 times, zstd goes far
    #: beyond, real image archives stay well below 50.
    expansion_ratio: float = 200.0
    #: Most bytes a compressed archive may expand to, whatever the ratio.
    uncompressed_bytes: int = 1 << 40

    def __post_init__(self) -> None:
        if not 1024 <= self.document_bytes <= MAX_JSON_LIMIT:
            raise ValueError(f"document limit must be between 1 KiB and {MAX_JSON_LIMIT} bytes")
        if self.expansion_ratio < 1:
            raise ValueError("expansion ratio must be at least 1")
        if self.uncompressed_bytes < 1:
            raise ValueError("uncompressed size limit must be positive")
