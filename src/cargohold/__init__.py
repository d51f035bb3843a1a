"""cargohold: a local content-addressable store of OCI images, moved in and out as tarballs."""

from __future__ import annotations

__version__ = "0.1.0"

from .digests import Digest
from .errors import (
    AlreadyExistsError,
    CargoholdError,
    ContentError,
    CorruptMetadataError,
    DamagedBlobError,
    InUseError,
    InvalidArchiveError,
    InvalidDigestError,
    InvalidDocumentError,
    InvalidFilterError,
    InvalidLabelError,
    InvalidPlatformError,
    InvalidReferenceError,
    NoStoreError,
    NotFoundError,
    OutputPathError,
    ReadOnlyStoreError,
    StoreFormatError,
)
from .metadata import StoreMode
from .platforms import Platform
from .progress import Progress
from .references import Reference
from .store import (
    ArchiveReport,
    CheckResult,
    ExportResult,
    ImageInfo,
    ImageInspection,
    ImportResult,
    Store,
    inspect_archive,
)

__all__ = [
    "AlreadyExistsError",
    "ArchiveReport",
    "CargoholdError",
    "CheckResult",
    "ContentError",
    "CorruptMetadataError",
    "DamagedBlobError",
    "Digest",
    "ExportResult",
    "ImageInfo",
    "ImageInspection",
    "ImportResult",
    "InUseError",
    "InvalidArchiveError",
    "InvalidDigestError",
    "InvalidDocumentError",
    "InvalidFilterError",
    "InvalidLabelError",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "NoStoreError",
    "NotFoundError",
    "OutputPathError",
    "Platform",
    "Progress",
    "ReadOnlyStoreError",
    "Reference",
    "Store",
    "StoreFormatError",
    "StoreMode",
    "__version__",
    "inspect_archive",
]
