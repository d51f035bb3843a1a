"""Pull: an image from a registry into the store, staged and verified like an import, and
committed through the same path."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Final, cast

from ..errors import (
    ContentError,
    InvalidDocumentError,
    NoMatchingPlatformError,
    NotFoundError,
    TransferCancelled,
)
from ..oci.digests import Digest
from ..oci.graph import MAX_INDEX_DEPTH, ImageGraph, walk
from ..oci.mediatypes import (
    DEFAULT_JSON_LIMIT,
    MAX_JSON_LIMIT,
    Descriptor,
    is_index,
    is_manifest,
    parse_index,
    parse_manifest,
)
from ..oci.platforms import Platform, PlatformChoice, PlatformMatcher
from ..oci.references import Reference
from ..progress import Progress
from ..registry.client import RegistryClient
from ..storage.files import raise_if_full, start_writeback
from ..storage.staged import StagedBlob
from .commit import NewImage, commit
from .context import StoreContext, finishing, platform_matcher
from .referrer_transfer import Fetched, discover_referrers
from .transfer import (
    ClientFactory,
    Interruption,
    PullAction,
    PullResult,
    default_client_factory,
    run_all,
)

#: A download starts the writeback of what it wrote after this many bytes, so that the final
#: fsync of each blob has little left to do (4 downloads of 64 MiB otherwise leave 256 MiB to
#: write at the end, a fifth of a cold pull from a registry on this machine).
WRITEBACK_STEP: Final = 8 << 20


def pull(
    store: StoreContext,
    ref: str,
    client_factory: ClientFactory = default_client_factory,
    *,
    platforms: PlatformChoice = (),
    progress: Progress | None = None,
    referrers: bool = True,
    interruption: Interruption | None = None,
) -> PullResult:
    """Pull *ref* into *store* under its normalised name, all or nothing.

    The top-level target is what the registry returns for *ref* (an index or a manifest);
    of an index only the selected platforms' manifests (default: this host's) and their blobs
    are fetched. Content the store already has is not downloaded. With *referrers* (the
    default) the signatures, attestations and SBOMs the registry has for the index and each
    pulled manifest come too (see :mod:`.referrer_transfer`). *interruption*, shared by the
    pulls of many images, stops all their downloads at once (see
    :class:`.transfer.Interruption`).
    """
    reference = Reference.parse(ref)
    name = str(reference)
    matcher = platform_matcher(platforms)
    progress = progress or Progress()
    tag_or_digest: str | Digest = reference.digest or reference.tag or "latest"
    with (
        finishing(progress),
        client_factory(reference.domain) as client,
        store.lease() as lease_id,
    ):
        cancelled = interruption.event() if interruption is not None else threading.Event()
        puller = _Puller(store, client, reference.path, lease_id, matcher, name, cancelled)
        target = puller.fetch_top(tag_or_digest)
        warnings: list[str] = []
        found = puller.fetch_with_referrers(target, warnings, progress, referrers=referrers)
        graph, needed = puller.walk_staged(target, found)
        # the import's commit; a pull takes what the registry says the name is (force)
        done = commit(
            store,
            lease_id,
            puller.staged,
            needed,
            [NewImage(name, target)],
            force=True,
            referrers=[f.referrer for f in found],
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
        referrers=len({f.referrer.digest for f in found}),
        warnings=warnings,
    )


def _plain(fetched: Fetched) -> Descriptor:
    """A fetched referrer's descriptor as a walk follows it."""
    desc = fetched.referrer.descriptor
    return Descriptor(desc.media_type, desc.digest, desc.size)


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
        cancelled: threading.Event,
    ) -> None:
        self.store = store
        self.client = client
        self.repository = repository
        self.lease_id = lease_id
        self.staging = store.blobs.staging_dir(lease_id)
        self.matcher = matcher
        self.name = name
        #: Stops this pull's downloads at their next chunk (one failed, or Ctrl-C).
        self.cancelled = cancelled
        self.staged: dict[Digest, StagedBlob] = {}
        #: Blobs the store's copy stands for (see StoreContext.reusable).
        self.reused: set[Digest] = set()
        self.blobs: dict[Digest, Descriptor] = {}
        self.seen: set[Digest] = set()
        self.blobs_downloaded = 0
        self.bytes_downloaded = 0
        self.blobs_present = 0
        self.manifests_downloaded = 0
        #: How many of ``blobs`` (in order) fetch_blobs has seen to; whether it started the
        #: progress (it starts again only for more blobs to download).
        self.blobs_handled = 0
        self.progress_started = False
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

    def fetch_top(self, tag_or_digest: str | Digest) -> Descriptor:
        """The pulled name's own manifest or index, staged with the documents under it."""
        top = self.client.get_manifest(self.repository, tag_or_digest)
        if not (is_index(top.media_type) or is_manifest(top.media_type)):
            raise InvalidDocumentError(
                f"{self.name}: the registry returned a {top.media_type}, not an image manifest"
                " or index"
            )
        target = Descriptor(top.media_type, top.digest, len(top.data))
        self.document(target, top.data, self.name, depth=0, fetched=True)
        return target

    def fetch_with_referrers(
        self, target: Descriptor, warnings: list[str], progress: Progress, *, referrers: bool
    ) -> list[Fetched]:
        """The image's blobs, and (with *referrers*) the referrers of *target* and of every
        document pulled under it, staged with their blobs; what could not be discovered is
        said in *warnings* (see :mod:`.referrer_transfer`).

        The discovery (a few requests per document, one after another) runs on a thread of
        its own while the blobs download: it needs only the registry, not the store. Its
        documents are staged here afterwards, and their blobs (seldom any) fetched then.
        """
        if not referrers:
            self.fetch_blobs(progress)
            return []
        from concurrent.futures import ThreadPoolExecutor  # not every command needs threads

        subjects = [target.digest, *self.seen]
        with ThreadPoolExecutor(1, thread_name_prefix="cargohold-referrers") as pool:
            discovery = pool.submit(
                discover_referrers, self.client, self.repository, subjects, warnings
            )
            try:
                self.fetch_blobs(progress)
            except BaseException:
                discovery.cancel()
                raise
            found = discovery.result()
        for fetched in found:
            what = f"{self.name}: referrer {fetched.referrer.digest.short}"
            self.document(_plain(fetched), fetched.data, what, depth=0, fetched=True)
        self.fetch_blobs(progress)
        return found

    def walk_staged(
        self, target: Descriptor, found: Sequence[Fetched]
    ) -> tuple[ImageGraph, dict[Digest, Descriptor]]:
        """The import's own walk over what is now staged or stored: sizes, media types and
        the platform selection checked once more, on exactly the bytes to be committed;
        returns the image's graph and every blob the commit needs (the referrers' too)."""
        graph = walk(self.source(), target, self.matcher, self.name)
        needed = dict(graph.blobs)
        for fetched in found:
            what = f"{self.name}: referrer {fetched.referrer.digest.short}"
            kept = walk(self.source(), _plain(fetched), PlatformMatcher.all(), what,
                        read_configs=False)  # fmt: skip
            needed.update(kept.blobs)
        return graph, needed

    def fetch_blobs(self, progress: Progress) -> None:
        """Download the configs and layers the store lacks, a few at a time, into staging
        (those of the documents staged since the last call)."""
        wanted: list[Descriptor] = []
        for desc in list(self.blobs.values())[self.blobs_handled :]:
            if desc.digest in self.staged or self._reuse(desc.digest, desc.size):
                self.blobs_present += 1
            else:
                wanted.append(desc)
        self.blobs_handled = len(self.blobs)
        if not wanted and self.progress_started:
            return
        self.progress_started = True
        progress.start("pull", sum(d.size for d in wanted))
        done = 0
        cancelled = self.cancelled

        def advance(n: int) -> None:
            nonlocal done
            with self._lock:
                done += n
                progress.update(done)

        def download(desc: Descriptor) -> StagedBlob:
            return self._download(desc, cancelled, advance)

        for desc, staged in zip(wanted, run_all(download, wanted, cancelled), strict=True):
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
                written = unflushed = 0

                def sink(chunk: memoryview) -> None:
                    nonlocal written, unflushed
                    if cancelled.is_set():
                        raise TransferCancelled()
                    f.write(chunk)
                    written += len(chunk)
                    unflushed += len(chunk)
                    if unflushed >= WRITEBACK_STEP:  # the disk works while the rest arrives
                        f.flush()
                        start_writeback(f.fileno(), unflushed, written)
                        unflushed = 0
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

    def source(self) -> PulledContent:
        return PulledContent(self.store, self.staged, self.reused)


class PulledContent:
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
