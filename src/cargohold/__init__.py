"""cargohold: a local content-addressable store of OCI images, moved in and out as tarballs.

Every public name is loaded when first used: the command line imports this package for every
command (``cargohold --version`` among them), and a store's verbs need SQLite, the archive
readers and more, which a command that does not touch them should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:
    from .errors import (
        AlreadyExistsError,
        CargoholdError,
        ContentError,
        CorruptMetadataError,
        DamagedBlobError,
        IncompleteDeltaError,
        InUseError,
        InvalidArchiveError,
        InvalidDigestError,
        InvalidDocumentError,
        InvalidFilterError,
        InvalidInventoryError,
        InvalidKeyError,
        InvalidLabelError,
        InvalidPlatformError,
        InvalidReferenceError,
        NoStoreError,
        NotFoundError,
        OutputPathError,
        ReadOnlyStoreError,
        SignatureError,
        StoreFormatError,
        VolumeError,
    )
    from .oci.digests import Digest
    from .oci.platforms import Platform
    from .oci.references import Reference
    from .oci.referrers import Referrer
    from .operations.inspecting import inspect_archive
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
    "IncompleteDeltaError",
    "InvalidArchiveError",
    "InvalidDigestError",
    "InvalidDocumentError",
    "InvalidFilterError",
    "InvalidInventoryError",
    "InvalidKeyError",
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
    "Referrer",
    "SignatureError",
    "Store",
    "StoreFormatError",
    "StoreMode",
    "VolumeError",
    "__version__",
    "inspect_archive",
]

#: Where each public name is defined.
_LAZY = {
    "AlreadyExistsError": ".errors",
    "ArchiveReport": ".operations.results",
    "CargoholdError": ".errors",
    "CheckResult": ".operations.results",
    "ContentError": ".errors",
    "CorruptMetadataError": ".errors",
    "DamagedBlobError": ".errors",
    "IncompleteDeltaError": ".errors",
    "InvalidInventoryError": ".errors",
    "InvalidKeyError": ".errors",
    "SignatureError": ".errors",
    "VolumeError": ".errors",
    "Referrer": ".oci.referrers",
    "Digest": ".oci.digests",
    "ExportResult": ".operations.results",
    "ImageInfo": ".operations.results",
    "ImageInspection": ".operations.results",
    "ImportResult": ".operations.results",
    "InUseError": ".errors",
    "InvalidArchiveError": ".errors",
    "InvalidDigestError": ".errors",
    "InvalidDocumentError": ".errors",
    "InvalidFilterError": ".errors",
    "InvalidLabelError": ".errors",
    "InvalidPlatformError": ".errors",
    "InvalidReferenceError": ".errors",
    "NoStoreError": ".errors",
    "NotFoundError": ".errors",
    "OutputPathError": ".errors",
    "Platform": ".oci.platforms",
    "Progress": ".progress",
    "ReadOnlyStoreError": ".errors",
    "Reference": ".oci.references",
    "Store": ".operations.store",
    "StoreFormatError": ".errors",
    "StoreMode": ".storage.metadata",
    "inspect_archive": ".operations.inspecting",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
