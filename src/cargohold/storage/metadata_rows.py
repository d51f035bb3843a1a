"""The metadata's records, and the strict reading of what its rows hold.

A row can be edited by hand or damaged; what is read from one is checked, and a row that
cannot be read raises :class:`~cargohold.errors.CorruptMetadataError` naming it, rather than
an internal error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from ..errors import CargoholdError, CorruptMetadataError
from ..oci.digests import Digest

#: How a store is opened. ``"read"`` creates, migrates and writes nothing, and works for a
#: user who may only read the store; ``"write"`` creates the store and its schema if needed.
StoreMode = Literal["read", "write"]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One name in one namespace and the content it points at."""

    name: str
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    #: Imported with manifests of its index missing (``--skip-missing``).
    partial: bool = False


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    created_at: float
    labels: dict[str, str]
    images: int


def dump_strings(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def row_name(namespace: object, name: object) -> str:
    return f"metadata.db: image {name!r} of namespace {namespace!r}"


def parse_digest(value: object, what: str) -> Digest:
    try:
        return Digest.parse(value)
    except CargoholdError as exc:
        raise CorruptMetadataError(f"{what}: {exc}") from None


def load_strings(text: object, what: str) -> dict[str, str]:
    """A JSON object of strings (labels, annotations), as written by :func:`dump_strings`."""
    try:
        value = json.loads(text) if isinstance(text, (str, bytes)) else None
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CorruptMetadataError(f"{what} are not a JSON object of strings: {str(text)[:40]!r}")
    return value
