"""Push: a stored image to a registry, children before parents (blobs, manifests, the index,
the tag), skipping what the registry has and mounting across repositories."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import IO, Literal, cast

from ..errors import (
    ContentError,
    InvalidReferenceError,
    MissingContentError,
    NotFoundError,
    TransferCancelled,
)
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.mediatypes import (
    MAX_JSON_LIMIT,
    Descriptor,
    dump_json,
    is_manifest,
    parse_index,
)
from ..oci.platforms import Platform, PlatformChoice, PlatformMatcher
from ..oci.references import Reference
from ..progress import Progress
from ..registry.client import RegistryClient
from .context import StoreContext, finishing, platform_matcher
from .referrer_transfer import push_referrers
from .transfer import ClientFactory, Interruption, PushResult, default_client_factory, run_all


class BlobHomes:
    """Which repository of the destination registry each pushed blob is in (thread-safe)."""

    def __init__(self) -> None:
        self._homes: dict[Digest, str] = {}
        self._lock = threading.Lock()

    def get(self, digest: Digest, repository: str) -> str | None:
        """A repository other than *repository* that holds the blob, if one is known."""
        with self._lock:
            home = self._homes.get(digest)
        return home if home != repository else None

    def add(self, digest: Digest, repository: str) -> None:
        with self._lock:
            self._homes.setdefault(digest, repository)


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


# Long: a third of it is the public API's keyword arguments; the rest is one client's scope.
def push(
    store: StoreContext,
    ref: str,
    destination: str | None = None,
    client_factory: ClientFactory = default_client_factory,
    *,
    platforms: PlatformChoice = (),
    progress: Progress | None = None,
    referrers: bool = True,
    blob_homes: BlobHomes | None = None,
    interruption: Interruption | None = None,
) -> PushResult:
    """Push the stored image *ref* to *destination* (default: its own name).

    By default every platform the store holds is pushed. When that is all of a stored index's
    manifests, the index is pushed byte for byte; when some are absent from the store (or not
    selected with ``platforms``), an index listing just the pushed manifests is pushed instead
    (its digest differs, and the result's warnings say so). With explicit ``platforms`` (some,
    or ``"all"``), selected manifests absent from the store are an error. With
    *referrers* (the default) the referrers the store keeps for what was pushed follow it
    (see :mod:`.referrer_transfer`); those of a stored index go only when it went byte for
    byte (another index has another digest, which they do not name).

    *blob_homes*, shared by the pushes of many images to one registry, says where each blob
    already went, so that the next image's push mounts it from there; *interruption*, shared
    by them too, stops all their uploads at once (see :class:`.transfer.Interruption`).
    """
    record = store.resolve(ref)
    source = Reference.parse(record.name)
    dest = Reference.parse(destination) if destination is not None else source
    explicit = bool(platforms)
    matcher = platform_matcher(platforms, default_all=True)
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

        cancelled = interruption.event() if interruption is not None else threading.Event()

        def upload(desc: Descriptor) -> None:
            nonlocal done
            source = blob_homes.get(desc.digest, dest.path) if blob_homes else None
            outcome = _push_blob(store, client, dest.path, desc, source or mount_from, cancelled)
            if blob_homes is not None:
                blob_homes.add(desc.digest, dest.path)
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

        run_all(upload, list(plan.blobs.values()), cancelled)
        for desc, data in plan.documents:
            client.put_manifest(dest.path, desc.digest, data, desc.media_type)
            result.manifests += 1
        reference: str | Digest = dest.digest or dest.tag or "latest"
        client.put_manifest(dest.path, reference, plan.top_data, plan.top.media_type)
        result.manifests += 1
        if referrers:
            subjects = [d.digest for d, _ in plan.documents]
            if plan.top.digest == record.digest:
                subjects.insert(0, record.digest)
            result.referrers = push_referrers(
                store,
                client,
                dest.path,
                subjects,
                lambda desc: _push_blob(store, client, dest.path, desc, mount_from),
            )
    return result


def _push_blob(
    store: StoreContext,
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    mount_from: str | None,
    cancelled: threading.Event | None = None,
) -> Literal["present", "mounted", "uploaded"]:
    size = client.blob_exists(repository, desc.digest)
    if size is not None:
        if size != desc.size:
            raise ContentError(
                f"{client.host}/{repository}: the registry has {desc.digest} with {size} bytes,"
                f" not {desc.size}"
            )
        return "present"

    def open_blob() -> IO[bytes]:
        blob = store.blobs.open(desc.digest)
        return blob if cancelled is None else cast(IO[bytes], StopsWhenCancelled(blob, cancelled))

    mounted = client.upload_blob(
        repository, desc.digest, desc.size, open_blob, mount_from=mount_from
    )
    return "mounted" if mounted else "uploaded"


class StopsWhenCancelled(io.RawIOBase):
    """A blob read for an upload that stops at its next read once *cancelled* is set: another
    upload of the push failed, or the push was interrupted, and the upload in flight would
    otherwise send the rest of a blob the registry will never get a manifest for."""

    def __init__(self, blob: IO[bytes], cancelled: threading.Event) -> None:
        super().__init__()
        self._blob = blob
        self._cancelled = cancelled

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._cancelled.is_set():
            raise TransferCancelled()
        return self._blob.read(size)

    def close(self) -> None:
        self._blob.close()
        super().close()


# Long: the reduced index and the by-role sorting must see the same selection.
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
