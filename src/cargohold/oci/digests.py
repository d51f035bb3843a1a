"""Content digests: parsing, validation and streaming computation.

A digest string ends up in file paths (``blobs/sha256/<hex>``), so it is validated before it
is used for anything. Only algorithms we can verify are accepted: an archive that claims a
weaker or unknown algorithm cannot be checked, and content that cannot be checked is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidDigestError

#: Algorithms we can verify, with the exact length of their lower-case hex encoding.
ALGORITHMS: Final[dict[str, int]] = {"sha256": 64, "sha512": 128}

#: The OCI digest grammar (image-spec descriptor.md). Always used with ``fullmatch``: ``$``
#: would also match before a trailing newline, letting one into a file name.
_GRAMMAR: Final = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX: Final = re.compile(r"[a-f0-9]+")
#: Each algorithm's name, one string object for every digest that uses it.
_ALGORITHM_NAMES: Final = {name: name for name in ALGORITHMS}


@dataclass(frozen=True, order=True, slots=True)
class Digest:
    """A validated ``algorithm:hex`` content identifier."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: object) -> Digest:
        """Parse and validate *value*; refuse anything we could not verify ourselves."""
        if not isinstance(value, str):
            raise InvalidDigestError(f"digest must be a string, not {type(value).__name__}")
        if len(value) > 200 or not _GRAMMAR.fullmatch(value):
            raise InvalidDigestError(f"invalid digest {value[:80]!r}")
        algorithm, _, encoded = value.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidDigestError(f"unsupported digest algorithm {algorithm!r} in {value!r}")
        if len(encoded) != length or not _HEX.fullmatch(encoded):
            raise InvalidDigestError(
                f"invalid digest {value!r}: {algorithm} needs {length} lower-case hex digits"
            )
        return cls(_ALGORITHM_NAMES[algorithm], encoded)  # one string for all the digests

    @classmethod
    def from_hex(cls, algorithm: str, encoded: str) -> Digest:
        """A digest from a known algorithm and its hex (a blob's file name): the same checks
        as :meth:`parse` on what can vary, done once per blob when a store is scanned."""
        if len(encoded) != ALGORITHMS[algorithm] or not _HEX.fullmatch(encoded):
            raise InvalidDigestError(f"invalid {algorithm} digest {encoded[:80]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm, to verify content against it."""
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The first 12 hex digits, as docker and ctr show them."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
