"""cargohold: a local content-addressable store of OCI images, moved in and out as tarballs."""

from __future__ import annotations

__version__ = "0.1.0"

from .digests import Digest
from .errors import (
    AlreadyExistsError,
    CargoholdError,
    ContentError,
    InvalidArchiveError,
    InvalidDigestError,
    InvalidDocumentError,
    InvalidPlatformError,
    InvalidReferenceError,
    NotFoundError,
    StoreFormatError,
)
from .platforms import Platform
from .references import Reference
from .store import ExportResult, ImageInfo, ImportResult, Store

__all__ = [
    "AlreadyExistsError",
    "CargoholdError",
    "ContentError",
    "Digest",
    "ExportResult",
    "ImageInfo",
    "ImportResult",
    "InvalidArchiveError",
    "InvalidDigestError",
    "InvalidDocumentError",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "NotFoundError",
    "Platform",
    "Reference",
    "Store",
    "StoreFormatError",
    "__version__",
]
