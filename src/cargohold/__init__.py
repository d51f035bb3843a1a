"""cargohold: a local content-addressable store of OCI images, moved in and out as tarballs."""

from __future__ import annotations

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
    VolumeError,
)
from .oci.digests import Digest
from .oci.platforms import Platform
from .oci.references import Reference
from .operations.results import (
    ArchiveReport,
    CheckResult,
    ExportResult,
    ImageInfo,
    ImageInspection,
    ImportResult,
)
from .operations.store import Store
from .progress import Progress
from .storage.metadata import StoreMode
from .version import __version__

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
    "VolumeError",
    "__version__",
    "inspect_archive",
]


def __getattr__(name: str) -> object:
    """``inspect_archive`` loads the archive readers, which most commands never need."""
    if name == "inspect_archive":
        from .operations.inspecting import inspect_archive

        return inspect_archive
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
