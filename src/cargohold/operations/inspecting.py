"""Looking without changing: an image's graph and configs, its raw documents, whether its
content is whole, and what an archive holds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Literal

from ..archive.delta import blob_members, check_plan, incomplete, missing_blobs
from ..archive.plan import ImportPlan, default_base_name
from ..archive.scan import scan
from ..archive.sources import open_members
from ..archive.volumes import VolumeReader, find_volumes, volume_stream
from ..defaults import DEFAULT_NAMESPACE
from ..errors import (
    CargoholdError,
    NotFoundError,
)
from ..limits import Limits
from ..oci.config import ConfigSummary
from ..oci.digests import Digest
from ..oci.graph import ContentSource, walk
from ..oci.mediatypes import MAX_JSON_LIMIT, config_platform, is_index, parse_config
from ..oci.platforms import Platform, PlatformChoice, PlatformMatcher
from ..oci.tree import TreeNode, tree
from ..progress import Progress
from ..storage.blobs import BlobStore
from ..storage.metadata import ImageRecord, MetadataStore
from ..storage.staged import HASH_ONLY, StagedBlob
from .context import (
    VERSION_FILE,
    StoreContext,
    check_version,
    default_root,
    finishing,
    image_target,
    platform_matcher,
)
from .importing import delta_omissions, plan_archive
from .referrers import referrer_closure
from .results import (
    ArchiveDelta,
    ArchiveImage,
    ArchiveReport,
    CheckResult,
    ImageInspection,
    ManifestInspection,
)


def inspect(
    ctx: StoreContext, ref: str, platforms: Sequence[str | Platform] = ()
) -> ImageInspection:
    """The image's whole graph, and a summary of the config of each (selected) manifest
    that is present."""
    record = ctx.resolve(ref)
    root = tree(ctx.blobs, image_target(record))
    matcher = platform_matcher(platforms, default_all=True)
    manifests = []
    for node in root.walk():
        if node.role != "manifest" or not node.present or node.problem or node.repeated:
            continue
        config = node.children[0] if node.children else None
        summary = None
        platform = node.descriptor.platform
        if config is not None and config.present:
            try:
                data = ctx.blobs.read_blob(config.descriptor.digest, MAX_JSON_LIMIT)
                summary = ConfigSummary.parse(data, f"config {config.descriptor.digest}")
                platform = platform or summary.platform
            except CargoholdError as exc:
                config.problem = str(exc)
        if not matcher.matches(platform):
            continue
        manifests.append(ManifestInspection(node, platform, summary))
    if platforms and not manifests:
        raise NotFoundError(f"image {record.name} has no manifest for {matcher}")
    documents = [
        n.descriptor.digest for n in root.walk() if n.role in ("index", "manifest") and n.present
    ]
    return ImageInspection(record, root, manifests, referrer_closure(ctx, documents))


def raw_document(
    ctx: StoreContext,
    ref: str,
    which: Literal["index", "manifest", "config"],
    platform: str | None = None,
) -> bytes:
    """The stored bytes of the image's index, or of the manifest or config for *platform*
    (default: the one this host would run), exactly as they are in the store."""
    record = ctx.resolve(ref)
    target = image_target(record)
    if which == "index":
        if not is_index(record.media_type):
            raise NotFoundError(f"image {record.name} is a single manifest, not an index")
        return ctx.blobs.read_blob(record.digest, MAX_JSON_LIMIT)
    matcher = platform_matcher([platform] if platform else [])
    graph = walk(ctx.blobs, target, matcher, record.name, read_configs=False)
    chosen = graph.preferred(matcher)
    if chosen is None:
        raise NotFoundError(f"image {record.name} has no manifest for {matcher}")
    digest = chosen.descriptor.digest if which == "manifest" else chosen.manifest.config.digest
    return ctx.blobs.read_blob(digest, MAX_JSON_LIMIT)


def check(
    ctx: StoreContext,
    refs: Sequence[str] = (),
    *,
    platforms: PlatformChoice = (),
    verify: bool = False,
) -> list[CheckResult]:
    """Whether each image's content is all there (and, with *verify*, intact).

    By default every manifest the store holds is checked, and manifests of an index that
    were never imported are not counted against it (an import selects platforms); with
    *platforms* (some, or "all"), the selected manifests must be present.
    """
    records = [ctx.resolve(r) for r in refs] if refs else ctx.meta.list_images(ctx.namespace)
    explicit = bool(platforms)
    matcher = platform_matcher(platforms, default_all=True)
    verified: dict[Digest, bool] = {}

    def intact(digest: Digest) -> bool:
        if digest not in verified:
            verified[digest] = ctx.blobs.verify(digest)
        return verified[digest]

    results = []
    for record in records:
        root = tree(ctx.blobs, image_target(record))
        results.extend(
            _check_image(record, root, matcher, explicit, intact if verify else None, ctx.blobs)
        )
    return results


# Long: an import's scan and plan run for a report, each step's outcome recorded in it.
def inspect_archive(
    source: str | Path | BinaryIO,
    root: str | Path | None = None,
    *,
    platforms: PlatformChoice = (),
    progress: Progress | None = None,
    limits: Limits | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> ArchiveReport:
    """What an archive holds, and what importing it into the store at *root* would add.

    Every member is read and verified as an import would, but nothing is written: not to the
    store (which is only looked at, and need not exist) and not to any temporary file. A delta
    archive is planned with the blobs it omits taken from *namespace*, when it holds them all.
    """
    store_root = Path(root) if root is not None else default_root()
    if (store_root / VERSION_FILE).is_file():
        check_version(store_root, "read")
    blobs = BlobStore(store_root / "content")
    progress = progress or Progress()
    label = None if isinstance(source, str) and source == "-" else source
    volumes = find_volumes(Path(label)) if isinstance(label, (str, Path)) else None
    reader = VolumeReader(volumes) if volumes is not None else None
    if volumes is not None and reader is not None:  # read as one stream, each volume checked
        label, source = volumes.label, volume_stream(reader)
    base = default_base_name(str(label) if isinstance(label, (str, Path)) else None)
    limits = limits or Limits()
    with (
        finishing(progress),
        reader or contextlib.nullcontext(),
        open_members(source, progress, "inspect", limits) as members,
    ):
        contents = scan(members, blobs, None, lambda _d, _s: False, progress, limits.document_bytes)
    distinct = {b.digest: b.size for b in [*contents.staged.values(), *contents.files.values()]}
    report = ArchiveReport(
        "oci" if contents.layout is not None or contents.manifest_json is None else "docker",
        blobs=len(distinct),
        size=sum(distinct.values()),
    )
    omitted = delta_omissions(contents)
    if omitted is not None:
        report.delta = _delta_report(omitted, store_root, namespace, blobs)
        missing = set(report.delta.missing)
        contents.held = lambda d, size: omitted.get(d) == size and (d, size) not in missing
        if report.delta.missing:
            report.problem = str(incomplete(report.delta.missing, namespace))

    def stage(data: bytes) -> StagedBlob:
        return blobs.stage_bytes(data, HASH_ONLY, "manifest")

    matcher = platform_matcher(platforms)
    plan: ImportPlan | None = None
    try:
        if report.problem is None:  # else an incomplete delta: refused before planning
            plan = plan_archive(contents, matcher, base, stage)
            if omitted is not None:
                check_plan(
                    omitted, blob_members(contents.members) | set(contents.staged), plan.needed
                )
    except CargoholdError as exc:
        report.problem = str(exc)
        plan = None
    if plan is not None:
        report.importable = True
        report.warnings.extend(plan.warnings)
        for digest, desc in plan.needed.items():
            if blobs.blob_size(digest) is None:
                report.new_blobs += 1
                report.bytes_to_add += desc.size
    listing: ImportPlan | None
    try:
        # every platform, for the listing; an archive that only imports with a platform
        # selection is listed by that selection
        listing = plan_archive(contents, PlatformMatcher.all(), base, stage, skip_missing=True)
    except CargoholdError:
        listing = plan
    by_digest: dict[Digest, ArchiveImage] = {}
    for planned in listing.images if listing else []:
        image = by_digest.get(planned.target.digest)
        if image is None:
            node = tree(contents, planned.target)
            found = {n.descriptor.digest: n for n in node.walk() if n.present}
            image = ArchiveImage(
                [],
                planned.target,
                sorted(_node_platforms(contents, node), key=Platform.sort_key),
                sum(n.descriptor.size for n in found.values()),
                [str(n.descriptor.digest) for n in node.walk() if not n.present],
            )
            by_digest[planned.target.digest] = image
            report.images.append(image)
        if planned.name not in image.names:
            image.names.append(planned.name)
    return report


def _delta_report(
    omitted: dict[Digest, int], root: Path, namespace: str, blobs: BlobStore
) -> ArchiveDelta:
    """What a delta omits, and which of those blobs *namespace* of the store at *root* lacks
    (all of them, when there is no store)."""
    delta = ArchiveDelta(len(omitted), sum(omitted.values()), None)
    if not (root / "metadata.db").is_file():
        delta.missing = sorted(omitted.items())
        return delta
    delta.namespace = namespace
    meta = MetadataStore(root / "metadata.db", "read")
    try:

        def held_size(digest: Digest) -> int | None:
            return blobs.regular_size(digest) if meta.holds(namespace, digest) else None

        delta.missing = missing_blobs(omitted, held_size, lambda _d, _s: True)
    finally:
        meta.close()
    return delta


def _node_platforms(source: ContentSource, root: TreeNode) -> set[Platform]:
    found: set[Platform] = set()
    for node in root.walk():
        if node.role != "manifest":
            continue
        if node.descriptor.platform is not None:
            found.add(node.descriptor.platform)
        else:
            platform = _node_platform(source, node)
            if platform is not None:
                found.add(platform)
    return found


def _node_platform(source: ContentSource, node: TreeNode) -> Platform | None:
    """A manifest's platform from its config (single-manifest images carry it only there)."""
    config = node.children[0] if node.children else None
    if config is None or not config.present:
        return None
    try:
        data = source.read_blob(config.descriptor.digest, MAX_JSON_LIMIT)
        return config_platform(parse_config(data, f"config {config.descriptor.digest}"))
    except CargoholdError:
        return None


def _config_problem(source: ContentSource, manifest: TreeNode) -> str | None:
    """Why the config of a readable manifest cannot be read as one; None when it can, and
    when it is absent or of the wrong size (the check reports those as missing or corrupt).

    Configs are small, so a check without --verify still reads and parses every one: a
    config that is not a JSON object makes the image unusable, whatever its bytes hash to.
    """
    config = manifest.children[0] if manifest.children else None
    if config is None or not config.present or config.problem is not None:
        return None
    try:
        data = source.read_blob(config.descriptor.digest, source.document_limit)
        parse_config(data, f"config {config.descriptor.digest}")
    except NotFoundError:
        return None  # removed since the tree was read; the next check reports it missing
    except CargoholdError as exc:
        return str(exc)
    return None


# Long: the statuses of one image's manifests are decided together (listed and found counts).
def _check_image(
    record: ImageRecord,
    root: TreeNode,
    matcher: PlatformMatcher,
    explicit: bool,
    intact: Callable[[Digest], bool] | None,
    source: ContentSource,
) -> list[CheckResult]:
    """One result per manifest of the image that the check covers."""
    if not root.present:
        return [CheckResult(record, None, "unavailable", [root])]
    if root.problem is not None:
        check = CheckResult(record, None, "invalid", [root], problem=root.problem)
        if intact is not None and not intact(root.descriptor.digest):
            check.status, check.corrupt = "corrupt", [str(root.descriptor.digest)]
        return [check]
    results = []
    listed = found = 0
    corrupt_indexes = [
        str(n.descriptor.digest)
        for n in root.walk()
        if n.role == "index" and intact is not None and not intact(n.descriptor.digest)
    ]
    for node in root.walk():
        if node.role != "manifest" or node.repeated:
            continue
        listed += 1
        platform = node.descriptor.platform
        if node.present and platform is None:
            platform = _node_platform(source, node)
        if explicit and not matcher.matches(platform):
            continue
        if not node.present:
            if explicit:
                results.append(CheckResult(record, platform, "unavailable", [node]))
            continue
        found += 1
        if node.problem is not None:
            check = CheckResult(record, platform, "invalid", [node], problem=node.problem)
            if intact is not None and not intact(node.descriptor.digest):
                check.status, check.corrupt = "corrupt", [str(node.descriptor.digest)]
            results.append(check)
            continue
        nodes = [node, *node.children]
        check = CheckResult(record, platform, "complete", nodes)
        check.corrupt = [str(n.descriptor.digest) for n in node.children if n.problem]
        if intact is not None:
            check.corrupt = corrupt_indexes + [
                str(n.descriptor.digest)
                for n in nodes
                if n.present and (n.problem or not intact(n.descriptor.digest))
            ]
        check.problem = _config_problem(source, node)
        if check.missing:
            check.status = "incomplete"
        elif check.corrupt:
            check.status = "corrupt"
        elif check.problem is not None:
            check.status = "invalid"
        results.append(check)
    if not found and not explicit:
        results.append(CheckResult(record, None, "unavailable", [root]))
    if record.partial and not explicit:
        results.append(
            CheckResult(
                record,
                None,
                "partial",
                [root],
                problem=f"{found} of {listed} manifests imported (--skip-missing)",
            )
        )
    return results
