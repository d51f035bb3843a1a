"""``cargohold image export``: images out of the store into an archive (a tar, a layout
directory, or volumes). :mod:`.image` puts it in the image group, imported when it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, Unpack

import click

from ..errors import CargoholdError
from .completion import complete_paths
from .context import Context, pass_context
from .jsonout import export_json
from .options import ByteSize, PlatformSelection, platform_options, progress_option, quiet_option
from .progress import make_progress
from .render import print_json
from .streams import is_stdout, refuse_terminal_stdout
from .transports import Location, parse_location

if TYPE_CHECKING:
    from ..archive.compression import Compression
    from ..archive.writer import RefNameForm


class ExportFlags(TypedDict):
    """The flags of ``image export`` that :meth:`~cargohold.operations.store.Store.export`
    takes as they are, under the same names (mypy checks the two agree)."""

    skip_manifest_json: bool
    skip_non_distributable: bool
    compress: Compression
    ref_name: RefNameForm
    sync: bool
    verify: bool
    against: tuple[str, ...]
    split_size: int | None


@click.command("export")
@click.argument("out", metavar="OUT|-", shell_complete=complete_paths)
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
    "--layout",
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
    "--against",
    multiple=True,
    metavar="FILE",
    help="Leave out the blobs the receiver holds, as FILE says: its inventory (content"
    " inventory), an archive shipped to it before, or an OCI layout directory. Repeated, a"
    " blob is left out only when every FILE holds it. The archive is then a delta: it lists"
    " what it left out, has no manifest.json, and imports only where those blobs are held.",
)
@click.option(
    "--no-referrers",
    is_flag=True,
    help="Leave out the images' signatures, attestations and SBOMs.",
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
    "--format",
    "format_choice",
    type=click.Choice(["text", "json", "tar", "oci-dir"]),
    help="Report format, as on every command: text (the default), or json for what was"
    " written. tar and oci-dir choose the archive's form instead, as --layout does.",
)
@click.option(
    "--output-format",
    "output_format",
    type=click.Choice(["text", "json"]),
    hidden=True,  # the first spelling of --format json, kept for scripts
)
@pass_context
def export(
    ctx: Context,
    out: str,
    refs: tuple[str, ...],
    selection: PlatformSelection,
    archive_format: str | None,
    no_referrers: bool,
    progress_mode: str,
    quiet: bool,
    format_choice: str | None,
    output_format: str | None,
    **flags: Unpack[ExportFlags],
) -> None:
    """Write images to an archive (OUT, or - for stdout): an OCI image layout with docker's
    manifest.json, readable by ctr, skopeo, podman and docker. Byte-reproducible.

    With --compress the whole archive is gzip or zstd compressed; cargohold, ctr 2.x, docker
    and podman read those directly. With --layout oci-dir, OUT is a new layout directory.

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
    archive_format, output_format = _formats(archive_format, format_choice, output_format)
    layout_dir = _layout_dir(location, archive_format, flags["skip_manifest_json"])
    refuse_terminal_stdout(location.path)
    with ctx.store("read") as store:
        result = store.export(
            location.path,
            refs,
            platforms=selection.choice,
            layout_dir=layout_dir,
            progress=make_progress(progress_mode, quiet=quiet),
            name_as=location.reference,
            referrers=not no_referrers,
            **flags,
        )
    if output_format == "json":
        # with the archive on stdout, the report goes to stderr
        print_json(export_json(result), err=is_stdout(location.path))


def _formats(
    archive_format: str | None, format_choice: str | None, output_format: str | None
) -> tuple[str | None, str | None]:
    """The archive's form (--layout) and the report's format (--output-format) once --format
    has said which of the two it means: tar and oci-dir are forms, which --layout must not
    contradict; text and json are report formats."""
    if format_choice in ("tar", "oci-dir"):
        if archive_format not in (None, format_choice):
            raise click.UsageError(
                f"--format {format_choice} contradicts --layout {archive_format}"
            )
        return format_choice, output_format
    if format_choice is not None:
        return archive_format, format_choice
    return archive_format, output_format


def _layout_dir(location: Location, archive_format: str | None, skip_manifest_json: bool) -> bool:
    """Whether to write a layout directory: --format, or the transport prefix; the two must
    agree, and docker-archive: without manifest.json would not be a docker archive."""
    if location.transport is None:
        return archive_format == "oci-dir"
    wanted = "oci-dir" if location.transport == "oci" else "tar"
    if archive_format is not None and archive_format != wanted:
        raise CargoholdError(
            f"--layout {archive_format} contradicts {location.transport}:{location.path}"
        )
    if location.transport == "docker-archive" and skip_manifest_json:
        raise CargoholdError(
            f"docker-archive:{location.path} needs manifest.json; drop --skip-manifest-json"
        )
    return wanted == "oci-dir"
