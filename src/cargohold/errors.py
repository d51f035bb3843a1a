"""The exceptions cargohold raises.

Every failure a user can cause or meet is a :class:`CargoholdError`, so the CLI can print one
line and exit 1 for all of them and keep tracebacks for real bugs. The subclasses let library
callers tell the kinds apart without parsing messages (the httpx model).

The whole tree (a second base in brackets)::

    CargoholdError
    ├── AlreadyExistsError
    ├── ContentError
    │   ├── DamagedBlobError
    │   └── UnreadableContentError
    ├── CorruptMetadataError
    ├── CredentialsError (ValueError)
    ├── InUseError
    ├── InvalidArchiveError
    │   ├── InvalidDocumentError
    │   └── VolumeError
    ├── InvalidDigestError (ValueError)
    ├── InvalidFilterError (ValueError)
    ├── InvalidInventoryError
    ├── InvalidLabelError (ValueError)
    ├── InvalidPlatformError (ValueError)
    ├── InvalidReferenceError (ValueError)
    ├── MetadataError (sqlite3.Error)
    │   └── StoreLockedError
    ├── NotFoundError (LookupError)
    │   ├── MissingContentError
    │   │   └── ArchiveMissingContentError (InvalidArchiveError)
    │   ├── NoMatchingPlatformError
    │   │   └── ArchiveNoMatchingPlatformError (InvalidArchiveError)
    │   ├── NoStoreError
    │   └── IncompleteDeltaError
    ├── OutputPathError
    ├── ReadOnlyStoreError (PermissionError)
    ├── RegistryError
    │   ├── AccessDeniedError
    │   ├── AuthenticationError
    │   │   └── ForeignRealmError
    │   ├── RegistryConnectionError
    │   │   └── RegistryTooSlowError
    │   ├── RegistryContentError (ContentError)
    │   ├── RegistryNotFoundError (NotFoundError)
    │   ├── RegistryProtocolError
    │   └── RegistryServerError
    ├── SignatureError
    │   └── InvalidKeyError (ValueError)
    ├── ServeConfigError (ValueError)
    ├── StorageFullError (OSError)
    ├── StoreFormatError
    └── SyncListError (ValueError)

:class:`BelowSpeedFloor` and :class:`TransferDropped` are not failures but signals inside the
registry client (a body too slow, a download to resume), and :class:`TransferCancelled` one
inside a pull (another download failed); they never reach callers. :class:`ApiError` is the
registry server's answer to one request (a status and an OCI error code), sent to its client.
"""

from __future__ import annotations

import sqlite3
from typing import Any


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


class VolumeError(InvalidArchiveError):
    """A volume of a split archive is missing, of the wrong size or fails its checksum; the
    message names it, and :attr:`volume` is its file name."""

    def __init__(self, volume: str, problem: str) -> None:
        super().__init__(f"{volume}: {problem}")
        self.volume = volume


class ContentError(CargoholdError):
    """Content failed verification: wrong digest, wrong size, or truncated."""


class UnreadableContentError(ContentError):
    """A stored index or manifest that a reachability walk must follow cannot be read."""

    def __init__(self, digest: object, problem: CargoholdError) -> None:
        super().__init__(f"cannot read {digest} ({problem})")
        self.digest = digest


class NotFoundError(CargoholdError, LookupError):
    """A named image, namespace or blob does not exist."""


class AmbiguousImageError(CargoholdError, LookupError):
    """A digest prefix begins the target digests of several images; the message lists them."""


class AlreadyExistsError(CargoholdError):
    """A name is already taken and the caller did not ask to replace it."""


class StoreFormatError(CargoholdError):
    """The store on disk was written by a newer cargohold, or is not a cargohold store."""


class SyncListError(CargoholdError, ValueError):
    """A sync list (text or skopeo-sync YAML) cannot be read; the message names the file and
    the line or repository."""


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


class DamagedBlobError(ContentError):
    """The store's own copy of a blob is not what was committed: not a regular file, or not
    the bytes its digest names. The message names the repair, since nothing but the user can
    make it (an import skips blobs the store claims to have)."""

    def __init__(self, digest: object, problem: str) -> None:
        super().__init__(
            f"blob {digest} in the store {problem}: the store's copy is damaged;"
            " 'cargohold image check --verify' lists the images it breaks; import them again"
            f" with --force, or remove it with 'cargohold content rm --force {digest}' and"
            " import or pull them again"
        )
        self.digest = digest


class SignatureError(CargoholdError):
    """An image carries no signature that verifies with the given key (for ``image verify``
    and ``image import --require-signature``)."""


class InvalidKeyError(SignatureError, ValueError):
    """A public key file cannot be used: not PEM, or a key type cosign does not sign with."""


class OutputPathError(CargoholdError):
    """An export's output path cannot be written as asked (a directory where a file is
    wanted, a socket, a symlink to nothing, a terminal, a file this user may not write)."""


class CredentialsError(CargoholdError, ValueError):
    """Credentials given by the user, or read from a docker config file, cannot be used."""


class RegistryError(CargoholdError):
    """A registry operation failed; the message names the registry, repository and digest.

    The attributes let callers act on the failure without parsing the message: ``code`` is the
    registry's OCI error code (``MANIFEST_UNKNOWN``, ``DENIED``…) when it sent one, ``digest``
    the digest the failed operation was about, when it named content by digest (the registry
    client fills it from the reference; this module cannot parse digests, which would make it
    import the model that imports it).
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        digest: object = None,
    ) -> None:
        super().__init__(message)
        self.registry = registry
        self.repository = repository
        self.reference = reference
        self.code = code
        self.status_code = status_code
        self.digest = digest


class AuthenticationError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class ForeignRealmError(AuthenticationError):
    """The registry's token service is at another origin, so its credentials were not sent
    there, and anonymous access was not enough."""


class AccessDeniedError(RegistryError):
    """The registry knows who we are and refuses the operation (HTTP 403)."""


class RegistryNotFoundError(RegistryError, NotFoundError):
    """The repository, manifest, blob or upload session does not exist (HTTP 404)."""


class RegistryContentError(RegistryError, ContentError):
    """Content from (or refused by) the registry does not match its digest or size."""


class RegistryServerError(RegistryError):
    """The registry failed (5xx) or throttled us (429), still after the retries."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RegistryConnectionError(RegistryError):
    """The registry could not be reached, or the connection broke, still after the retries."""


class RegistryTooSlowError(RegistryConnectionError):
    """A transfer moved less than the client's speed limit for its speed time, and was
    abandoned (not retried: a registry that trickles would only trickle again)."""


class RegistryProtocolError(RegistryError):
    """The registry answered something the Distribution API does not allow."""


class BelowSpeedFloor(Exception):
    """Inside the registry client: a body's progress fell below the floor (raised by the
    speed meter, also inside an upload's body); turned into :class:`RegistryTooSlowError`."""


class TransferDropped(Exception):
    """Inside the registry client: a download broke off after *offset* bytes of the body; a
    blob download resumes there, anything else is retried or becomes
    :class:`RegistryConnectionError`."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


class MetadataError(CargoholdError, sqlite3.Error):
    """The store's metadata database (SQLite) failed: a damaged file, a full disk, an I/O
    error. Also a :class:`sqlite3.Error`, so code that caught SQLite's errors still does."""


class StoreLockedError(MetadataError):
    """Another process held the store's write lock for longer than the lock timeout."""

    def __init__(self) -> None:
        super().__init__("the store is locked by another cargohold process; gave up waiting")


class MissingContentError(NotFoundError):
    """A descriptor points at content that is not there (in the store, a registry's answer, or
    an archive)."""


class NoMatchingPlatformError(NotFoundError):
    """An index has no manifest for the platforms asked for."""


class ArchiveMissingContentError(MissingContentError, InvalidArchiveError):
    """An archive's descriptor points at content the archive does not hold (nor the importing
    namespace): the archive is incomplete."""


class ArchiveNoMatchingPlatformError(NoMatchingPlatformError, InvalidArchiveError):
    """None of an archive's images is for the platforms asked for."""


class InvalidInventoryError(CargoholdError):
    """An inventory is damaged (its body does not match its digest), malformed, of a format
    version this cargohold does not read, or not an inventory at all."""


class IncompleteDeltaError(NotFoundError):
    """A delta archive omits blobs the importing namespace does not hold: the archive was made
    for a receiver that has more than this one."""


class TransferCancelled(Exception):
    """Another transfer of the same pull or push failed, or the command was interrupted: this
    one stops at its next chunk."""


class ServeConfigError(CargoholdError, ValueError):
    """``serve`` cannot start as asked: an address it cannot use, an unreadable htpasswd file or
    TLS key, credentials that would cross the network in clear text."""


class ApiError(Exception):
    """Inside the registry server: the answer to one request, an HTTP *status* and one of the
    Distribution spec's error codes as *code* (``MANIFEST_UNKNOWN``, ``DIGEST_INVALID``...); the
    server sends it as the spec's JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
