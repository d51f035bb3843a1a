"""Import: an archive's images into the store, all or nothing, through the commit path that
pull shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ..archive.contents import ArchiveContents
from ..archive.delta import (
    DELTA_MEMBER,
    blob_members,
    check_archive_omits,
    check_plan,
    incomplete,
    missing_blobs,
    parse_delta,
)
from ..archive.docker import plan_docker
from ..archive.layout import plan_oci
from ..archive.plan import ImportPlan, default_base_name
from ..archive.scan import scan
from ..archive.sources import open_members
from ..errors import (
    InvalidArchiveError,
)
from ..limits import Limits
from ..oci.digests import Digest
from ..oci.platforms import Platform, PlatformMatcher
from ..progress import Progress
from ..storage.ingest import StagedBlob
from .commit import NewImage, commit
from .context import (
    StoreContext,
    finishing,
    platform_matcher,
)
from .results import (
    ImportResult,
)
from .verifying import load_key, require_signatures


# Long: a third of it is the public API's keyword arguments; the rest is one lease's scope.
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
    require_signature: str | Path | None = None,
) -> ImportResult:
    """Import an archive (a path, ``"-"`` for stdin, or a binary stream), all or nothing.

    The signatures, attestations and SBOMs the archive carries for the imported images are
    kept with them. With *require_signature* (a public key file) an image without a valid
    cosign signature by that key in the archive refuses the whole import."""
    key = load_key(require_signature) if require_signature is not None else None
    matcher = platform_matcher(platforms, all_platforms)
    path = None if isinstance(source, str) and source == "-" else source
    label = str(path) if isinstance(path, (str, Path)) else None
    base = base_name or default_base_name(label)
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

        contents = scan(
            members,
            ctx.blobs,
            staging,
            already_stored,
            progress,
            (limits or Limits()).document_bytes,
            held=lambda digest, size: ctx.reusable(lease_id, digest, size),
        )
        omitted = delta_omissions(contents)
        if omitted is not None:
            check_delta_held(ctx, lease_id, omitted)
            contents.present.update(omitted)  # held, checked and leased: the walk's to use
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
        if key is not None:
            require_signatures(contents, plan, key, str(require_signature))
        if plan.index_blob is not None:
            staged = ctx.blobs.stage_bytes(plan.index_blob, staging, "index.json")
            contents.staged.setdefault(staged.digest, staged)
        if omitted is not None:
            shipped = blob_members(contents.members) | set(contents.staged)
            check_plan(omitted, shipped, plan.needed)
        done = commit(
            ctx,
            lease_id,
            contents.staged,
            plan.needed,
            [NewImage(i.name, i.target, i.created, len(i.skipped)) for i in plan.images],
            force=force,
            referrers=plan.referrers,
        )
    result.images = done.images
    result.blobs_written = done.blobs_written
    result.bytes_written = done.bytes_written
    result.bytes_deduplicated = done.bytes_deduplicated
    result.warnings.extend(done.warnings)
    return result


def delta_omissions(contents: ArchiveContents) -> dict[Digest, int] | None:
    """The blobs a delta archive says it left out; None when the archive is no delta."""
    if contents.delta is None:
        return None
    if contents.layout is None:
        raise InvalidArchiveError(
            f"member {DELTA_MEMBER!r}: a delta archive must be an OCI image layout (no oci-layout)"
        )
    omitted = parse_delta(contents.delta, contents.document_limit)
    check_archive_omits(omitted, contents.members)
    return omitted


def check_delta_held(ctx: StoreContext, lease_id: str, omitted: dict[Digest, int]) -> None:
    """Refuse a delta whose omitted blobs this namespace does not all hold, before anything is
    planned; the ones it holds are leased, as a normal import's reused blobs are."""

    def held_size(digest: Digest) -> int | None:
        if not ctx.meta.holds(ctx.namespace, digest):
            return None
        return ctx.blobs.regular_size(digest)

    missing = missing_blobs(
        omitted, held_size, lambda digest, size: ctx.reusable(lease_id, digest, size)
    )
    if missing:
        raise incomplete(missing, ctx.namespace)


def plan_archive(
    contents: ArchiveContents,
    matcher: PlatformMatcher,
    base: str,
    stage: Callable[[bytes], StagedBlob],
    *,
    tags: tuple[str, ...] = (),
    digests: bool = False,
    index_name: str | None = None,
    skip_missing: bool = False,
    compress: Callable[[StagedBlob], StagedBlob] | None = None,
) -> ImportPlan:
    """The images an import of the scanned archive yields: an OCI layout, or docker's."""
    if contents.layout is not None or contents.manifest_json is None:
        return plan_oci(contents, matcher, base, tags, digests, index_name, skip_missing)
    if index_name is not None:
        raise InvalidArchiveError("--index-name needs an OCI layout archive")
    plan = plan_docker(contents, matcher, base, stage, tags, digests, compress)
    if compress is not None:
        plan.warnings.append(
            "--compress-blobs: uncompressed layers were gzipped; the manifests'"
            " digests differ from what other tools compute for this archive"
        )
    return plan
