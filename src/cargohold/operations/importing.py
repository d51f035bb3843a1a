"""Import: an archive's images into the store, all or nothing, through the commit path that
pull shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ..archive import reader as archive_import
from ..archive.sources import open_members
from ..errors import (
    InvalidArchiveError,
)
from ..limits import Limits
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.platforms import Platform, PlatformMatcher
from ..progress import Progress
from ..storage.blobs import StagedBlob
from ..storage.metadata import ImageRecord
from .context import (
    StoreContext,
    finishing,
    image_target,
    platform_matcher,
)
from .results import (
    Action,
    ImportedImage,
    ImportResult,
)


def import_archive(
    ctx: StoreContext,
    source: str | Path | BinaryIO,
    *,
    base_name: str | None = None,
    tags: Sequence[str] = (),
    digests: bool = False,
    index_name: str | None = None,
    platforms: Sequence[str | Platform] = (),
    all_platforms: bool = False,
    force: bool = False,
    skip_missing: bool = False,
    compress_blobs: bool = False,
    progress: Progress | None = None,
    limits: Limits | None = None,
) -> ImportResult:
    """Import an archive (a path, ``"-"`` for stdin, or a binary stream), all or nothing."""
    matcher = platform_matcher(platforms, all_platforms)
    path = None if isinstance(source, str) and source == "-" else source
    label = str(path) if isinstance(path, (str, Path)) else None
    base = base_name or archive_import.default_base_name(label)
    result = ImportResult()
    progress = progress or Progress()
    with (
        finishing(progress),
        ctx.lease() as lease_id,
        open_members(source, progress, "import", limits) as members,
    ):
        staging = ctx.blobs.staging_dir(lease_id)

        def already_stored(digest: Digest, size: int) -> bool:
            return not force and ctx.reusable(lease_id, digest, size)

        contents = archive_import.scan(
            members,
            ctx.blobs,
            staging,
            already_stored,
            progress,
            (limits or Limits()).document_bytes,
            held=lambda digest, size: ctx.reusable(lease_id, digest, size),
        )
        plan = plan_archive(
            contents,
            matcher,
            base,
            lambda data: ctx.blobs.stage_bytes(data, staging, "manifest"),
            tags=tuple(tags),
            digests=digests,
            index_name=index_name,
            skip_missing=skip_missing,
            compress=(lambda blob: ctx.blobs.stage_gzipped(blob, staging))
            if compress_blobs
            else None,
        )
        result.warnings.extend(plan.warnings)
        if plan.index_blob is not None:
            staged = ctx.blobs.stage_bytes(plan.index_blob, staging, "index.json")
            contents.staged.setdefault(staged.digest, staged)
        ctx.meta.add_to_lease(lease_id, list(plan.needed))
        staged_blobs = (contents.staged.get(digest) for digest in plan.needed)
        written = iter(ctx.blobs.commit_many(b for b in staged_blobs if b is not None))
        for digest, desc in plan.needed.items():
            if digest in contents.staged and next(written):
                result.blobs_written += 1
                result.bytes_written += desc.size
            else:
                result.bytes_deduplicated += desc.size
        ctx.blobs.sync()
        with ctx.meta.transaction() as db:
            ctx.meta.hold(db, ctx.namespace, plan.needed)
            for image in plan.images:
                action = _action(ctx, image, force)
                if action in ("created", "updated"):
                    record = ImageRecord(
                        image.name,
                        image.target.media_type,
                        image.target.digest,
                        image.target.size,
                        dict(image.target.annotations),
                        _labels(ctx, image.name),
                        partial=bool(image.skipped),
                    )
                    ctx.meta.put_image(db, ctx.namespace, record)
                elif action == "kept":
                    result.warnings.append(
                        f"{image.name}: kept the stored image, the archive's is older"
                        " (use --force to replace it)"
                    )
                result.images.append(ImportedImage(image.name, image.target.digest, action))
                if image.skipped:
                    result.warnings.append(
                        f"{image.name}: imported partially, {len(image.skipped)} manifest(s)"
                        " of its index were not in the archive"
                    )
    return result


def plan_archive(
    contents: archive_import.ArchiveContents,
    matcher: PlatformMatcher,
    base: str,
    stage: Callable[[bytes], StagedBlob],
    *,
    tags: tuple[str, ...] = (),
    digests: bool = False,
    index_name: str | None = None,
    skip_missing: bool = False,
    compress: Callable[[StagedBlob], StagedBlob] | None = None,
) -> archive_import.ImportPlan:
    """The images an import of the scanned archive yields: an OCI layout, or docker's."""
    if contents.layout is not None or contents.manifest_json is None:
        return archive_import.plan_oci(
            contents, matcher, base, tags, digests, index_name, skip_missing
        )
    if index_name is not None:
        raise InvalidArchiveError("--index-name needs an OCI layout archive")
    plan = archive_import.plan_docker(contents, matcher, base, stage, tags, digests, compress)
    if compress is not None:
        plan.warnings.append(
            "--compress-blobs: uncompressed layers were gzipped; the manifests'"
            " digests differ from what other tools compute for this archive"
        )
    return plan


def _labels(ctx: StoreContext, name: str) -> dict[str, str]:
    existing = ctx.meta.get_image(ctx.namespace, name)
    return dict(existing.labels) if existing else {}


def _action(ctx: StoreContext, image: archive_import.PlannedImage, force: bool) -> Action:
    existing = ctx.meta.get_image(ctx.namespace, image.name)
    if existing is None:
        return "created"
    if existing.digest == image.target.digest:
        return "unchanged"
    if force:
        return "updated"
    old = walk(
        ctx.blobs, image_target(existing), PlatformMatcher.all(), existing.name, missing_ok=True
    )
    if old.created and image.created and image.created < old.created:
        return "kept"
    return "updated"
