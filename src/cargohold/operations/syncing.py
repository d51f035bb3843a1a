"""Sync: bring the store in line with lists of images (:mod:`.synclists`), as ``skopeo sync``
does for a directory, through the pull every image gets anyway.

Each image is pulled by :func:`.pulling.pull` (verified, all or nothing), several at a time,
with one client per registry. An image the store already holds whole costs one ``HEAD`` of its
manifest: when the registry names the digest the store has, nothing else is asked (an image
pinned by digest costs nothing). One failed image does not stop the others; a registry that
cannot be reached fails the rest of its images at once instead of each retrying.

Names a sync creates carry a label per list (``cargohold.sync/<hash of the list's path>``,
whose value is the name), so that ``prune`` removes only what a sync of the same list put
there: never an image someone imported, pulled or tagged by hand (``image tag`` copies labels,
but not the name they hold).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import (
    CargoholdError,
    RegistryConnectionError,
    RegistryNotFoundError,
    RegistryTooSlowError,
)
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.mediatypes import is_index, is_manifest, parse_index, parse_manifest
from ..oci.platforms import ALL_PLATFORMS, PlatformChoice, PlatformMatcher
from ..oci.references import Reference
from ..registry.client import RegistryClient
from ..storage.gc import collect
from ..storage.metadata import ImageRecord
from .context import StoreContext, image_target, platform_matcher
from .pulling import pull
from .synclists import SyncList, SyncSource
from .transfer import (
    PARALLEL_TRANSFERS,
    ClientFactory,
    Interruption,
    SharedClients,
    ThreadStores,
    run_in_order,
)

__all__ = ["LABEL_PREFIX", "SyncEntry", "SyncResult", "list_label", "sync"]

SyncAction = Literal["created", "updated", "unchanged", "failed"]
#: The actions of a sync, in the order summaries count them.
SYNC_ACTIONS: tuple[SyncAction, ...] = ("created", "updated", "unchanged", "failed")
#: The label key prefix of the names a sync created; the rest of the key identifies the list.
LABEL_PREFIX = "cargohold.sync/"


@dataclass(slots=True)
class SyncEntry:
    """What happened to one image of the list (with ``dry_run``: what would)."""

    name: str
    action: SyncAction
    digest: Digest | None = None
    bytes: int = 0
    error: str | None = None


@dataclass(slots=True)
class SyncResult:
    entries: list[SyncEntry] = field(default_factory=list)
    #: Names removed by ``prune`` (with ``dry_run``: that would be).
    pruned: list[str] = field(default_factory=list)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SyncEntry]:
        return [e for e in self.entries if e.action == "failed"]


@dataclass(slots=True)
class _Image:
    """One image to bring in: its reference, platforms, and the lists that name it."""

    reference: Reference
    platforms: tuple[str, ...]
    all_platforms: bool
    lists: set[str]

    @property
    def choice(self) -> PlatformChoice:
        """What the line chose, as the verbs take it."""
        return ALL_PLATFORMS if self.all_platforms else self.platforms


def list_label(list_id: str) -> str:
    """The label key that marks a name as created by a sync of the list *list_id*."""
    return LABEL_PREFIX + hashlib.sha256(list_id.encode()).hexdigest()[:16]


def sync(
    store: StoreContext,
    lists: SyncList,
    client_factory: ClientFactory,
    *,
    platforms: PlatformChoice = (),
    jobs: int = PARALLEL_TRANSFERS,
    dry_run: bool = False,
    prune: bool = False,
    report: Callable[[SyncEntry], None] | None = None,
) -> SyncResult:
    """Pull every image *lists* name that the store lacks or that changed upstream.

    *platforms* (some, or ``"all"``) apply to the images whose line chose none. *report* is
    called once per image as it ends. With *prune*, names that a previous sync of the same
    lists created and that they no longer name are removed (not when a repository's tags could
    not be listed: its names are then unknown). With *dry_run*, nothing is written.
    """
    result = SyncResult(dry_run=dry_run)
    default = (
        ((), True) if platforms == ALL_PLATFORMS else (tuple(str(p) for p in platforms), False)
    )
    with SharedClients(client_factory) as clients, ThreadStores(store, jobs) as stores:
        images, failures = _expand(lists.sources, clients, default)
        for failure in failures:
            if report is not None:
                report(failure)
        worker = _Worker(stores, clients, dry_run, report)
        # in the lists' order; the first alone: images of one list often share a base
        result.entries = failures + run_in_order(worker, images, jobs, worker.interruption)
    if prune and failures:
        listed = ", ".join(f.name for f in failures)
        result.warnings.append(f"nothing pruned: the tags of {listed} could not be listed")
    elif prune:
        named = {str(image.reference) for image in images}
        list_ids = {source.list_id for source in lists.sources}
        result.pruned = _prune(store, list_ids, named, dry_run)
    return result


def _expand(
    sources: Sequence[SyncSource], clients: SharedClients, default: tuple[tuple[str, ...], bool]
) -> tuple[list[_Image], list[SyncEntry]]:
    """The images the sources name (repositories' tags listed), each once."""
    images: dict[str, _Image] = {}
    failures: list[SyncEntry] = []
    for source in sources:
        selection = (source.platforms, source.all_platforms)
        if not source.platforms and not source.all_platforms:
            selection = default
        references = [Reference.parse(source.reference)]
        if source.tags is not None:
            repository = references[0]
            try:
                tags = clients(repository.domain).list_tags(repository.path)
            except CargoholdError as exc:
                failures.append(SyncEntry(f"{repository.domain}/{repository.path}", "failed",
                                          error=str(exc)))  # fmt: skip
                continue
            references = [
                Reference(repository.domain, repository.path, tag)
                for tag in tags
                if source.tags.matches(tag)
            ]
        for reference in references:
            image = images.setdefault(str(reference), _Image(reference, *selection, set()))
            image.lists.add(source.list_id)
    return list(images.values()), failures


class _Worker:
    """Syncs one image at a time, from any thread; remembers registries that are down."""

    def __init__(
        self,
        stores: ThreadStores,
        clients: SharedClients,
        dry_run: bool,
        report: Callable[[SyncEntry], None] | None,
    ) -> None:
        self.stores = stores
        self.clients = clients
        self.dry_run = dry_run
        self.report = report
        self.down: dict[str, str] = {}
        self.claimed: set[Digest] = set()
        self.lock = threading.Lock()
        #: Ctrl-C stops every image's downloads at once.
        self.interruption = Interruption()

    def __call__(self, image: _Image) -> SyncEntry:
        host = image.reference.domain
        with self.lock:
            down = self.down.get(host)
        if down is not None:
            entry = SyncEntry(str(image.reference), "failed", error=down)
        else:
            try:
                entry = self._sync(image)
            except (CargoholdError, OSError) as exc:
                message = str(exc) or type(exc).__name__
                if isinstance(exc, RegistryConnectionError) and not isinstance(
                    exc, RegistryTooSlowError
                ):
                    with self.lock:
                        self.down.setdefault(host, f"registry {host} unreachable: {message}")
                entry = SyncEntry(str(image.reference), "failed", error=message)
        if self.report is not None:
            self.report(entry)
        return entry

    def _claim(self, blobs: dict[Digest, int]) -> int:
        """The bytes of *blobs* no image of this dry run counted before (images of one list
        share blobs, which a sync downloads once)."""
        with self.lock:
            new = {d: n for d, n in blobs.items() if d not in self.claimed}
            self.claimed.update(new)
        return sum(new.values())

    def _sync(self, image: _Image) -> SyncEntry:
        store = self.stores.get()
        reference, name = image.reference, str(image.reference)
        matcher = platform_matcher(image.choice)
        existing = store.meta.get_image(store.namespace, name)
        whole = existing is not None and _holds(store, existing, matcher)
        if whole and existing is not None and reference.digest is not None:
            return SyncEntry(name, "unchanged", existing.digest)
        if existing is not None or self.dry_run:
            client = self.clients(reference.domain)
            info = client.head_manifest(
                reference.path, reference.digest or reference.tag or "latest"
            )
            if info is None:
                raise RegistryNotFoundError(f"{name}: not found in the registry")
            if whole and existing is not None and info.digest == existing.digest:
                return SyncEntry(name, "unchanged", existing.digest)
            if self.dry_run:
                size = self._claim(_missing_blobs(store, client, reference, matcher))
                return SyncEntry(name, "updated" if existing else "created", info.digest, size)
        pulled = pull(
            store, name, self.clients,
            platforms=image.choice, interruption=self.interruption,
        )  # fmt: skip
        if pulled.action == "created":
            marks = {list_label(list_id): name for list_id in sorted(image.lists)}
            _relabel(store, name, lambda labels: {**labels, **marks})
        return SyncEntry(name, pulled.action, pulled.digest, pulled.bytes_downloaded)


def _missing_blobs(
    store: StoreContext, client: RegistryClient, reference: Reference, matcher: PlatformMatcher
) -> dict[Digest, int]:
    """What a pull would download, for ``dry_run``: the selected manifests' blobs the store
    does not have, with their sizes (the documents are fetched to know them; one level of
    index, as images have)."""
    top = client.get_manifest(reference.path, reference.digest or reference.tag or "latest")
    documents = [(top.media_type, top.data)]
    if is_index(top.media_type):
        index = parse_index(top.data, f"{reference}: index", top.media_type)
        documents = []
        for child in index.manifests:
            if matcher.matches(child.platform) and is_manifest(child.media_type):
                fetched = client.get_manifest(reference.path, child.digest)
                documents.append((fetched.media_type, fetched.data))
    missing: dict[Digest, int] = {}
    for media_type, data in documents:
        if not is_manifest(media_type):
            continue
        for blob in parse_manifest(data, f"{reference}: manifest", media_type).blobs:
            if store.blobs.blob_size(blob.digest) is None:
                missing[blob.digest] = blob.size
    return missing


def _holds(store: StoreContext, record: ImageRecord, matcher: PlatformMatcher) -> bool:
    """Whether the store holds the whole image for the platforms wanted (no network)."""
    if record.partial:
        return False
    try:
        walk(store.blobs, image_target(record), matcher, record.name)
    except CargoholdError:
        return False
    return True


def _prune(store: StoreContext, list_ids: set[str], named: set[str], dry_run: bool) -> list[str]:
    """Remove the names these lists' syncs created that they no longer name; a name another
    list's sync also created keeps it, without this list's label."""
    keys = {list_label(list_id) for list_id in list_ids}
    removed: list[str] = []
    for record in store.meta.list_images(store.namespace):
        # the label's value is the name it was created as: a copy made by `image tag` (which
        # copies labels) was not created by the sync, and stays
        marked = {k for k, v in record.labels.items() if k.startswith(LABEL_PREFIX)
                  and v == record.name}  # fmt: skip
        mine = keys & marked
        if not mine or record.name in named:
            continue
        others = marked - mine
        if others:
            if not dry_run:
                _relabel(store, record.name, lambda labels: {
                    k: v for k, v in labels.items() if k not in keys
                })  # fmt: skip
            continue
        removed.append(record.name)
    if removed and not dry_run:
        with store.meta.transaction() as db:
            for name in removed:
                store.meta.delete_image(db, store.namespace, name)
        collect(store.meta, store.blobs, store.leases)
    return removed


def _relabel(
    store: StoreContext, name: str, change: Callable[[dict[str, str]], dict[str, str]]
) -> None:
    """Change a name's labels in one transaction (the name may have moved meanwhile)."""
    with store.meta.transaction() as db:
        record = store.meta.get_image(store.namespace, name)
        if record is not None:
            store.meta.set_labels(db, store.namespace, name, change(dict(record.labels)))
