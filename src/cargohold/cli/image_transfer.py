"""The image commands that move images in and out of the store: ``import`` and ``export``
(archives), ``pull`` and ``push`` (registries). :mod:`.image` puts them in the image group."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import CargoholdError
from ..limits import Limits
from .completion import complete_images
from .context import Context, pass_context
from .options import (
    ByteSize,
    PlatformSelection,
    format_option,
    limit_options,
    platform_options,
    progress_option,
    quiet_option,
    registry_options,
)
from .progress import make_progress
from .render import echo, print_json, warn
from .streams import is_stdout, refuse_terminal_stdin, refuse_terminal_stdout
from .transports import Location, parse_location
from .units import counted, human_size

if TYPE_CHECKING:
    from ..archive.compression import Compression
    from ..archive.writer import RefNameForm
    from ..operations.results import ImportResult
    from ..operations.transfer import ClientFactory


@click.command("import")
@click.argument("archive", metavar="FILE|-")
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
@limit_options
@format_option
@progress_option
@quiet_option
@pass_context
def import_(
    ctx: Context,
    archive: str,
    base_name: str | None,
    tags: tuple[str, ...],
    digests: bool,
    skip_digest_for_named: bool,
    index_name: str | None,
    selection: PlatformSelection,
    force: bool,
    skip_missing: bool,
    compress_blobs: bool,
    no_unpack: bool,
    local: bool,
    limits: Limits,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Import the images of an OCI image layout archive (FILE, or - for stdin).

    Bare tags in the archive are put under --base-name, by default FILE's name without its
    extension; from stdin, import-YYYY-MM-DD (today's date, with a warning), so a pipe that
    should name its image the same every day gives --base-name.

    skopeo's oci-archive:FILE, docker-archive:FILE and oci:DIR are understood; a reference
    after the path (oci-archive:FILE:REF) names the image REF, as --tag does. A file whose
    name merely starts like that is still read as a file.

    Every blob is verified; nothing is stored unless the whole archive is sound.

    An archive in volumes (image export --split-size) is imported from FILE.001 or FILE.sha256:
    the volumes are read in order, each checked against the list. A missing or damaged volume
    stops the import, naming it; run the same import again once it is replaced, and the
    volumes already checked are not read again (content gc keeps what they staged for
    --resumable-max-age).
    """
    location = parse_location(archive)
    archive = location.path
    if location.reference is not None:
        tags = (location.reference, *tags)
    refuse_terminal_stdin(archive)
    with ctx.store("write") as store:
        result = store.import_archive(
            archive,
            base_name=base_name,
            tags=tags,
            digests=digests and not skip_digest_for_named,
            index_name=index_name,
            platforms=selection.platforms,
            all_platforms=selection.all_platforms,
            force=force,
            skip_missing=skip_missing,
            compress_blobs=compress_blobs,
            progress=make_progress(progress_mode, quiet=quiet),
            limits=limits,
        )
    for warning in result.warnings:
        warn(warning)
    if archive == "-" and base_name is None and not tags:
        _warn_dated_names(result)
    if output_format == "json":
        print_json(result.to_json())
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


@click.command("export")
@click.argument("out", metavar="OUT|-")
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@platform_options
@click.option("--skip-manifest-json", is_flag=True, help="Leave out docker's manifest.json.")
@click.option(
    "--skip-non-distributable", is_flag=True, help="Leave out non-distributable (foreign) layers."
)
@click.option(
    "--compress",
    type=click.Choice(["none", "gzip", "zstd"]),
    default="none",
    show_default=True,
    help="Compress the whole archive.",
)
@click.option(
    "--format",
    "archive_format",
    type=click.Choice(["tar", "oci-dir"]),
    help="A tar archive (the default), or an OCI image layout directory at OUT.",
)
@click.option(
    "--ref-name",
    type=click.Choice(["full", "tag"]),
    default="full",
    show_default=True,
    help="What org.opencontainers.image.ref.name holds: the full reference, which skopeo"
    " and umoci need, or only the tag, as ctr export writes.",
)
@click.option(
    "--sync",
    is_flag=True,
    help="Flush the archive to disk before it appears under its name (survives a power"
    " loss; slower).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Hash every blob as it is written and fail if the store's copy does not match its"
    " digest (the archive is then not written; a stream stops before its index). Reads the"
    " blobs through Python instead of the kernel's copy: slower.",
)
@click.option(
    "--split-size",
    type=ByteSize(),
    metavar="SIZE",
    help="Write OUT.001, OUT.002, … of SIZE bytes each (4GiB, 700MiB) and OUT.sha256, their"
    " checksums for sha256sum -c; cat OUT.0* is the archive.",
)
@progress_option
@quiet_option
@click.option(
    "--output-format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Report format (--format chooses the archive's): json prints what was written.",
)
@pass_context
def export(
    ctx: Context,
    out: str,
    refs: tuple[str, ...],
    selection: PlatformSelection,
    skip_manifest_json: bool,
    skip_non_distributable: bool,
    compress: Compression,
    archive_format: str | None,
    ref_name: RefNameForm,
    sync: bool,
    verify: bool,
    split_size: int | None,
    progress_mode: str,
    quiet: bool,
    output_format: str,
) -> None:
    """Write images to an archive (OUT, or - for stdout): an OCI image layout with docker's
    manifest.json, readable by ctr, skopeo, podman and docker. Byte-reproducible.

    With --compress the whole archive is gzip or zstd compressed; cargohold, ctr 2.x, docker
    and podman read those directly. With --format oci-dir, OUT is a new layout directory.

    skopeo's prefixes choose the format: oci-archive:OUT and docker-archive:OUT write the
    tar (both hold index.json and manifest.json), oci:DIR a layout directory. A reference
    after the path (oci-archive:OUT:NAME) writes the one image REF under NAME.

    A regular file at OUT is replaced atomically (keeping its mode, and its group and owner
    where permitted); a symlink is written through to its file; a FIFO or device at OUT is
    written in place, like -.

    With --split-size the archive is written in volumes OUT.001, OUT.002, … (as many digits
    as needed, at least three) and OUT.sha256, which `sha256sum -c OUT.sha256` checks in
    their folder. `image import OUT.001` reads them back, checking each volume, and resumes
    after a volume that was missing or damaged once it is replaced."""
    location = parse_location(out)
    out = location.path
    layout_dir = _layout_dir(location, archive_format, skip_manifest_json)
    refuse_terminal_stdout(out)
    with ctx.store("read") as store:
        result = store.export(
            out,
            refs,
            platforms=selection.platforms,
            all_platforms=selection.all_platforms,
            skip_manifest_json=skip_manifest_json,
            skip_non_distributable=skip_non_distributable,
            compress=compress,
            layout_dir=layout_dir,
            progress=make_progress(progress_mode, quiet=quiet),
            sync=sync,
            verify=verify,
            ref_name=ref_name,
            name_as=location.reference,
            split_size=split_size,
        )
    if output_format == "json":
        # with the archive on stdout, the report goes to stderr
        print_json(result.to_json(), err=is_stdout(out))


def _layout_dir(location: Location, archive_format: str | None, skip_manifest_json: bool) -> bool:
    """Whether to write a layout directory: --format, or the transport prefix; the two must
    agree, and docker-archive: without manifest.json would not be a docker archive."""
    if location.transport is None:
        return archive_format == "oci-dir"
    wanted = "oci-dir" if location.transport == "oci" else "tar"
    if archive_format is not None and archive_format != wanted:
        raise CargoholdError(
            f"--format {archive_format} contradicts {location.transport}:{location.path}"
        )
    if location.transport == "docker-archive" and skip_manifest_json:
        raise CargoholdError(
            f"docker-archive:{location.path} needs manifest.json; drop --skip-manifest-json"
        )
    return wanted == "oci-dir"


@click.command("pull")
@click.argument("ref", metavar="REF")
@platform_options
@registry_options
@format_option
@progress_option
@quiet_option
@pass_context
def pull(
    ctx: Context,
    ref: str,
    selection: PlatformSelection,
    client_factory: ClientFactory,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Pull the image REF from its registry into the store, under REF's full name.

    Every manifest and blob is verified against its digest; blobs the store has are not
    downloaded; nothing is stored unless the whole image arrived. --format json prints
    {name, digest, mediaType, action, platforms, manifestsDownloaded, blobsDownloaded,
    bytesDownloaded, blobsPresent}.
    """
    with ctx.store("write") as store:
        result = store.pull(
            ref,
            platforms=selection.platforms,
            all_platforms=selection.all_platforms,
            client_factory=client_factory,
            progress=make_progress(progress_mode, quiet=quiet),
        )
    if output_format == "json":
        print_json(result.to_json())
    elif not quiet:
        echo(f"{result.name}  {result.digest.algorithm}:{result.digest.short}  {result.action}")
        echo(
            f"{counted(result.blobs_downloaded, 'blob')} downloaded"
            f" ({human_size(result.bytes_downloaded)}),"
            f" {result.blobs_present} already present"
        )


@click.command("push")
@click.argument("ref", metavar="REF", shell_complete=complete_images)
@click.argument("destination", metavar="[DEST]", required=False)
@platform_options
@registry_options
@format_option
@progress_option
@quiet_option
@pass_context
def push(
    ctx: Context,
    ref: str,
    destination: str | None,
    selection: PlatformSelection,
    client_factory: ClientFactory,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Push the stored image REF to a registry, as DEST (default: REF's own name).

    Default: every platform the store holds. A stored index whose manifests are all pushed
    goes byte for byte; otherwise an index of the pushed manifests is made (with a warning).
    Blobs the registry has are skipped, blobs of REF's repository on the same registry are
    mounted. --format json prints {name, destination, digest, mediaType, platforms,
    manifests, blobsUploaded, bytesUploaded, blobsMounted, blobsPresent}.
    """
    with ctx.store("read") as store:
        result = store.push(
            ref,
            destination,
            platforms=selection.platforms,
            all_platforms=selection.all_platforms,
            client_factory=client_factory,
            progress=make_progress(progress_mode, quiet=quiet),
        )
    for warning in result.warnings:
        warn(warning)
    if output_format == "json":
        print_json(result.to_json())
    elif not quiet:
        echo(f"{result.destination}  {result.digest.algorithm}:{result.digest.short}  pushed")
        echo(
            f"{counted(result.blobs_uploaded, 'blob')} uploaded"
            f" ({human_size(result.bytes_uploaded)}),"
            f" {result.blobs_mounted} mounted, {result.blobs_present} already there"
        )
