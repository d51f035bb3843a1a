"""Pulling images from a registry into the store, and pushing stored images to a registry.

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

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar, cast

from ..errors import (
    CargoholdError,
    ContentError,
    InvalidDocumentError,
    InvalidReferenceError,
    MissingContentError,
    NoMatchingPlatformError,
    NotFoundError,
)
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME
from ..oci.digests import Digest
from ..oci.graph import MAX_INDEX_DEPTH, walk
from ..oci.mediatypes import (
    DEFAULT_JSON_LIMIT,
    MAX_JSON_LIMIT,
    Descriptor,
    dump_json,
    is_index,
    is_manifest,
    parse_index,
    parse_manifest,
)
from ..oci.platforms import Platform, PlatformMatcher
from ..oci.references import Reference
from ..progress import Progress
from ..registry.client import RegistryClient
from ..storage.files import raise_if_full
from ..storage.ingest import StagedBlob
from .commit import NewImage, commit
from .context import StoreContext, finishing, platform_matcher

__all__ = [
    "PARALLEL_TRANSFERS",
    "ClientFactory",
    "PullResult",
    "PushResult",
    "default_client_factory",
    "pull",
    "push",
]

#: Makes the client for a registry host (a reference domain: ``docker.io``, ``localhost:5000``).
ClientFactory = Callable[[str], RegistryClient]
#: Blobs transferred at once: enough to fill a link, few enough to be polite to a registry.
PARALLEL_TRANSFERS: Final = 4

PullAction = Literal["created", "updated", "unchanged"]
_T = TypeVar("_T")


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

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "action": self.action,
            "platforms": [str(p) for p in self.platforms],
            "manifestsDownloaded": self.manifests_downloaded,
            "blobsDownloaded": self.blobs_downloaded,
            "bytesDownloaded": self.bytes_downloaded,
            "blobsPresent": self.blobs_present,
        }


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

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "destination": self.destination,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "platforms": [str(p) for p in self.platforms],
            "manifests": self.manifests,
            "blobsUploaded": self.blobs_uploaded,
            "bytesUploaded": self.bytes_uploaded,
            "blobsMounted": self.blobs_mounted,
            "blobsPresent": self.blobs_present,
        }


# -- pull ------------------------------------------------------------------------------------


def pull(
    store: StoreContext,
    ref: str,
    client_factory: ClientFactory = default_client_factory,
    *,
    platforms: Sequence[str | Platform] = (),
    all_platforms: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    """Pull *ref* into *store* under its normalised name, all or nothing.

    The top-level target is what the registry returns for *ref* (an index or a manifest);
    of an index only the selected platforms' manifests (default: this host's) and their blobs
    are fetched. Content the store already has is not downloaded.
    """
    reference = Reference.parse(ref)
    name = str(reference)
    matcher = platform_matcher(platforms, all_platforms)
    progress = progress or Progress()
    tag_or_digest: str | Digest = reference.digest or reference.tag or "latest"
    with (
        finishing(progress),
        client_factory(reference.domain) as client,
        store.lease() as lease_id,
    ):
        puller = _Puller(store, client, reference.path, lease_id, matcher, name)
        top = client.get_manifest(reference.path, tag_or_digest)
        if not (is_index(top.media_type) or is_manifest(top.media_type)):
            raise InvalidDocumentError(
                f"{name}: the registry returned a {top.media_type}, not an image manifest or index"
            )
        target = Descriptor(top.media_type, top.digest, len(top.data))
        puller.document(target, top.data, name, depth=0, fetched=True)
        puller.fetch_blobs(progress)
        # The import's own walk over what is now staged or stored: sizes, media types and
        # the platform selection checked once more, on exactly the bytes to be committed.
        graph = walk(puller.source(), target, matcher, name)
        # the import's commit; a pull takes what the registry says the name is (force)
        done = commit(
            store, lease_id, puller.staged, graph.blobs, [NewImage(name, target)], force=True
        )
    action = cast(PullAction, done.images[0].action)
    return PullResult(
        name,
        target.digest,
        target.media_type,
        action,
        sorted({m.platform for m in graph.manifests if m.platform}, key=Platform.sort_key),
        blobs_downloaded=puller.blobs_downloaded,
        bytes_downloaded=puller.bytes_downloaded,
        blobs_present=puller.blobs_present,
        manifests_downloaded=puller.manifests_downloaded,
    )


class _Cancelled(Exception):
    """Another download of the same pull failed; this one stops at its next chunk."""


class _Puller:
    """The state of one pull: what is staged, what the store already had."""

    def __init__(
        self,
        store: StoreContext,
        client: RegistryClient,
        repository: str,
        lease_id: str,
        matcher: PlatformMatcher,
        name: str,
    ) -> None:
        self.store = store
        self.client = client
        self.repository = repository
        self.lease_id = lease_id
        self.staging = store.blobs.staging_dir(lease_id)
        self.matcher = matcher
        self.name = name
        self.staged: dict[Digest, StagedBlob] = {}
        #: Blobs the store's copy stands for (see StoreContext.reusable).
        self.reused: set[Digest] = set()
        self.blobs: dict[Digest, Descriptor] = {}
        self.seen: set[Digest] = set()
        self.blobs_downloaded = 0
        self.bytes_downloaded = 0
        self.blobs_present = 0
        self.manifests_downloaded = 0
        self._lock = threading.Lock()

    def _reuse(self, digest: Digest, size: int) -> bool:
        """Whether the store's copy stands for the registry's, by the import's rule (the
        namespace holds it, intact); the lease protects it from here on."""
        if self.store.reusable(self.lease_id, digest, size):
            self.reused.add(digest)
            return True
        return False

    def document(
        self, desc: Descriptor, data: bytes, what: str, *, depth: int, fetched: bool
    ) -> None:
        """Stage a verified document (unless the store has it) and follow its children."""
        if desc.digest in self.seen:
            return
        self.seen.add(desc.digest)
        if fetched and not self._reuse(desc.digest, len(data)):
            self.staged[desc.digest] = self.store.blobs.stage_bytes(data, self.staging, what)
        if is_index(desc.media_type):
            if depth >= MAX_INDEX_DEPTH:
                raise InvalidDocumentError(f"{what}: indexes nested deeper than {MAX_INDEX_DEPTH}")
            index = parse_index(data, f"index {desc.digest}", desc.media_type)
            selected = [c for c in index.manifests if self.matcher.matches(c.platform)]
            if index.manifests and not selected:
                found = sorted({str(c.platform) for c in index.manifests if c.platform})
                raise NoMatchingPlatformError(
                    f"{what}: index {desc.digest.short} has no manifest for {self.matcher}"
                    f" (it has {', '.join(found) or 'no platforms'})"
                )
            for child in selected:
                child_what = f"{self.name}: manifest {child.digest.short}"
                if child.platform is not None:
                    child_what += f" ({child.platform})"
                child_data, child_fetched = self._child_document(child, child_what)
                self.document(child, child_data, child_what, depth=depth + 1, fetched=child_fetched)
        elif is_manifest(desc.media_type):
            manifest = parse_manifest(data, f"manifest {desc.digest}", desc.media_type)
            for blob in manifest.blobs:
                self.blobs.setdefault(blob.digest, blob)
        else:
            raise InvalidDocumentError(
                f"{what}: {desc.digest} has media type {desc.media_type}, not an image"
                " manifest or index"
            )

    def _child_document(self, desc: Descriptor, what: str) -> tuple[bytes, bool]:
        """A manifest or index an index points at: from the store, else from the registry."""
        if desc.size > DEFAULT_JSON_LIMIT:
            raise InvalidDocumentError(
                f"{what}: document of {desc.size} bytes exceeds the limit of {DEFAULT_JSON_LIMIT}"
            )
        if self._reuse(desc.digest, desc.size):
            return self.store.blobs.read_blob(desc.digest, MAX_JSON_LIMIT), False
        response = self.client.get_manifest(self.repository, desc.digest, limit=DEFAULT_JSON_LIMIT)
        if len(response.data) != desc.size:
            raise ContentError(
                f"{what}: the registry sent {len(response.data)} bytes, its descriptor says"
                f" {desc.size}"
            )
        self.manifests_downloaded += 1
        return response.data, True

    def fetch_blobs(self, progress: Progress) -> None:
        """Download the configs and layers the store lacks, a few at a time, into staging."""
        wanted: list[Descriptor] = []
        for desc in self.blobs.values():
            if desc.digest in self.staged or self._reuse(desc.digest, desc.size):
                self.blobs_present += 1
            else:
                wanted.append(desc)
        progress.start("pull", sum(d.size for d in wanted))
        done = 0
        cancelled = threading.Event()

        def advance(n: int) -> None:
            nonlocal done
            with self._lock:
                done += n
                progress.update(done)

        def download(desc: Descriptor) -> StagedBlob:
            return self._download(desc, cancelled, advance)

        for desc, staged in zip(wanted, _run_all(download, wanted, cancelled), strict=True):
            self.staged[desc.digest] = staged
            self.blobs_downloaded += 1
            self.bytes_downloaded += desc.size

    def _download(
        self, desc: Descriptor, cancelled: threading.Event, advance: Callable[[int], None]
    ) -> StagedBlob:
        path = self.staging / uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:

                def sink(chunk: memoryview) -> None:
                    if cancelled.is_set():
                        raise _Cancelled()
                    f.write(chunk)
                    advance(len(chunk))

                self.client.fetch_blob(self.repository, desc.digest, desc.size, sink)
                f.flush()
                if os.fstat(f.fileno()).st_size != desc.size:  # the client already refuses it
                    raise ContentError(f"{self.name}: {desc.digest} is not {desc.size} bytes")
                os.fsync(f.fileno())
        except BaseException as exc:
            path.unlink(missing_ok=True)
            raise_if_full(exc, f"{self.name}: {desc.digest}", "the store")
            raise
        return StagedBlob(desc.digest, desc.size, path)

    def source(self) -> _PulledContent:
        return _PulledContent(self.store, self.staged, self.reused)


class _PulledContent:
    """The store's content plus what this pull staged: the walk's view before the commit."""

    document_limit: int = MAX_JSON_LIMIT

    def __init__(
        self, store: StoreContext, staged: dict[Digest, StagedBlob], reused: set[Digest]
    ) -> None:
        self._store = store
        self._staged = staged
        self._reused = reused

    def blob_size(self, digest: Digest) -> int | None:
        staged = self._staged.get(digest)
        if staged is not None:
            return staged.size
        if digest in self._reused:
            return self._store.blobs.blob_size(digest)
        return None

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        staged = self._staged.get(digest)
        if staged is None:
            if digest not in self._reused:
                raise NotFoundError(f"blob {digest} was not pulled")
            return self._store.blobs.read_blob(digest, limit)
        if staged.size > limit:
            raise ContentError(f"blob {digest} is larger than {limit} bytes")
        return staged.read()


def _run_all(
    job: Callable[[Descriptor], _T], items: Sequence[Descriptor], cancelled: threading.Event
) -> list[_T]:
    """Run *job* over *items* on a small pool; the first failure cancels the rest (those
    running stop at their next chunk) and is raised once every thread has stopped."""
    if not items:
        return []
    with ThreadPoolExecutor(
        min(PARALLEL_TRANSFERS, len(items)), thread_name_prefix="cargohold-transfer"
    ) as pool:
        futures: list[Future[_T]] = [pool.submit(job, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
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
                if exc is not None and not isinstance(exc, _Cancelled):
                    raise exc
        return [f.result() for f in futures]


# -- push ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _PushPlan:
    top: Descriptor
    top_data: bytes
    #: Manifests and nested indexes below the top, in the order they are pushed (children
    #: before the indexes listing them).
    documents: list[tuple[Descriptor, bytes]]
    blobs: dict[Digest, Descriptor]
    platforms: set[Platform]
    warnings: list[str]


def push(
    store: StoreContext,
    ref: str,
    destination: str | None = None,
    client_factory: ClientFactory = default_client_factory,
    *,
    platforms: Sequence[str | Platform] = (),
    all_platforms: bool = False,
    progress: Progress | None = None,
) -> PushResult:
    """Push the stored image *ref* to *destination* (default: its own name).

    By default every platform the store holds is pushed. When that is all of a stored index's
    manifests, the index is pushed byte for byte; when some are absent from the store (or not
    selected with ``platforms``), an index listing just the pushed manifests is pushed instead
    (its digest differs, and the result's warnings say so). With explicit ``platforms`` or
    ``all_platforms``, selected manifests absent from the store are an error.
    """
    record = store.resolve(ref)
    source = Reference.parse(record.name)
    dest = Reference.parse(destination) if destination is not None else source
    explicit = bool(platforms) or all_platforms
    matcher = platform_matcher(platforms, all_platforms, default_all=True)
    target = Descriptor(record.media_type, record.digest, record.size)
    plan = _plan_push(store, target, matcher, explicit, record.name)
    if dest.digest is not None and dest.digest != plan.top.digest:
        raise InvalidReferenceError(
            f"{dest} names digest {dest.digest}, but the image to push is {plan.top.digest}"
        )
    mount_from = source.path if source.domain == dest.domain and source.path != dest.path else None
    result = PushResult(
        record.name,
        str(dest),
        plan.top.digest,
        plan.top.media_type,
        sorted(plan.platforms, key=Platform.sort_key),
        warnings=plan.warnings,
    )
    progress = progress or Progress()
    with finishing(progress), client_factory(dest.domain) as client:
        progress.start("push", sum(d.size for d in plan.blobs.values()))
        lock = threading.Lock()
        done = 0

        def upload(desc: Descriptor) -> None:
            nonlocal done
            outcome = _push_blob(store, client, dest.path, desc, mount_from)
            with lock:
                done += desc.size
                progress.update(done)
                if outcome == "present":
                    result.blobs_present += 1
                elif outcome == "mounted":
                    result.blobs_mounted += 1
                else:
                    result.blobs_uploaded += 1
                    result.bytes_uploaded += desc.size

        _run_all(upload, list(plan.blobs.values()), threading.Event())
        for desc, data in plan.documents:
            client.put_manifest(dest.path, desc.digest, data, desc.media_type)
            result.manifests += 1
        reference: str | Digest = dest.digest or dest.tag or "latest"
        client.put_manifest(dest.path, reference, plan.top_data, plan.top.media_type)
        result.manifests += 1
    return result


def _push_blob(
    store: StoreContext,
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    mount_from: str | None,
) -> Literal["present", "mounted", "uploaded"]:
    size = client.blob_exists(repository, desc.digest)
    if size is not None:
        if size != desc.size:
            raise ContentError(
                f"{client.host}/{repository}: the registry has {desc.digest} with {size} bytes,"
                f" not {desc.size}"
            )
        return "present"
    mounted = client.upload_blob(
        repository,
        desc.digest,
        desc.size,
        lambda: store.blobs.open(desc.digest),
        mount_from=mount_from,
    )
    return "mounted" if mounted else "uploaded"


def _plan_push(
    store: StoreContext, target: Descriptor, matcher: PlatformMatcher, explicit: bool, name: str
) -> _PushPlan:
    """What a push sends, checked to be in the store before anything is sent."""
    blobs = store.blobs
    top_data = blobs.read_blob(target.digest, MAX_JSON_LIMIT)
    if is_manifest(target.media_type):
        graph = walk(blobs, target, PlatformMatcher.all(), name)
        return _PushPlan(
            target,
            top_data,
            [],
            dict(graph.leaves),
            set(graph.platforms),
            [],
        )
    index = parse_index(top_data, f"index {target.digest}", target.media_type)
    selected: list[Descriptor] = []
    for child in index.manifests:
        if not matcher.matches(child.platform):
            continue
        if blobs.blob_size(child.digest) is None:
            if explicit:
                raise MissingContentError(
                    f"{name}: manifest {child.digest} ({child.platform or 'no platform'}) is"
                    " not in the store; pull it, or select the platforms that are present"
                )
            continue
        selected.append(child)
    if not selected:
        raise NotFoundError(f"{name}: the store has no manifest of this index for {matcher}")
    manifests: dict[Digest, Descriptor] = {}
    indexes: dict[Digest, Descriptor] = {}
    layers: dict[Digest, Descriptor] = {}
    found: set[Platform] = set()
    for child in selected:
        what = f"{name}: manifest {child.digest.short}"
        graph = walk(blobs, child, PlatformMatcher.all(), what)
        found |= {m.platform for m in graph.manifests if m.platform is not None}
        # by role, not by digest: the same bytes may be a layer here and a manifest there
        for digest, desc in graph.documents.items():
            if is_manifest(desc.media_type):
                manifests.setdefault(digest, desc)
            else:
                indexes.setdefault(digest, desc)
        for digest, desc in graph.leaves.items():
            layers.setdefault(digest, desc)
    # a walk meets an index before what it lists: push indexes in reverse, children first
    ordered = [
        (desc, blobs.read_blob(desc.digest, MAX_JSON_LIMIT))
        for desc in [*manifests.values(), *reversed(indexes.values())]
    ]
    warnings: list[str] = []
    top = target
    if len(selected) != len(index.manifests):
        doc: dict[str, object] = {"schemaVersion": 2, "mediaType": target.media_type}
        doc["manifests"] = [c.to_json() for c in selected]
        if index.annotations:
            doc["annotations"] = dict(index.annotations)
        top_data = dump_json(doc)
        top = Descriptor(target.media_type, Digest.of_bytes(top_data), len(top_data))
        warnings.append(
            f"{name}: pushing an index of the {len(selected)} of {len(index.manifests)}"
            f" manifests that are in the store and selected; its digest is {top.digest},"
            f" not the stored index's {target.digest}"
        )
    return _PushPlan(top, top_data, ordered, layers, found, warnings)


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


def check_plain_http(host: str) -> None:
    """Plain HTTP is for registries on this machine only."""
    if not is_loopback(host):
        raise CargoholdError(
            f"--plain-http is only allowed for a registry on this machine (localhost,"
            f" 127.0.0.1, [::1]), not {host}"
        )
