"""A store's state as tests compare it, and the platforms the tests build images for.

Every refused import, pull or crash must leave the store exactly as it was; :func:`snapshot`
is what "exactly" means, shared by the store, transfer, hostile-corpus and fuzz tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cargohold.oci.platforms import Platform
from cargohold.operations.store import Store

#: Images must run here to be imported by default, so test images are built for this host.
HOST = str(Platform.host())
OTHER = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"


@dataclass(frozen=True)
class Snapshot:
    """Everything an import may change, to compare a store before and after a failure."""

    images: tuple[tuple[str, str, str], ...]
    targets: frozenset[tuple[str, str]]
    blobs: frozenset[tuple[str, bytes]]
    ingest: tuple[str, ...]
    leases: tuple[str, ...]
    lock_files: tuple[str, ...]


def snapshot(store: Store) -> Snapshot:
    blobs_dir = store.root / "content" / "blobs"
    ingest_dir = store.root / "content" / "ingest"
    leases_dir = store.root / "leases"
    blobs = frozenset(
        (p.relative_to(blobs_dir).as_posix(), hashlib.sha256(p.read_bytes()).digest())
        for p in (blobs_dir.rglob("*") if blobs_dir.exists() else ())
        if p.is_file()
    )
    ingest = tuple(
        sorted(p.relative_to(ingest_dir).as_posix() for p in ingest_dir.rglob("*"))
        if ingest_dir.exists()
        else ()
    )
    lock_files = tuple(sorted(p.name for p in leases_dir.iterdir()) if leases_dir.exists() else ())
    return Snapshot(
        images=tuple(
            (r.name, str(r.digest), r.media_type) for r in store.meta.list_images(store.namespace)
        ),
        targets=frozenset((m, str(d)) for m, d in store.meta.all_targets()),
        blobs=blobs,
        ingest=ingest,
        leases=tuple(store.meta.lease_ids()),
        lock_files=lock_files,
    )
