"""Bounds on what an untrusted archive can make cargohold read, hold in memory or write.

Every archive is hostile until verified, and verification itself must not be the attack: a
4 GiB "manifest", a PAX header that fills memory, or a few megabytes of zstd that expand to a
terabyte are refused early with a message that names the limit and how to raise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .mediatypes import DEFAULT_JSON_LIMIT, MAX_JSON_LIMIT

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
