"""The one commit path of import and pull: staged blobs into the store, then names.

An import and a pull stage verified blobs under a lease and end the same way: the blobs the
new images need are leased, renamed into place and synced, and only then, in one transaction,
does the namespace record what it now holds and do the names move. A crash before that
transaction leaves no name pointing at anything, and gc collects what was committed.

A name that moved may have left content no image uses any more: after the transaction, the
same collection ``image rm`` runs removes it, so replacing an image never piles up blobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import CargoholdError
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.mediatypes import Descriptor
from ..oci.platforms import PlatformMatcher
from ..oci.reachability import role_of
from ..oci.referrers import Referrer
from ..storage.gc import GcResult, collect
from ..storage.metadata import ImageRecord
from ..storage.staged import StagedBlob
from .context import StoreContext, image_target
from .results import Action, ImportedImage


@dataclass(frozen=True, slots=True)
class NewImage:
    """A name an import or pull gives an image, and what decides whether it moves."""

    name: str
    target: Descriptor
    #: The newest config ``created`` of the image: an older image does not replace a newer.
    created: str | None = None
    #: Manifests of its index left out (``--skip-missing``): the image is partial.
    skipped: int = 0


@dataclass(slots=True)
class Committed:
    """What a commit did: each name's outcome, and the blobs written or already there."""

    images: list[ImportedImage] = field(default_factory=list)
    blobs_written: int = 0
    bytes_written: int = 0
    bytes_deduplicated: int = 0
    warnings: list[str] = field(default_factory=list)
    #: The collection run after a name moved off another image (None when none moved).
    gc: GcResult | None = None


def commit(
    ctx: StoreContext,
    lease_id: str,
    staged: Mapping[Digest, StagedBlob],
    needed: Mapping[Digest, Descriptor],
    images: Sequence[NewImage],
    *,
    force: bool,
    referrers: Sequence[Referrer] = (),
) -> Committed:
    """Commit the *needed* blobs (those *staged*; the rest the namespace holds already) and
    then the names of *images*. Without *force* a name keeps an image as new as its new one
    or newer (``kept``); a pull passes *force*, as the registry's answer is the image wanted.
    When a name moved (``updated``), what the old image alone used is collected. *referrers*
    (whose content is among *needed*) are recorded for their subjects in the same
    transaction."""
    done = Committed()
    ctx.meta.add_to_lease(lease_id, list(needed))
    order = children_first(needed)
    staged_blobs = (staged.get(digest) for digest in order)
    written = iter(ctx.blobs.commit_many(b for b in staged_blobs if b is not None))
    for digest in order:
        desc = needed[digest]
        if digest in staged and next(written):
            done.blobs_written += 1
            done.bytes_written += desc.size
        else:
            done.bytes_deduplicated += desc.size
    ctx.blobs.sync()
    with ctx.meta.transaction() as db:
        ctx.meta.hold(db, ctx.namespace, needed)
        ctx.meta.put_referrers(db, ctx.namespace, referrers)
        for image in images:
            action = _action(ctx, image, force)
            if action in ("created", "updated"):
                ctx.meta.put_image(db, ctx.namespace, _record(ctx, image))
            elif action == "kept":
                done.warnings.append(
                    f"{image.name}: kept the stored image, the archive's is not newer"
                    " (use --force to replace it)"
                )
            done.images.append(ImportedImage(image.name, image.target.digest, action))
            if image.skipped:
                some = (
                    "1 manifest of its index was"
                    if image.skipped == 1
                    else f"{image.skipped} manifests of its index were"
                )
                done.warnings.append(f"{image.name}: imported partially, {some} not in the archive")
    if any(image.action == "updated" for image in done.images):
        done.gc = _collect_replaced(ctx, done.warnings)
    return done


def children_first(needed: Mapping[Digest, Descriptor]) -> list[Digest]:
    """The order blobs are committed in: configs and layers, then manifests, then indexes
    (nested ones innermost first). A walk lists parents before children; committed in that
    order, a reader (``image check`` of another name whose index lists the same manifest)
    could see a manifest whose config is not there yet."""
    leaves = [d for d, desc in needed.items() if role_of(desc.media_type) == "blob"]
    manifests = [d for d, desc in needed.items() if role_of(desc.media_type) == "manifest"]
    indexes = [d for d, desc in needed.items() if role_of(desc.media_type) == "index"]
    return [*leaves, *manifests, *reversed(indexes)]


def _collect_replaced(ctx: StoreContext, warnings: list[str]) -> GcResult | None:
    """The collection ``image rm`` runs, after the names' transaction has committed.

    It marks from every image of every namespace and every live lease (this commit's among
    them), so nothing the new image or any other name uses can go. The names have moved
    already, so a collection that cannot run is a warning, not the command's failure.
    """
    try:
        return collect(ctx.meta, ctx.blobs, ctx.leases)
    except CargoholdError as exc:
        warnings.append(f"content the replaced image used was not collected: {exc}")
        return None


def _record(ctx: StoreContext, image: NewImage) -> ImageRecord:
    """The name's new record; labels are the name's, kept across updates."""
    existing = ctx.meta.get_image(ctx.namespace, image.name)
    return ImageRecord(
        image.name,
        image.target.media_type,
        image.target.digest,
        image.target.size,
        dict(image.target.annotations),
        dict(existing.labels) if existing else {},
        partial=bool(image.skipped),
    )


def _action(ctx: StoreContext, image: NewImage, force: bool) -> Action:
    existing = ctx.meta.get_image(ctx.namespace, image.name)
    if existing is None:
        return "created"
    if existing.digest == image.target.digest:
        return "unchanged"
    if force:
        return "updated"
    old = walk(
        ctx.blobs, image_target(existing), PlatformMatcher.all(), existing.name, missing_ok=True
    )
    # Equal is not newer: an image replaces another only when it is strictly newer, so two
    # images of the same ``created`` do not flip a name back and forth. Without a ``created``
    # on either side there is no order to go by, and the archive asked for wins, as before.
    if old.created and image.created and image.created <= old.created:
        return "kept"
    return "updated"
