"""The exceptions cargohold raises.

Every failure a user can cause or meet is a :class:`CargoholdError`, so the CLI can print one
line and exit 1 for all of them and keep tracebacks for real bugs. The subclasses let library
callers tell the kinds apart without parsing messages (the httpx model).
"""

from __future__ import annotations


class CargoholdError(Exception):
    """Base class of every error cargohold reports to its caller."""


class InvalidReferenceError(CargoholdError, ValueError):
    """An image name does not follow the Docker reference grammar."""


class InvalidPlatformError(CargoholdError, ValueError):
    """A platform string cannot be parsed."""


class InvalidDigestError(CargoholdError, ValueError):
    """A digest string does not follow the OCI digest grammar, or uses an algorithm we refuse."""


class InvalidArchiveError(CargoholdError):
    """An archive is malformed, inconsistent or hostile; nothing from it was stored."""


class InvalidDocumentError(InvalidArchiveError):
    """A JSON document (manifest, index, config, layout file) is malformed or ambiguous."""


class ContentError(CargoholdError):
    """Content failed verification: wrong digest, wrong size, or truncated."""


class DamagedContentError(ContentError):
    """The store's own copy of a blob does not match its digest or size: the store was damaged
    (a disk fault, an edit by hand). The message names the blob and the way to repair it."""

    def __init__(self, digest: object, problem: str) -> None:
        super().__init__(
            f"the store's copy of {digest} is damaged ({problem}); find damaged content with"
            " 'cargohold image check --verify', then re-import the image (with --force) or"
            " remove the blob with 'cargohold content rm --force'"
        )
        self.digest = digest


class UnreadableContentError(ContentError):
    """A stored index or manifest that a reachability walk must follow cannot be read."""

    def __init__(self, digest: object, problem: CargoholdError) -> None:
        super().__init__(f"cannot read {digest} ({problem})")
        self.digest = digest


class NotFoundError(CargoholdError, LookupError):
    """A named image, namespace or blob does not exist."""


class AlreadyExistsError(CargoholdError):
    """A name is already taken and the caller did not ask to replace it."""


class StoreFormatError(CargoholdError):
    """The store on disk was written by a newer cargohold, or is not a cargohold store."""


class InvalidFilterError(CargoholdError, ValueError):
    """A filter expression (``image ls name~=…``) does not follow containerd's filter syntax."""


class InUseError(CargoholdError):
    """Content or a namespace is still used by an image and the caller did not force it."""


class InvalidLabelError(CargoholdError, ValueError):
    """A label key or value is empty where it must not be, or too long."""


class StorageFullError(CargoholdError, OSError):
    """The store's disk is full (or a file size limit was reached); nothing was stored."""


class NoStoreError(NotFoundError):
    """No store exists at the path, and the command only reads (only writers create one)."""


class ReadOnlyStoreError(CargoholdError, PermissionError):
    """The operation writes, and this user cannot write the store (or it was opened to read)."""


class CorruptMetadataError(CargoholdError):
    """A row of the store's metadata cannot be read (damaged or edited by hand)."""
