"""Where a store is and what it holds: the disk-usage report (``cargohold info``).

Read-only: what collection would reclaim is computed from the same reachability gc marks
with (every namespace's images plus the blobs live imports hold), without its write lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage.gc import live_leases, marked
from ..version import __version__
from .context import VERSION_FILE, StoreContext, check_version


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """A store's location, format and what its content takes."""

    root: str
    format: int
    version: str
    namespaces: int
    images: int
    blobs: int
    bytes: int
    reclaimable_blobs: int
    reclaimable_bytes: int


def store_info(ctx: StoreContext) -> StoreInfo:
    """The store's figures; reclaimable is what ``content gc`` would remove now."""
    present = {digest: size for digest, size, _ in ctx.blobs.iter_blobs()}
    live = live_leases(ctx.meta, ctx.blobs, ctx.leases)
    _, kept = marked(ctx.meta, ctx.blobs, present, live, skip_unreadable=True)
    reclaimable = [size for digest, size in present.items() if digest not in kept]
    return StoreInfo(
        root=str(ctx.root),
        format=check_version(ctx.root, "read") if (ctx.root / VERSION_FILE).exists() else 0,
        version=__version__,
        namespaces=len(ctx.meta.namespaces()),
        images=len(ctx.meta.all_images()),
        blobs=len(present),
        bytes=sum(present.values()),
        reclaimable_blobs=len(reclaimable),
        reclaimable_bytes=sum(reclaimable),
    )
