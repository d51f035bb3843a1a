"""Garbage collection: delete the blobs no image and no live import needs.

Reachability is computed from the image graph itself (image → index → manifests → config and
layers, every platform), so there are no reference labels to keep in sync with the content.
The sweep runs inside the metadata store's write transaction: an import that protects a blob
with its lease either commits before the sweep starts, or waits and then sees the sweep's
result, so a blob can never vanish between an import's "already stored" check and its commit.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final

from ..errors import CargoholdError, UnreadableContentError
from ..oci.digests import Digest
from ..oci.mediatypes import Descriptor
from ..oci.reachability import Reachability
from .blobs import BlobStore
from .leases import Leases
from .metadata import MetadataStore

#: How long the staging of a resumable import (a split archive stopped at a bad volume) is
#: kept after its last progress, unless ``content gc --resumable`` removes it sooner.
RESUMABLE_MAX_AGE: Final = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ResumableImport:
    """The staging of a split archive's import that stopped, kept so a re-run resumes it."""

    lease_id: str
    archive: str
    updated_at: float
    staged_bytes: int


@dataclass(slots=True)
class GcResult:
    """What a collection removed (or, with dry_run, would remove)."""

    removed: list[tuple[Digest, int]] = field(default_factory=list)
    leases_removed: int = 0
    #: Resumable imports' staging removed (or that would be), and kept.
    resumable_removed: list[ResumableImport] = field(default_factory=list)
    resumable_kept: list[ResumableImport] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.removed)


def collect(
    meta: MetadataStore,
    blobs: BlobStore,
    leases: Leases,
    dry_run: bool = False,
    resumable_max_age: float = RESUMABLE_MAX_AGE,
    remove_resumable: bool = False,
) -> GcResult:
    """Mark from every image of every namespace and every live lease, then sweep.

    What each namespace holds is recomputed on the way (the blobs its images reach): content a
    namespace received but no longer names is released, as containerd's collection does.
    A resumable import's lease counts as live while it is younger than *resumable_max_age*
    seconds (since its last progress), unless *remove_resumable*.
    """
    result = GcResult()
    with meta.transaction() as db:
        kept_for = 0.0 if remove_resumable else resumable_max_age
        live = _live_leases(meta, blobs, leases, result, kept_for)
        if not dry_run:
            for lease_id in _removed_leases(meta, live):
                meta.delete_lease(db, lease_id)
                blobs.remove_staging(lease_id)
                leases.path(lease_id).unlink(missing_ok=True)
            for name in blobs.staging_names():
                if name not in live:
                    blobs.remove_staging(name)
            for path in leases.orphans(set(live)):
                path.unlink(missing_ok=True)
        # One directory scan first: the walk then asks it, not the disk, whether a blob is
        # there. A blob committed after the scan is never in the sweep, so it cannot be lost.
        present = {digest: size for digest, size, _ in blobs.iter_blobs()}
        try:
            reached, reachable = marked(meta, blobs, present, live)
        except UnreadableContentError as exc:
            raise CargoholdError(
                f"garbage collection stopped, nothing was removed: {exc}"
            ) from None
        if not dry_run:
            for namespace, digests in reached.items():
                meta.set_holdings(db, namespace, {d for d in digests if d in present})
                # a referrer goes with its subject: its row now, its blobs in this sweep
                meta.prune_referrers(db, namespace, digests)
        result.removed = [(d, size) for d, size in present.items() if d not in reachable]
        if not dry_run and result.removed:
            blobs.delete_many([digest for digest, _ in result.removed])
    return result


def marked(
    meta: MetadataStore,
    blobs: BlobStore,
    present: dict[Digest, int],
    live: list[str],
    *,
    skip_unreadable: bool = False,
) -> tuple[dict[str, set[Digest]], set[Digest]]:
    """The mark of a collection: what each namespace reaches (absent blobs included), and
    every present blob to keep (those, what the *live* leases hold, and what leased documents
    list). ``cargohold info`` asks the same, read-only, for what gc would reclaim."""
    reach = Reachability(blobs, present.__contains__, skip_unreadable=skip_unreadable)
    reached = reach_namespaces(meta, reach)
    leased = {Digest.parse(d) for d in meta.leased_digests(live)}
    keep = reach.closure_of_blobs(_leased_documents(blobs, leased, present))
    for digests in reached.values():
        keep |= {d for d in digests if d in present}
    return reached, keep


def live_leases(
    meta: MetadataStore, blobs: BlobStore, leases: Leases, kept_for: float = RESUMABLE_MAX_AGE
) -> list[str]:
    """The leases whose content a collection now would keep (see :func:`collect`)."""
    return _live_leases(meta, blobs, leases, GcResult(), kept_for)


def _leased_documents(
    blobs: BlobStore, leased: set[Digest], present: dict[Digest, int]
) -> dict[Digest, int | None]:
    """The leased blobs with their sizes, None for those that cannot be documents (absent, or
    not beginning like JSON): only the others are read whole to see what they list."""
    return {d: present[d] if d in present and blobs.starts_like_json(d) else None for d in leased}


def _live_leases(
    meta: MetadataStore, blobs: BlobStore, leases: Leases, result: GcResult, kept_for: float
) -> list[str]:
    """The leases whose content is kept: those a living process holds, and resumable
    imports' younger than *kept_for* seconds since their last progress. Counts the others
    (and lists the resumable ones) in *result*."""
    live: list[str] = []
    resumable = meta.resumable_leases()
    now = time.time()
    for lease_id in meta.lease_ids():
        if leases.is_alive(lease_id):
            live.append(lease_id)
            continue
        if lease_id in resumable:
            archive, updated = resumable[lease_id]
            found = ResumableImport(lease_id, archive, updated, blobs.staging_bytes(lease_id))
            if now - updated < kept_for:
                result.resumable_kept.append(found)
                live.append(lease_id)
                continue
            result.resumable_removed.append(found)
        result.leases_removed += 1
    return live


def _removed_leases(meta: MetadataStore, live: list[str]) -> list[str]:
    kept = set(live)
    return [lease_id for lease_id in meta.lease_ids() if lease_id not in kept]


def held_content(
    meta: MetadataStore,
    blobs: BlobStore,
    present: Collection[Digest],
    *,
    skip_unreadable: bool = False,
) -> dict[str, set[Digest]]:
    """What each namespace holds: the *present* blobs its images reach (one graph walk, whose
    documents are read once however many namespaces share them)."""
    reach = Reachability(blobs, present.__contains__, skip_unreadable=skip_unreadable)
    return {
        namespace: {d for d in digests if d in present}
        for namespace, digests in reach_namespaces(meta, reach).items()
    }


def reach_namespaces(meta: MetadataStore, reach: Reachability) -> dict[str, set[Digest]]:
    """Every digest each namespace reaches (absent ones included): what its images reach, and
    the referrers it keeps of anything reached, with what they reach, until nothing is added
    (a signature of an SBOM of an image is kept with the image)."""
    found: dict[str, set[Digest]] = {}
    for namespace in meta.holding_namespaces():
        roots = [Descriptor(t, d, 0) for t, d in meta.namespace_targets(namespace)]
        reached = reach.closure(roots)
        pending = meta.referrers(namespace)
        while True:
            kept = [r for r in pending if r.subject in reached]
            if not kept:
                break
            pending = [r for r in pending if r.subject not in reached]
            reached |= reach.closure(r.descriptor for r in kept)
        found[namespace] = reached
    return found
