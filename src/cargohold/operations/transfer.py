"""What pulling and pushing share: the registry client factory, results, parallel transfers.

(Pull and push themselves are :mod:`cargohold.operations.pulling` and
:mod:`cargohold.operations.pushing`.)

A pull is an import whose archive is a registry: the same lease protects what it stages from
gc, every document and blob is verified against its digest (the registry client checks the
bytes as they arrive), the image graph is walked with the same platform rules, and names are
written in one transaction only after every blob is committed and synced, so a failed pull
leaves the store exactly as it was.

A push walks a stored image and uploads, children before parents: blobs first (those the
registry has are skipped, those of another repository of the same registry are mounted), then
manifests, then the index, then the tag.

Both take a *client factory* (a callable from a registry host to a :class:`RegistryClient`),
so that the caller chooses credentials and TLS settings, and tests a fake registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from ..errors import (
    TransferCancelled,
)
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME
from ..oci.digests import Digest
from ..oci.mediatypes import (
    Descriptor,
)
from ..oci.platforms import Platform
from ..registry.client import RegistryClient
from .context import StoreContext

__all__ = [
    "PARALLEL_TRANSFERS",
    "ClientFactory",
    "PullResult",
    "PushResult",
    "default_client_factory",
]

#: Makes the client for a registry host (a reference domain: ``docker.io``, ``localhost:5000``).
ClientFactory = Callable[[str], RegistryClient]
#: Blobs transferred at once: enough to fill a link, few enough to be polite to a registry.
PARALLEL_TRANSFERS: Final = 4

PullAction = Literal["created", "updated", "unchanged"]
_T = TypeVar("_T")
_I = TypeVar("_I")


def default_client_factory(
    host: str,
    *,
    speed_limit: int = DEFAULT_SPEED_LIMIT,
    speed_time: float = DEFAULT_SPEED_TIME,
) -> RegistryClient:
    """A client with the defaults: TLS verified, credentials from the docker config, and
    transfers abandoned below *speed_limit* bytes a second for *speed_time* seconds
    (``functools.partial(default_client_factory, speed_limit=…)`` is a factory too)."""
    return RegistryClient(host, speed_limit=speed_limit, speed_time=speed_time)


# -- results ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PullResult:
    name: str
    digest: Digest
    media_type: str
    action: PullAction
    platforms: list[Platform] = field(default_factory=list)
    blobs_downloaded: int = 0
    bytes_downloaded: int = 0
    blobs_present: int = 0
    manifests_downloaded: int = 0
    #: Signatures, attestations and SBOMs pulled with the image.
    referrers: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PushResult:
    name: str
    destination: str
    digest: Digest
    media_type: str
    platforms: list[Platform] = field(default_factory=list)
    manifests: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    warnings: list[str] = field(default_factory=list)
    #: Signatures, attestations and SBOMs pushed after the image.
    referrers: int = 0


# -- running transfers -------------------------------------------------------------------------


class Interruption:
    """Stops every transfer a command runs, however many images it moves at a time. Each
    image's transfers share an event of their own (a failed one stops its image's others, not
    another image's); :meth:`interrupt` (the command's thread was interrupted: Ctrl-C) sets
    them all, and each transfer stops at its next chunk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[threading.Event] = []
        self._interrupted = False

    def event(self) -> threading.Event:
        """A new image's own stop (already set once the command is interrupted)."""
        event = threading.Event()
        with self._lock:
            if self._interrupted:
                event.set()
            else:
                self._events.append(event)
        return event

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            events, self._events = self._events, []
        for event in events:
            event.set()


def run_in_order(
    work: Callable[[_I], _T], items: Sequence[_I], jobs: int, interruption: Interruption
) -> list[_T]:
    """*work* over *items* (images), *jobs* at a time, the results in their order. The first
    goes alone: images pushed or pulled together often share a base, which the others then find
    (in the registry, or in the store). When the waiting thread is interrupted (Ctrl-C), no
    further item starts and every transfer under *interruption* stops at its next chunk."""
    if not items:
        return []
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="cargohold-images") as pool:
        rest: list[Future[_T]] = []
        try:
            first = pool.submit(work, items[0]).result()
            for item in items[1:]:
                rest.append(pool.submit(work, item))
            return [first, *(future.result() for future in rest)]
        except BaseException:
            interruption.interrupt()
            for future in rest:
                future.cancel()
            raise


def run_all(
    job: Callable[[Descriptor], _T], items: Sequence[Descriptor], cancelled: threading.Event
) -> list[_T]:
    """Run *job* over *items* on a small pool; the first failure cancels the rest (those
    running stop at their next chunk: each *job* checks *cancelled*) and is raised once every
    thread has stopped. An interruption of the waiting thread (Ctrl-C) cancels them too."""
    if not items:
        return []
    with ThreadPoolExecutor(
        min(PARALLEL_TRANSFERS, len(items)), thread_name_prefix="cargohold-transfer"
    ) as pool:
        futures: list[Future[_T]] = []
        try:
            for item in items:  # one by one: an interruption cancels those submitted
                futures.append(pool.submit(job, item))
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # the pool's exit waits for the running ones: make it short
            cancelled.set()
            for future in futures:
                future.cancel()
            raise
        failed = next(
            (f for f in futures if f.done() and not f.cancelled() and f.exception() is not None),
            None,
        )
        if failed is not None:
            cancelled.set()
            for future in futures:
                future.cancel()
            wait(futures)
            # the first real failure, not a download stopped because of it
            for future in futures:
                if future.cancelled():
                    continue
                exc = future.exception()
                if exc is not None and not isinstance(exc, TransferCancelled):
                    raise exc
        return [f.result() for f in futures]


# -- push ------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether a registry host (``localhost:5000``, ``127.0.0.1``, ``[::1]:5000``) is this
    machine, where plain HTTP exposes nothing to the network."""
    if host.startswith("["):
        address = host[1:].partition("]")[0]
    else:
        address = host.rpartition(":")[0] if ":" in host else host
    address = address.lower()
    return (
        address == "localhost"
        or address.endswith(".localhost")
        or address == "::1"
        or (address.startswith("127.") and address.replace(".", "").isdigit())
    )


class SharedClients:
    """One client per registry host for an operation over many images (a sync, a push of a
    whole namespace): one connection pool, one token cache, one credential lookup, instead of
    one per image. Used as the images' client factory; :meth:`close` closes them all."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str) -> RegistryClient:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                client = self._clients[host] = self._factory(host)
                client.shared = True
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> SharedClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadStores:
    """The store opened once per thread of a pool: a store's SQLite connection runs one
    transaction at a time, so images synced or pushed in parallel each need their own.

    The *count* connections are opened up front, one after the other: opening one for writing
    takes the store's write lock for a moment, and threads opening theirs at once would queue
    on SQLite's busy handler, which sleeps."""

    def __init__(self, store: StoreContext, count: int) -> None:
        self._free = [
            StoreContext(store.root, store.namespace, store.mode) for _ in range(max(1, count))
        ]
        self._opened = list(self._free)
        self._local = threading.local()
        self._lock = threading.Lock()

    def get(self) -> StoreContext:
        """This thread's store (a pool never has more threads than *count*)."""
        context: StoreContext | None = getattr(self._local, "context", None)
        if context is None:
            with self._lock:
                context = self._free.pop()
            self._local.context = context
        return context

    def close(self) -> None:
        with self._lock:
            for context in self._opened:
                context.close()
            self._opened.clear()
            self._free.clear()

    def __enter__(self) -> ThreadStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
