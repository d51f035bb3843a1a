"""Push a whole namespace (or the images ``image ls`` filters select) to one registry, as a
site loads its registry after the air gap: each image under ``DEST/<its repository path>``
with its tag (or digest), several at a time through one client, skipping the blobs the
registry has and mounting those an earlier image of the run put in another repository."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import (
    CargoholdError,
    InvalidReferenceError,
    NotFoundError,
    RegistryConnectionError,
    RegistryTooSlowError,
)
from ..oci.digests import Digest
from ..oci.platforms import PlatformChoice
from ..oci.references import Reference
from .context import StoreContext
from .filters import ImageFilter
from .pushing import BlobHomes, push
from .transfer import (
    PARALLEL_TRANSFERS,
    ClientFactory,
    Interruption,
    SharedClients,
    ThreadStores,
    run_in_order,
)

__all__ = ["PushAllEntry", "PushAllResult", "destination_for", "push_all"]


@dataclass(slots=True)
class PushAllEntry:
    """One image of the run: where it went, what moved, or why it failed."""

    name: str
    destination: str
    action: Literal["pushed", "failed"]
    digest: Digest | None = None
    bytes: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    error: str | None = None


@dataclass(slots=True)
class PushAllResult:
    entries: list[PushAllEntry] = field(default_factory=list)

    @property
    def failed(self) -> list[PushAllEntry]:
        return [e for e in self.entries if e.action == "failed"]


def destination_for(name: str, dest: str) -> str:
    """Where the image *name* goes under *dest* (``host[:port][/prefix]``): its repository
    path and its tag or digest kept (``docker.io/library/alpine:3`` under
    ``site.lan:5000/mirror`` is ``site.lan:5000/mirror/library/alpine:3``)."""
    base = dest.strip().rstrip("/")
    host = base.split("/", 1)[0]
    try:
        probe = Reference.parse(f"{base}/x")
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"destination {dest!r}: {exc}") from None
    if probe.domain != host.lower() and probe.domain != host:
        raise InvalidReferenceError(
            f"destination {dest!r} does not start with a registry host (a name with a dot or"
            " a port, or localhost)"
        )
    reference = Reference.parse(name)
    suffix = f"@{reference.digest}" if reference.digest else f":{reference.tag or 'latest'}"
    return f"{base}/{reference.path}{suffix}"


def push_all(
    store: StoreContext,
    dest: str,
    client_factory: ClientFactory,
    *,
    filters: Sequence[str] = (),
    platforms: PlatformChoice = (),
    jobs: int = PARALLEL_TRANSFERS,
    report: Callable[[PushAllEntry], None] | None = None,
    referrers: bool = True,
) -> PushAllResult:
    """Push every image of the namespace (those *filters* select) under *dest*; one failed
    image does not stop the others (but once the registry cannot be reached, the images not
    yet pushed fail at once instead of each retrying)."""
    selected = ImageFilter.parse(filters)
    names = [r.name for r in store.meta.list_images(store.namespace) if selected.matches(r)]
    if not names:
        raise NotFoundError("no images to push" + (" match the filters" if filters else ""))
    targets = [(name, destination_for(name, dest)) for name in names]
    homes = BlobHomes()
    interruption = Interruption()
    lock = threading.Lock()
    down: list[str] = []

    with SharedClients(client_factory) as clients, ThreadStores(store, jobs) as stores:

        def one(target: tuple[str, str]) -> PushAllEntry:
            name, destination = target
            try:
                if down:  # the registry could not be reached: the rest fail at once
                    raise RegistryConnectionError(down[0])
                pushed = push(
                    stores.get(), name, destination, clients, platforms=platforms,
                    blob_homes=homes, referrers=referrers, interruption=interruption,
                )  # fmt: skip
                entry = PushAllEntry(
                    name, destination, "pushed", pushed.digest, pushed.bytes_uploaded,
                    pushed.blobs_uploaded, pushed.blobs_mounted, pushed.blobs_present,
                )  # fmt: skip
            except (CargoholdError, OSError) as exc:
                unreachable = isinstance(exc, RegistryConnectionError) and not isinstance(
                    exc, RegistryTooSlowError
                )
                if unreachable and not down:
                    down.append(f"registry unreachable: {exc}")
                entry = PushAllEntry(name, destination, "failed", error=str(exc))
            if report is not None:
                with lock:
                    report(entry)
            return entry

        # the first alone: the blobs images share then go once, and are mounted after
        return PushAllResult(run_in_order(one, targets, jobs, interruption))
