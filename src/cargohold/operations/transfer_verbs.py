"""The store's verbs that move images in and out: import and export of archives, pull, push,
sync and push of every image.

:class:`TransferVerbs` is a layer of :class:`~cargohold.operations.store.Store` (which adds
names, namespaces, content and inspection on top); each verb hands its work to a module of its
own, imported when the verb is first used, so that a command that lists images loads neither
the archive code nor the registry's HTTP stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..archive.compression import Compression
from ..limits import Limits
from ..oci.platforms import PlatformChoice
from ..progress import Progress
from .context import StoreContext
from .results import ExportResult, ImportResult

if TYPE_CHECKING:
    from ..archive.writer import RefNameForm
    from .pushingall import PushAllEntry, PushAllResult
    from .syncing import SyncEntry, SyncResult
    from .synclists import SyncList
    from .transfer import ClientFactory, PullResult, PushResult


class TransferVerbs(StoreContext):
    """A store's root in one namespace (see :class:`StoreContext`) with the verbs that bring
    images in (import, pull, sync) and send them out (export, push, push of every image)."""

    # -- import and export ---------------------------------------------------------------

    def import_archive(
        self,
        source: str | Path | BinaryIO,
        *,
        base_name: str | None = None,
        tags: Sequence[str] = (),
        digests: bool = False,
        index_name: str | None = None,
        platforms: PlatformChoice = (),
        force: bool = False,
        skip_missing: bool = False,
        compress_blobs: bool = False,
        progress: Progress | None = None,
        limits: Limits | None = None,
        require_signature: str | Path | None = None,
    ) -> ImportResult:
        """Import an archive (a path, ``"-"`` for stdin, or a binary stream), all or nothing
        (see :func:`cargohold.operations.importing.import_archive`)."""
        from . import importing

        return importing.import_archive(
            self,
            source,
            base_name=base_name,
            tags=tags,
            digests=digests,
            index_name=index_name,
            platforms=platforms,
            force=force,
            skip_missing=skip_missing,
            compress_blobs=compress_blobs,
            progress=progress,
            limits=limits,
            require_signature=require_signature,
        )

    def export(
        self,
        out: str | Path | BinaryIO,
        refs: Sequence[str],
        *,
        platforms: PlatformChoice = (),
        skip_manifest_json: bool = False,
        skip_non_distributable: bool = False,
        compress: Compression = "none",
        layout_dir: bool = False,
        progress: Progress | None = None,
        sync: bool = False,
        verify: bool = False,
        ref_name: RefNameForm = "full",
        name_as: str | None = None,
        against: Sequence[str | Path] = (),
        referrers: bool = True,
        split_size: int | None = None,
    ) -> ExportResult:
        """Write the images *refs* to *out*, a path, ``"-"`` for stdout, or a binary stream
        (see :func:`cargohold.operations.exporting.export`)."""
        from . import exporting

        return exporting.export(
            self,
            out,
            refs,
            platforms=platforms,
            skip_manifest_json=skip_manifest_json,
            skip_non_distributable=skip_non_distributable,
            compress=compress,
            layout_dir=layout_dir,
            progress=progress,
            sync=sync,
            verify=verify,
            ref_name=ref_name,
            name_as=name_as,
            against=against,
            referrers=referrers,
            split_size=split_size,
        )

    # -- registries ----------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platforms: PlatformChoice = (),
        client_factory: ClientFactory | None = None,
        progress: Progress | None = None,
        referrers: bool = True,
    ) -> PullResult:
        """Pull *ref* from its registry under its normalised name, all or nothing (see
        :func:`cargohold.operations.pulling.pull`). *client_factory* makes the
        :class:`~cargohold.registry.RegistryClient` for a host (default: TLS, docker config)."""
        from . import pulling, transfer  # the HTTP stack loads only for commands that need it

        return pulling.pull(
            self,
            ref,
            client_factory or transfer.default_client_factory,
            platforms=platforms,
            progress=progress,
            referrers=referrers,
        )

    def push(
        self,
        ref: str,
        destination: str | None = None,
        *,
        platforms: PlatformChoice = (),
        client_factory: ClientFactory | None = None,
        progress: Progress | None = None,
        referrers: bool = True,
    ) -> PushResult:
        """Push the stored image *ref* to *destination* (default: its own name); see
        :func:`cargohold.operations.pushing.push`."""
        from . import pushing, transfer

        return pushing.push(
            self,
            ref,
            destination,
            client_factory or transfer.default_client_factory,
            platforms=platforms,
            progress=progress,
            referrers=referrers,
        )

    def sync(
        self,
        lists: SyncList,
        *,
        platforms: PlatformChoice = (),
        client_factory: ClientFactory | None = None,
        jobs: int = 4,
        dry_run: bool = False,
        prune: bool = False,
        report: Callable[[SyncEntry], None] | None = None,
    ) -> SyncResult:
        """Bring the store in line with *lists* (see :func:`cargohold.operations.syncing.sync`;
        read them with :func:`cargohold.operations.synclists.read`)."""
        from . import syncing, transfer

        return syncing.sync(
            self,
            lists,
            client_factory or transfer.default_client_factory,
            platforms=platforms,
            jobs=jobs,
            dry_run=dry_run,
            prune=prune,
            report=report,
        )

    def push_all(
        self,
        dest: str,
        filters: Sequence[str] = (),
        *,
        platforms: PlatformChoice = (),
        client_factory: ClientFactory | None = None,
        jobs: int = 4,
        report: Callable[[PushAllEntry], None] | None = None,
        referrers: bool = True,
    ) -> PushAllResult:
        """Push every image (those *filters* select) under *dest*, keeping repository paths
        and tags (see :func:`cargohold.operations.pushingall.push_all`)."""
        from . import pushingall, transfer

        return pushingall.push_all(
            self,
            dest,
            client_factory or transfer.default_client_factory,
            filters=filters,
            platforms=platforms,
            jobs=jobs,
            report=report,
            referrers=referrers,
        )
