"""The image commands that move images in and out of the store: ``import`` (archives),
``pull`` and ``push`` (registries); ``export`` is :mod:`.image_export`'s. :mod:`.image` puts
them in the image group."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, Unpack

import click

from ..errors import CargoholdError
from ..limits import Limits
from .completion import complete_images, complete_paths
from .context import Context, pass_context
from .jsonout import import_json, pull_json, push_all_json, push_json
from .options import (
    BoolValueCommand,
    PlatformSelection,
    format_option,
    limit_options,
    platform_choice,
    platform_options,
    progress_option,
    quiet_option,
    registry_access_options,
    registry_options,
)
from .progress import make_progress
from .render import echo, print_json, warn
from .streams import refuse_terminal_stdin
from .sync import jobs_option
from .transports import parse_location
from .units import counted, human_size

if TYPE_CHECKING:
    from ..operations.results import ImportResult
    from ..operations.transfer import ClientFactory, PushResult
    from .access import RegistryAccess


class ImportFlags(TypedDict):
    """The flags of ``image import`` that
    :meth:`~cargohold.operations.store.Store.import_archive` takes as they are, under the same
    names (mypy checks the two agree)."""

    base_name: str | None
    index_name: str | None
    force: bool
    skip_missing: bool
    compress_blobs: bool
    require_signature: str | None
    limits: Limits


@click.command("import")
@click.argument("archive", metavar="FILE|DIR|-", shell_complete=complete_paths)
@click.option(
    "--base-name",
    metavar="NAME",
    help="Repository for bare tags in the archive. Default: FILE's name; from stdin,"
    " import-YYYY-MM-DD (today's date).",
)
@click.option("--tag", "tags", multiple=True, metavar="REF", help="Name the image REF instead.")
@click.option("--digests", is_flag=True, help="Also name each image <base-name>@<digest>.")
@click.option(
    "--skip-digest-for-named",
    is_flag=True,
    help="With --digests, give digest names only to images the archive leaves unnamed"
    " (as ctr; those are named by digest here anyway, so --digests is then a no-op).",
)
@click.option("--index-name", metavar="NAME", help="Keep the archive's index as image NAME.")
@platform_options
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing names even with images that are not newer (same or older created).",
)
@click.option(
    "--skip-missing",
    is_flag=True,
    help="Import what is there when selected manifests are absent; the image is marked partial.",
)
@click.option(
    "--compress-blobs",
    is_flag=True,
    help="Gzip uncompressed docker-archive layers on the way in (their digests change).",
)
@click.option(
    "--no-unpack",
    is_flag=True,
    help="Accepted for ctr's scripts; a no-op: cargohold never unpacks layers.",
)
@click.option(
    "--local",
    is_flag=True,
    help="Accepted for ctr's scripts; a no-op: the import always runs in this process.",
)
@click.option(
    "--require-signature",
    metavar="KEY.pub",
    help="Refuse the archive (nothing is stored) unless each image it imports carries a"
    " cosign signature by this public key, checked offline.",
)
@limit_options
@format_option
@progress_option
@quiet_option
@pass_context
def import_(
    ctx: Context,
    archive: str,
    tags: tuple[str, ...],
    digests: bool,
    skip_digest_for_named: bool,
    selection: PlatformSelection,
    no_unpack: bool,
    local: bool,
    output_format: str,
    progress_mode: str,
    quiet: bool,
    **flags: Unpack[ImportFlags],
) -> None:
    """Import the images of an archive: a tar (FILE, or - for stdin) of an OCI image layout
    (ctr, skopeo, podman, regctl, docker 25+) or of docker save's format, plain or gzip, zstd,
    xz or bzip2 compressed (found from its first bytes), or an OCI layout directory (DIR).

    Bare tags in the archive are put under --base-name, by default FILE's name without its
    extension; from stdin, import-YYYY-MM-DD (today's date, with a warning), so a pipe that
    should name its image the same every day gives --base-name.

    skopeo's oci-archive:FILE, docker-archive:FILE and oci:DIR are understood; a reference
    after the path (oci-archive:FILE:REF) names the image REF, as --tag does. A file whose
    name merely starts like that is still read as a file.

    Every blob is verified; nothing is stored unless the whole archive is sound. The
    signatures, attestations and SBOMs the archive carries for its images are kept with them.

    An archive in volumes (image export --split-size) is imported from FILE.001 or FILE.sha256:
    the volumes are read in order, each checked against the list. A missing or damaged volume
    stops the import, naming it; run the same import again once it is replaced, and the
    volumes already checked are not read again (content gc keeps what they staged for
    --resumable-max-age).
    """
    location = parse_location(archive)
    if location.reference is not None:
        tags = (location.reference, *tags)
    refuse_terminal_stdin(location.path)
    with ctx.store("write") as store:
        result = store.import_archive(
            location.path,
            tags=tags,
            digests=digests and not skip_digest_for_named,
            platforms=selection.choice,
            progress=make_progress(progress_mode, quiet=quiet),
            **flags,
        )
    for warning in result.warnings:
        warn(warning)
    if location.path == "-" and flags["base_name"] is None and not tags:
        _warn_dated_names(result)
    if output_format == "json":
        print_json(import_json(result))
    elif not quiet:
        _print_imported(result)


def _warn_dated_names(result: ImportResult) -> None:
    """Bare tags read from stdin go under ``import-YYYY-MM-DD`` (ctr's rule): the same pipe
    run tomorrow names its image anew, so say so once, and what keeps the name stable."""
    from ..archive.plan import default_base_name
    from ..oci.references import Reference

    fallback = Reference.parse(default_base_name(None))
    dated = [
        name
        for name in dict.fromkeys(item.name for item in result.images)
        if (ref := Reference.parse(name)).tag is not None
        and (ref.domain, ref.path) == (fallback.domain, fallback.path)
    ]
    if dated:
        warn(
            f"bare tags from stdin named after today's date: {', '.join(dated)};"
            " give --base-name REPO to name them the same every day"
        )


def _print_imported(result: ImportResult) -> None:
    """One line per image name (name, short digest, what happened), then the totals."""
    width = max(len(i.name) for i in result.images)
    for item in result.images:
        echo(f"{item.name:<{width}}  {item.digest.algorithm}:{item.digest.short}  {item.action}")
    echo(
        f"{counted(result.blobs_written, 'blob')} written,"
        f" {human_size(result.bytes_written)} written,"
        f" {human_size(result.bytes_deduplicated)} deduplicated"
    )


@click.command("pull", cls=BoolValueCommand)
@click.argument("ref", metavar="REF")
@platform_options
@click.option(
    "--no-referrers",
    is_flag=True,
    help="Leave the image's signatures, attestations and SBOMs in the registry.",
)
@registry_options
@format_option
@progress_option
@quiet_option
@pass_context
def pull(
    ctx: Context,
    ref: str,
    selection: PlatformSelection,
    no_referrers: bool,
    client_factory: ClientFactory,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Pull the image REF from its registry into the store, under REF's full name.

    Every manifest and blob is verified against its digest; blobs the store has are not
    downloaded; nothing is stored unless the whole image arrived. The signatures,
    attestations and SBOMs the registry has for the image come with it (its referrers API,
    else the referrers tag schema, and cosign's sha256-<hex>.sig/.att/.sbom tags) unless
    --no-referrers. --format json prints {name, digest, mediaType, action, platforms,
    manifestsDownloaded, blobsDownloaded, bytesDownloaded, blobsPresent, referrers}.
    """
    with ctx.store("write") as store:
        result = store.pull(
            ref,
            platforms=selection.choice,
            client_factory=client_factory,
            progress=make_progress(progress_mode, quiet=quiet),
            referrers=not no_referrers,
        )
    for warning in result.warnings:
        warn(warning)
    if output_format == "json":
        print_json(pull_json(result))
    elif not quiet:
        echo(f"{result.name}  {result.digest.algorithm}:{result.digest.short}  {result.action}")
        if result.referrers:
            echo(f"{counted(result.referrers, 'referrer')} (signatures, attestations, SBOMs)")
        echo(
            f"{counted(result.blobs_downloaded, 'blob')} downloaded"
            f" ({human_size(result.bytes_downloaded)}),"
            f" {result.blobs_present} already present"
        )


@click.command("push", cls=BoolValueCommand)
@click.argument("ref", metavar="REF", shell_complete=complete_images)
@click.argument("rest", metavar="[DEST] | DEST [FILTER...]", nargs=-1)
@click.option(
    "--all",
    "push_all",
    is_flag=True,
    help="Push every image (or those FILTERs select, as image ls) under DEST, a registry and"
    " optional path prefix, keeping each image's repository path and tag.",
)
@jobs_option
@platform_choice("every platform the store holds")
@click.option(
    "--no-referrers",
    is_flag=True,
    help="Do not send the image's signatures, attestations and SBOMs.",
)
@registry_access_options
@format_option
@progress_option
@quiet_option
@pass_context
def push(
    ctx: Context,
    ref: str,
    rest: tuple[str, ...],
    push_all: bool,
    jobs: int,
    selection: PlatformSelection,
    no_referrers: bool,
    access: RegistryAccess,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Push the stored image REF to a registry, as DEST (default: REF's own name); with
    --all (push --all DEST [FILTER...]), every image of the namespace (or those FILTERs
    select) under DEST.

    Default: every platform the store holds. A stored index whose manifests are all pushed
    goes byte for byte; otherwise an index of the pushed manifests is made (with a warning).
    Blobs the registry has are skipped, blobs of REF's repository on the same registry are
    mounted. The image's signatures, attestations and SBOMs follow it (the referrers
    tag schema where the registry has no referrers API) unless --no-referrers. --format
    json prints {name, destination, digest, mediaType, platforms, manifests, blobsUploaded,
    bytesUploaded, blobsMounted, blobsPresent, referrers}.

    With --all (-j N images at a time), DEST is host[:port][/prefix]:
    docker.io/library/alpine:3 goes to DEST/library/alpine:3. A blob an earlier image put in
    another repository is mounted. One failed image does not stop the others (exit status 1
    when any failed); --format json prints {images: [{name, destination, action, digest,
    bytes, blobsUploaded, blobsMounted, blobsPresent, error}], pushed, failed, bytes}.
    """
    if push_all:
        _push_all(ctx, ref, rest, jobs, selection, access, not no_referrers, output_format,
                  progress_mode, quiet)  # fmt: skip
        return
    if len(rest) > 1:
        raise click.UsageError("push takes REF and at most one DEST (FILTERs go with --all)")
    destination = rest[0] if rest else None
    with ctx.store("read") as store:
        result = store.push(
            ref,
            destination,
            platforms=selection.choice,
            client_factory=access.factory(),
            progress=make_progress(progress_mode, quiet=quiet),
            referrers=not no_referrers,
        )
    for warning in result.warnings:
        warn(warning)
    if output_format == "json":
        print_json(push_json(result))
    elif not quiet:
        _print_pushed(result)


def _print_pushed(result: PushResult) -> None:
    """Where the image went with its short digest, then what was sent and what was not."""
    echo(f"{result.destination}  {result.digest.algorithm}:{result.digest.short}  pushed")
    echo(
        f"{counted(result.blobs_uploaded, 'blob')} uploaded"
        f" ({human_size(result.bytes_uploaded)}),"
        f" {result.blobs_mounted} mounted, {result.blobs_present} already there"
    )
    if result.referrers:
        echo(f"{counted(result.referrers, 'referrer')} (signatures, attestations, SBOMs)")


def _push_all(
    ctx: Context,
    dest: str,
    filters: tuple[str, ...],
    jobs: int,
    selection: PlatformSelection,
    access: RegistryAccess,
    referrers: bool,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """``image push --all DEST [FILTER...]``."""
    from .sync import print_push_all, push_reporter

    with ctx.store("read") as store:
        result = store.push_all(
            dest,
            filters,
            platforms=selection.choice,
            client_factory=access.factory(),
            jobs=jobs,
            report=push_reporter(progress_mode, quiet),
            referrers=referrers,
        )
    if output_format == "json":
        print_json(push_all_json(result.entries))
    elif not quiet:
        print_push_all(result.entries)
    if result.failed:
        raise CargoholdError(f"{len(result.failed)} of {len(result.entries)} images failed")
