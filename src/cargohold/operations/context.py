"""Opening a store's root in a namespace, and what every operation shares: the lease, the
rule for reusing the store's copy of a blob, the platform selection."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ..defaults import DEFAULT_NAMESPACE
from ..errors import (
    AmbiguousImageError,
    ContentError,
    InvalidReferenceError,
    NoStoreError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreFormatError,
)
from ..oci.digests import ALGORITHMS, Digest
from ..oci.mediatypes import Descriptor
from ..oci.platforms import ALL_PLATFORMS, Platform, PlatformChoice, PlatformMatcher
from ..oci.references import Reference
from ..progress import Progress
from ..storage.blobs import BlobStore
from ..storage.gc import held_content
from ..storage.leases import Leases
from ..storage.metadata import ImageRecord, MetadataStore, StoreMode

#: The on-disk format this version writes; a store with a higher number is refused.
STORE_FORMAT: Final = 3
VERSION_FILE: Final = "VERSION"
#: Most data accepted after a tar's end-of-archive marker (writers pad to a record size).
MAX_TRAILING_BYTES: Final = 64 << 20
#: Stored blobs up to this size are re-hashed before an import lets them stand for its own
#: (documents are this small, and a damaged document would decide what else is read).
VERIFY_REUSED_BELOW: Final = 1 << 20
#: The fewest hex digits of an image's target digest that name it (``image inspect 5e0b``).
MIN_DIGEST_PREFIX: Final = 4


def default_root() -> Path:
    """``$CARGOHOLD_ROOT``, else ``/var/lib/cargohold`` for root, else the user data dir."""
    env = os.environ.get("CARGOHOLD_ROOT")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/cargohold")
    import platformdirs

    return Path(platformdirs.user_data_dir("cargohold", appauthor=False))


class StoreContext:
    """A store's root opened in one namespace: the blobs, the metadata and the leases every
    operation works on. :class:`~cargohold.operations.store.Store` is this plus its verbs.

    With *mode* ``"write"`` (the default) the store is created if it does not exist, and this
    user must be able to write it. With ``"read"`` nothing is created or changed, a user who
    may only read the store can use it, and the operations that write are refused.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        mode: StoreMode = "write",
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.namespace = namespace
        self.mode: StoreMode = mode
        check_namespace(namespace)
        if mode == "write":
            check_writable(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
        elif not (self.root / "metadata.db").is_file():
            raise NoStoreError(f"no cargohold store at {self.root}")
        found = check_version(self.root, mode)
        self.blobs = BlobStore(self.root / "content")
        self.meta = MetadataStore(self.root / "metadata.db", mode)
        self.leases = Leases(self.root / "leases")
        if found < STORE_FORMAT and mode == "write":
            self.upgrade(found)

    def upgrade(self, found: int = 1) -> None:
        """Bring an older store to this format, then write the new format number.

        Format 1 did not keep what each namespace holds: it is recorded as the blobs its
        images reach. A damaged document is passed over (what is below it is not held, so the
        next import reads it again); a crash before the number is written repeats the work,
        which sets the same rows. Format 3 added the ``referrers`` table, created empty when
        the metadata is opened (an older store kept no referrers); the number goes up so that
        an older cargohold, whose collection would sweep them, refuses the store.
        """
        if found >= 2:
            write_version(self.root)
            return
        present = {digest for digest, _, _ in self.blobs.iter_blobs()}
        with self.meta.transaction() as db:
            for namespace, digests in held_content(
                self.meta, self.blobs, present, skip_unreadable=True
            ).items():
                self.meta.set_holdings(db, namespace, digests)
        write_version(self.root)

    def close(self) -> None:
        self.meta.close()

    def resolve(self, ref: str) -> ImageRecord:
        """The stored image a user's name means: a name (short forms accepted), a name pinned
        to the digest its image has (``app@sha256:...`` for the stored ``app:1``), or the
        image's target digest, whole or as a unique prefix of its hex (see :meth:`by_digest`).

        A stored name wins over a digest prefix that is also a valid name (``5e0ba3e7ce5e``),
        as in docker. Several names of one image: the first by name stands for it.
        """
        reference = _parse_or_none(ref)
        if reference is not None:
            record = self.meta.get_image(self.namespace, str(reference))
            if record is None and reference.digest is not None:
                record = self._pinned(reference)
            if record is not None:
                return record
        if digest_query(ref) is not None:
            return self.by_digest(ref)[0]
        if reference is None:
            Reference.parse(ref)  # not a name and not a digest: say why as a name
        raise NotFoundError(f"image {ref} not found in namespace {self.namespace}")

    def _pinned(self, reference: Reference) -> ImageRecord | None:
        """A stored name of *reference*'s repository whose image has *reference*'s digest."""
        for record in self.meta.list_images(self.namespace):
            if record.digest == reference.digest:
                stored = _parse_or_none(record.name)
                if stored is not None and stored.repository == reference.repository:
                    return record
        return None

    def by_digest(self, ref: str) -> list[ImageRecord]:
        """The names (sorted) of the one image whose target digest *ref* is or begins:
        ``sha256:<hex>``, or at least :data:`MIN_DIGEST_PREFIX` hex digits with or without
        ``sha256:``. NotFoundError when none, AmbiguousImageError when the prefix begins
        the digests of several images."""
        algorithm, prefix = digest_query(ref) or ("", "-")  # "-" begins no digest
        records = [
            r
            for r in self.meta.list_images(self.namespace)
            if r.digest.hex.startswith(prefix) and algorithm in ("", r.digest.algorithm)
        ]
        digests = sorted({str(r.digest) for r in records})
        if not digests:
            raise NotFoundError(f"image {ref} not found in namespace {self.namespace}")
        if len(digests) > 1:
            raise AmbiguousImageError(
                f"{ref} is the start of the digests of several images: {', '.join(digests)}"
            )
        return sorted(records, key=lambda r: r.name)

    def reusable(self, lease_id: str, digest: Digest, size: int) -> bool:
        """Whether an import or pull into this namespace may let the store's copy of *digest*
        stand for the *size* bytes it was offered, instead of reading them.

        Only when this namespace holds the blob (it received and verified those bytes before:
        content is stored once, but a namespace cannot claim what it never had) and the copy
        looks intact: its size matches, and a small blob (documents among them) re-hashes to
        its digest. Otherwise the offered bytes are read, verified and replace the store's copy.
        When it says yes, the import's lease protects the blob from collection.
        """
        if not self.meta.holds(self.namespace, digest) or self.blobs.regular_size(digest) != size:
            return False
        # Leased only now (a transaction costs more than a tiny member; what is read instead is
        # leased with the plan before it is committed), then looked at again, holdings too: a
        # gc may have swept it, or released it, just before.
        self.meta.add_to_lease(lease_id, [digest])
        if not self.meta.holds(self.namespace, digest) or self.blobs.regular_size(digest) != size:
            return False
        if size > VERIFY_REUSED_BELOW:
            return True
        try:
            return self.blobs.verify(digest)
        except (NotFoundError, ContentError):
            return False  # removed by hand since, or not a regular file any more

    @contextmanager
    def lease(self) -> Iterator[str]:
        """Protects an import's blobs from collection until its names are committed."""
        lease_id = os.urandom(16).hex()
        fd = self.leases.hold(lease_id)
        failed = True
        try:
            self.meta.create_lease(lease_id)
            yield lease_id
            failed = False
        finally:
            # After a failure (a full disk, say) the cleanup may fail too; the first error is
            # the one to report, and a lease record left behind is dead and collected by gc.
            # Staging goes first: on a full disk, that frees the room the deletion needs.
            self.blobs.remove_staging(lease_id)
            with contextlib.suppress(*((sqlite3.Error, OSError) if failed else ())):
                try:
                    self.meta.end_lease(lease_id)
                finally:
                    self.leases.release(lease_id, fd)


def digest_query(ref: str) -> tuple[str, str] | None:
    """``(algorithm or "", hex prefix)`` when *ref* can stand for an image's target digest:
    ``sha256:<hex>`` (whole or a prefix) or bare hex of at least :data:`MIN_DIGEST_PREFIX`
    digits (docker takes any unique prefix of an image ID; a shorter one would too easily
    be a name someone meant)."""
    algorithm, colon, prefix = ref.rpartition(":")
    if colon and algorithm not in ALGORITHMS:
        return None
    if len(prefix) < MIN_DIGEST_PREFIX or not re.fullmatch(r"[a-f0-9]+", prefix):
        return None
    if len(prefix) > ALGORITHMS.get(algorithm, max(ALGORITHMS.values())):
        return None
    return algorithm, prefix


def _parse_or_none(ref: str) -> Reference | None:
    try:
        return Reference.parse(ref)
    except InvalidReferenceError:
        return None


def image_target(record: ImageRecord) -> Descriptor:

    return Descriptor(record.media_type, record.digest, record.size, record.annotations)


def renamed(record: ImageRecord, name: str) -> ImageRecord:
    return ImageRecord(
        name,
        record.media_type,
        record.digest,
        record.size,
        dict(record.annotations),
        dict(record.labels),
        partial=record.partial,
    )


def platform_matcher(platforms: PlatformChoice, default_all: bool = False) -> PlatformMatcher:
    """The matcher a verb's *platforms* mean (``"all"``, some, or none: *default_all* says
    whether the verb's default is every platform or this host's)."""
    if platforms == ALL_PLATFORMS:
        return PlatformMatcher.all()
    if platforms:
        return PlatformMatcher.only(
            [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
        )
    return PlatformMatcher.all() if default_all else PlatformMatcher.host()


@contextmanager
def finishing(progress: Progress) -> Iterator[None]:
    try:
        yield
    finally:
        progress.finish()


def check_namespace(namespace: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,74}[A-Za-z0-9])?", namespace):
        raise NotFoundError(f"invalid namespace {namespace!r}")


def check_writable(root: Path) -> None:
    """A command that writes fails at once, in one line, when this user cannot write the
    store (another user's store, a read-only mount), before it has done any work."""
    for path in (root, root / "metadata.db", root / "content", root / "leases"):
        if path.exists() and not os.access(path, os.W_OK):
            raise ReadOnlyStoreError(f"store {root} is read-only for this user")


def check_version(root: Path, mode: StoreMode = "write") -> int:
    """The store's format number. Refuses a store of a newer format, or whose VERSION is not a
    format number; a writer marks a new store with this version's format (a reader leaves a
    store as it is)."""
    version_file = root / VERSION_FILE
    try:
        text = version_file.read_text().strip()
    except FileNotFoundError:
        if mode == "read":
            raise StoreFormatError(f"{version_file} is missing") from None
        if (
            any(not p.name.startswith(".") for p in root.iterdir())
            and not (root / "metadata.db").exists()
        ):
            raise StoreFormatError(f"{root} is not empty and is not a cargohold store") from None
        write_version(root)
        return STORE_FORMAT
    if not re.fullmatch(r"[1-9][0-9]{0,8}", text):
        raise StoreFormatError(f"{version_file}: unreadable store format {text[:20]!r}")
    found = int(text)
    if found > STORE_FORMAT:
        raise StoreFormatError(
            f"{root} was written by a newer cargohold (store format {found}, this version"
            f" reads up to {STORE_FORMAT}); upgrade cargohold to use it"
        )
    return found


def write_version(root: Path) -> None:
    """Write the format number this version writes, atomically."""
    tmp = root / f".{VERSION_FILE}.{os.urandom(16).hex()}"
    tmp.write_text(f"{STORE_FORMAT}\n")
    os.replace(tmp, root / VERSION_FILE)
