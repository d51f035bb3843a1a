"""Import: an archive's images into the store, all or nothing, through the commit path that
pull shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

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
from ..archive.members import Member
from ..archive.plan import ImportPlan, default_base_name
from ..archive.scan import ScanHooks, scan
from ..archive.sources import open_members
from ..archive.volumes import find_volumes
from ..errors import (
    InvalidArchiveError,
)
from ..limits import Limits
from ..oci.digests import Digest
from ..oci.platforms import PlatformChoice, PlatformMatcher
from ..progress import Progress, Relay
from ..storage.staged import StagedBlob
from .commit import NewImage, commit
from .context import (
    StoreContext,
    finishing,
    platform_matcher,
)
from .results import (
    ImportResult,
)
from .resuming import resumable_import
from .verifying import load_key, require_signatures

if TYPE_CHECKING:  # loads the cryptography package, which only a key needs
    from ..oci.keys import PublicKey


@dataclass(frozen=True, slots=True)
class _Options:
    """What an import was asked for, past where its archive's members come from."""

    matcher: PlatformMatcher
    base: str
    tags: tuple[str, ...]
    digests: bool
    index_name: str | None
    force: bool
    skip_missing: bool
    compress_blobs: bool
    progress: Progress
    limits: Limits
    #: The public key every imported image must carry a valid signature by, and its file.
    key: PublicKey | None = None
    key_name: str = ""


# Long: a third of it is the public API's keyword arguments; the rest is one lease's scope.
def import_archive(
    ctx: StoreContext,
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
    """Import an archive (a path, ``"-"`` for stdin, or a binary stream), all or nothing.

    The signatures, attestations and SBOMs the archive carries for the imported images are
    kept with them. With *require_signature* (a public key file) an image without a valid
    cosign signature by that key in the archive refuses the whole import.

    A split archive (``OUT.001`` or ``OUT.sha256``, see :mod:`cargohold.archive.volumes`) is
    read volume by volume, each verified, and resumed where an earlier run stopped (see
    :mod:`cargohold.operations.resuming`)."""
    key = load_key(require_signature) if require_signature is not None else None
    path = None if isinstance(source, str) and source == "-" else source
    volumes = find_volumes(Path(path)) if isinstance(path, (str, Path)) else None
    label = volumes.label if volumes else str(path) if isinstance(path, (str, Path)) else None
    options = _Options(
        platform_matcher(platforms),
        base_name or default_base_name(label),
        tuple(tags),
        digests,
        index_name,
        force,
        skip_missing,
        compress_blobs,
        progress or Progress(),
        limits or Limits(),
        key,
        str(require_signature) if require_signature is not None else "",
    )
    if volumes is not None:
        with finishing(options.progress), resumable_import(ctx, volumes, force) as run:
            # Every volume is read and checked (the stream to its end) before the commit.
            with run.members(options.progress, limits) as members:
                contents = _scan(ctx, run.lease_id, run.staging, members, options, run.hooks)
            result = _plan_and_commit(ctx, run.lease_id, run.staging, contents, options)
        result.bytes_read = run.reader.bytes_read
        result.volumes = run.reader.opened
        return result
    tap = _BytesRead(options.progress)
    with (
        finishing(options.progress),
        ctx.lease() as lease_id,
        open_members(source, tap, "import", limits) as members,
    ):
        staging = ctx.blobs.staging_dir(lease_id)
        contents = _scan(ctx, lease_id, staging, members, options, None)
        result = _plan_and_commit(ctx, lease_id, staging, contents, options)
    result.bytes_read = tap.done
    return result


def _scan(
    ctx: StoreContext,
    lease_id: str,
    staging: Path,
    members: Iterator[Member],
    options: _Options,
    hooks: ScanHooks | None,
) -> ArchiveContents:
    """Scan the members into *staging* under *lease_id*."""

    def already_stored(digest: Digest, size: int) -> bool:
        return not options.force and ctx.reusable(lease_id, digest, size)

    return scan(
        members,
        ctx.blobs,
        staging,
        already_stored,
        options.progress,
        options.limits.document_bytes,
        held=lambda digest, size: ctx.reusable(lease_id, digest, size),
        hooks=hooks,
    )


def _plan_and_commit(
    ctx: StoreContext,
    lease_id: str,
    staging: Path,
    contents: ArchiveContents,
    options: _Options,
) -> ImportResult:
    """Plan the images of the scanned archive and commit them: a delta's omitted blobs must
    all be held (and are leased) before anything is planned, and the required signatures
    checked before anything is committed."""
    result = ImportResult()
    omitted = delta_omissions(contents)
    if omitted is not None:
        check_delta_held(ctx, lease_id, omitted)
        contents.present.update(omitted)  # held, checked and leased: the walk's to use
    plan = plan_archive(
        contents,
        options.matcher,
        options.base,
        lambda data: ctx.blobs.stage_bytes(data, staging, "manifest"),
        tags=options.tags,
        digests=options.digests,
        index_name=options.index_name,
        skip_missing=options.skip_missing,
        compress=(lambda blob: ctx.blobs.stage_gzipped(blob, staging))
        if options.compress_blobs
        else None,
    )
    result.warnings.extend(plan.warnings)
    if options.key is not None:
        require_signatures(contents, plan, options.key, options.key_name)
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
        force=options.force,
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


class _BytesRead(Relay):
    """Passes progress on, keeping the count of archive bytes read (the import's bytesRead)."""

    def __init__(self, inner: Progress) -> None:
        super().__init__(inner)
        self.done = 0

    def update(self, done: int) -> None:
        self.done = max(self.done, done)
        self.inner.update(done)


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
