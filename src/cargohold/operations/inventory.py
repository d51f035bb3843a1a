"""``content inventory``: what this namespace holds, written down for a sender (see
:mod:`cargohold.archive.inventory` for the format)."""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..archive.inventory import Inventory, InventoryImage, encode
from ..oci.digests import Digest
from ..storage import outputs
from .context import StoreContext


@dataclass(frozen=True, slots=True)
class InventoryResult:
    """What ``content inventory`` wrote."""

    namespace: str
    blobs: int
    #: The bytes of the blobs it lists.
    size: int
    images: int
    digest: Digest
    #: Bytes of the inventory file (compressed, when it is).
    bytes_written: int


def take_inventory(ctx: StoreContext) -> Inventory:
    """The namespace's holdings (the digests it received and verified, as an import reuses
    them), each with the size of the store's copy, and its image names. A held blob whose file
    is gone (``content rm --force``) is not listed: the namespace cannot supply it."""
    blobs = ctx.blobs.regular_sizes(ctx.meta.holdings(ctx.namespace))
    images = [
        InventoryImage(r.name, r.digest, r.media_type, r.size)
        for r in ctx.meta.list_images(ctx.namespace)
    ]
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Inventory(ctx.namespace, blobs, images, created)


def write_inventory(
    ctx: StoreContext, out: str | Path | BinaryIO, sync: bool = False
) -> InventoryResult:
    """Write the namespace's inventory to *out*: a path (through a temporary file, renamed at
    the end, as an export is), ``"-"`` for stdout, or a binary stream."""
    inventory = take_inventory(ctx)
    data = encode(inventory)

    def write(f: BinaryIO, _new: bool) -> int:
        f.write(data)
        f.flush()
        return len(data)

    if isinstance(out, (str, Path)) and str(out) != "-":
        written = outputs.write_file(Path(out), write, sync)
    else:
        written = write(sys.stdout.buffer if isinstance(out, (str, Path)) else out, False)
    assert inventory.digest is not None  # set by encode
    return InventoryResult(
        ctx.namespace,
        len(inventory.blobs),
        inventory.total_size,
        len(inventory.images),
        inventory.digest,
        written,
    )
