"""The store and its verbs: what the CLI does, as a library.

A :class:`Store` is a root directory (blobs on disk, metadata in SQLite, a version file) seen
through one namespace (:class:`~cargohold.operations.context.StoreContext`). Names and
namespaces are kept here; the verbs that move images in and out (import, export, pull, push,
sync) are a layer below it (:class:`~cargohold.operations.transfer_verbs.TransferVerbs`), and
each other verb lives in a module of its own (inspecting, content, referrers, verifying),
imported when it is first used so that a command pays only for what it runs. Each verb owns
the ordering that makes it safe: blobs are committed and synced before any name points at
them, and names change in one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from ..errors import (
    AlreadyExistsError,
    AmbiguousImageError,
    CargoholdError,
    InUseError,
    InvalidLabelError,
    InvalidReferenceError,
    NotFoundError,
)
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.platforms import Platform, PlatformChoice, PlatformMatcher
from ..oci.references import Reference, check_name_digest
from ..oci.referrers import Referrer
from ..storage.gc import RESUMABLE_MAX_AGE, GcResult, ResumableImport, collect
from ..storage.metadata import ImageRecord, Namespace
from .context import StoreContext, check_namespace, digest_query, image_target, renamed
from .results import (
    CheckResult,
    ContentInfo,
    ImageInfo,
    ImageInspection,
    RemoveResult,
)
from .transfer_verbs import TransferVerbs

if TYPE_CHECKING:
    from .inventory import InventoryResult
    from .verifying import VerifiedImage

#: containerd's limit on a label's key and value together.
MAX_LABEL_BYTES = 4096


class Store(TransferVerbs):
    """A cargohold store at *root*, seen through *namespace*; *mode* ``"read"`` opens an
    existing store without creating or changing anything (see :class:`StoreContext`).
    Import, export, pull, push and sync come from :class:`TransferVerbs`."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names ---------------------------------------------------------------------------

    def list_images(self, filters: Sequence[str] = ()) -> list[ImageInfo]:
        """The namespace's images, those matching containerd-style *filters* (OR-ed; commas
        inside one filter AND-ed), by name."""
        from .filters import ImageFilter

        selected = ImageFilter.parse(filters)
        host = PlatformMatcher.host()
        known: dict[Digest, ImageInfo] = {}  # many names often share one image
        infos = []
        for record in self.meta.list_images(self.namespace):
            if not selected.matches(record):
                continue
            shared = known.get(record.digest)
            if shared is None or shared.record.size != record.size:
                shared = known[record.digest] = self.info(record, host)
            infos.append(
                ImageInfo(
                    record, shared.size, shared.platforms, shared.stored_platforms, shared.referrers
                )
            )
        return infos

    def list_names(self, filters: Sequence[str] = ()) -> list[str]:
        """Just the names (``image ls -q``): no content is read."""
        from .filters import ImageFilter

        selected = ImageFilter.parse(filters)
        return [r.name for r in self.meta.list_images(self.namespace) if selected.matches(r)]

    def info(self, record: ImageRecord, matcher: PlatformMatcher) -> ImageInfo:
        """Size (of the manifest *matcher* prefers, as ctr counts it), the platforms its index
        lists, those the store holds whole (a default import takes only this host's), and how
        many referrers (signatures, attestations, SBOMs) are kept for it."""
        from .referrers import referrer_closure

        graph = walk(
            self.blobs, image_target(record), PlatformMatcher.all(), record.name, missing_ok=True
        )
        size = record.size
        chosen = graph.preferred(matcher)
        if chosen is not None:
            if chosen.descriptor.digest != record.digest:
                size += chosen.descriptor.size
            size += sum(d.size for d in chosen.manifest.blobs)
        stored = {
            m.platform
            for m in graph.manifests
            if m.platform is not None and all(b.digest in graph.blobs for b in m.manifest.blobs)
        }
        referrers = {r.digest for r in referrer_closure(self, graph.documents)}
        return ImageInfo(
            record,
            size,
            sorted(graph.platforms, key=Platform.sort_key),
            sorted(stored, key=Platform.sort_key),
            len(referrers),
        )

    def tag(self, source: str, targets: Sequence[str], force: bool = False) -> list[str]:
        """Give the image *source* names further names; existing names move only with *force*."""
        names = [str(Reference.parse(t)) for t in targets]
        with self.meta.transaction() as db:
            record = self.resolve(source)
            for name in names:
                check_name_digest(name, record.digest)
                existing = self.meta.get_image(self.namespace, name)
                if existing is not None and existing.digest != record.digest and not force:
                    raise AlreadyExistsError(
                        f"image {name} already exists (use --force to move it)"
                    )
            for name in names:
                self.meta.put_image(db, self.namespace, renamed(record, name))
        return names

    def remove(
        self, refs: Sequence[str], collect_garbage: bool = True, force: bool = False
    ) -> RemoveResult:
        """Remove names, then the content no image needs any more; unknown names are reported
        after the others are gone.

        A ref that is no stored name but an image's target digest (or a unique prefix of it,
        as :meth:`resolve` takes) removes that image's name; when the image has several names
        that is refused, naming them, unless *force* removes them all (docker's ``rmi`` of an
        ID with several tags does the same).
        """
        result = RemoveResult()
        with self.meta.transaction() as db:
            for ref in refs:
                names = self._names_to_remove(ref, force)
                removed = [n for n in names if self.meta.delete_image(db, self.namespace, n)]
                result.removed.extend(removed)
                if not removed:
                    result.missing.append(ref)
        if collect_garbage and result.removed:
            result.gc = self.gc()
        return result

    def _names_to_remove(self, ref: str, force: bool) -> list[str]:
        """The names *ref* removes: itself when it is a name (stored or not: an unknown name
        is reported missing), else the names of the image whose digest it is (none when no
        image's is)."""
        if digest_query(ref) is None:
            return [str(Reference.parse(ref))]
        with contextlib.suppress(InvalidReferenceError):
            name = str(Reference.parse(ref))
            if self.meta.get_image(self.namespace, name) is not None:
                return [name]  # a stored name wins over a digest prefix
        try:
            names = [record.name for record in self.by_digest(ref)]
        except NotFoundError:
            return []
        if len(names) > 1 and not force:
            raise AmbiguousImageError(
                f"image {ref} has several names: {', '.join(names)}"
                " (remove them by name, or all with --force)"
            )
        return names

    def gc(
        self,
        dry_run: bool = False,
        resumable: bool = False,
        resumable_max_age: float = RESUMABLE_MAX_AGE,
    ) -> GcResult:
        """Collect garbage; *resumable* also removes every stopped import of a split archive
        (else those younger than *resumable_max_age* seconds are kept, to be resumed)."""
        return collect(
            self.meta,
            self.blobs,
            self.leases,
            dry_run=dry_run,
            resumable_max_age=resumable_max_age,
            remove_resumable=resumable,
        )

    def resumable_imports(self) -> list[ResumableImport]:
        """The stopped imports of split archives whose staging is kept to resume them."""
        return [
            ResumableImport(lease_id, archive, updated, self.blobs.staging_bytes(lease_id))
            for lease_id, (archive, updated) in sorted(self.meta.resumable_leases().items())
        ]

    def label(
        self, ref: str, changes: Mapping[str, str], replace_all: bool = False
    ) -> dict[str, str]:
        """Set labels (an empty value removes the key); returns the image's labels after."""
        for key, value in changes.items():
            _check_label(key, value)
        with self.meta.transaction() as db:
            record = self.resolve(ref)
            labels = {} if replace_all else dict(record.labels)
            for key, value in changes.items():
                if value:
                    labels[key] = value
                else:
                    labels.pop(key, None)
            self.meta.set_labels(db, self.namespace, record.name, labels)
        return labels

    # -- inspection ----------------------------------------------------------------------

    def inspect(self, ref: str, platforms: Sequence[str | Platform] = ()) -> ImageInspection:
        """The image's whole graph, and the config of each selected manifest (see
        :func:`cargohold.operations.inspecting.inspect`)."""
        from . import inspecting

        return inspecting.inspect(self, ref, platforms)

    def raw_document(
        self, ref: str, which: Literal["index", "manifest", "config"], platform: str | None = None
    ) -> bytes:
        """The stored bytes of the image's index, manifest or config (see
        :func:`cargohold.operations.inspecting.raw_document`)."""
        from . import inspecting

        return inspecting.raw_document(self, ref, which, platform)

    def check(
        self,
        refs: Sequence[str] = (),
        *,
        platforms: PlatformChoice = (),
        verify: bool = False,
    ) -> list[CheckResult]:
        """Whether each image's content is all there, and with *verify* intact (see
        :func:`cargohold.operations.inspecting.check`)."""
        from . import inspecting

        return inspecting.check(self, refs, platforms=platforms, verify=verify)

    # -- content -------------------------------------------------------------------------

    def content(self) -> list[ContentInfo]:
        """Every blob of the store, with the images (of every namespace) that use it."""
        from . import content

        return content.content_list(self)

    def read_content(self, digest: str | Digest, verify: bool = False) -> BinaryIO:
        """An open reader of a blob's bytes (see
        :func:`cargohold.operations.content.read_content`)."""
        from . import content

        return content.read_content(self, digest, verify)

    def remove_content(self, digests: Sequence[str | Digest], force: bool = False) -> RemoveResult:
        """Delete blobs (see :func:`cargohold.operations.content.remove_content`)."""
        from . import content

        return content.remove_content(self, digests, force)

    def write_inventory(self, out: str | Path | BinaryIO, sync: bool = False) -> InventoryResult:
        """Write what this namespace holds, for a sender's ``export --against`` (see
        :func:`cargohold.operations.inventory.write_inventory`)."""
        from . import inventory

        return inventory.write_inventory(self, out, sync)

    # -- namespaces ----------------------------------------------------------------------

    def namespaces(self) -> list[Namespace]:
        return self.meta.namespaces()

    def create_namespace(self, name: str) -> None:
        check_namespace(name)
        with self.meta.transaction() as db:
            if not self.meta.create_namespace(db, name):
                raise AlreadyExistsError(f"namespace {name} already exists")

    def remove_namespace(self, name: str) -> None:
        """Remove an empty namespace; one that still has images is refused."""
        with self.meta.transaction() as db:
            count = self.meta.count_images(name)
            if count:
                images = "1 image" if count == 1 else f"{count} images"
                them = "it" if count == 1 else "them"
                raise InUseError(f"namespace {name} still has {images}; remove {them} first")
            if not self.meta.delete_namespace(db, name):
                raise NotFoundError(f"namespace {name} not found")
            self.meta.release_namespace(db, name)

    # -- referrers and signatures --------------------------------------------------------

    def referrers(self, subject: str | Digest, artifact_type: str | None = None) -> list[Referrer]:
        """The referrers kept for *subject* (a digest, or an image's name) in this namespace,
        cosign's attachments included; a server's referrers API answers from this (see
        :func:`cargohold.operations.referrers.referrers_response` for the index it serves)."""
        from .referrers import list_referrers

        digest = subject if isinstance(subject, Digest) else _subject_digest(self, subject)
        return list_referrers(self, digest, artifact_type)

    def verify(
        self, refs: Sequence[str], key: str | Path, identity: str | None = None
    ) -> list[VerifiedImage]:
        """Check the images *refs* for a cosign signature by the public key file *key*, offline
        (see :func:`cargohold.operations.verifying.verify`)."""
        from .verifying import verify

        return verify(self, refs, key, identity)


def _check_label(key: str, value: str) -> None:
    """containerd's label limits: a key is not empty, and key plus value fit in 4 KiB."""
    if not key or "=" in key:
        raise InvalidLabelError(f"invalid label key {key!r}")
    if len(key.encode()) + len(value.encode()) > MAX_LABEL_BYTES:
        raise InvalidLabelError(f"label {key!r}: key and value exceed {MAX_LABEL_BYTES} bytes")


def _subject_digest(ctx: StoreContext, subject: str) -> Digest:
    """A digest as given, else the target digest of the image *subject* names."""
    try:
        return Digest.parse(subject)
    except CargoholdError:
        return ctx.resolve(subject).digest
