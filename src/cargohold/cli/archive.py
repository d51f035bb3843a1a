"""``cargohold archive``: what an archive holds, looked at without importing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import CargoholdError
from ..limits import Limits
from .completion import complete_paths
from .context import Context, pass_context
from .jsonout import archive_report_json
from .options import (
    PlatformSelection,
    format_option,
    limit_options,
    platform_options,
    progress_option,
)
from .progress import make_progress
from .render import echo, print_fields, print_json, print_rows, warn
from .streams import refuse_terminal_stdin
from .transports import parse_location
from .units import counted, human_size

if TYPE_CHECKING:
    from ..operations.results import ArchiveDelta, ArchiveReport


@click.group()
def archive() -> None:
    """Look into image archives without importing them."""


@archive.command("inspect")
@click.argument("source", metavar="FILE|DIR|-", shell_complete=complete_paths)
@platform_options
@limit_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the names of the archive's images.")
@format_option
@progress_option
@pass_context
def archive_inspect(
    ctx: Context,
    source: str,
    selection: PlatformSelection,
    limits: Limits,
    quiet: bool,
    output_format: str,
    progress_mode: str,
) -> None:
    """What an archive holds (images, names, platforms, blobs, size) and how much an import
    would add to this store, with every blob verified; nothing is written anywhere.

    The import estimate uses the platforms an import would (this host's by default,
    --platform, --all-platforms). Exits 1 when the import would fail. skopeo's
    oci-archive:FILE, docker-archive:FILE and oci:DIR are understood (a reference after the
    path is ignored here).

    A delta archive (image export --against) is shown as one, with what it left out and
    whether this namespace of the store holds all of it (the import's condition)."""
    source = parse_location(source).path
    refuse_terminal_stdin(source)
    # Here, not at the top: the archive reader is heavy, and the root's --help loads this module.
    from ..operations.inspecting import inspect_archive

    report = inspect_archive(
        source,
        ctx.root,
        platforms=selection.choice,
        progress=make_progress("none" if quiet else progress_mode),
        limits=limits,
        namespace=ctx.namespace,
    )
    for warning in report.warnings:
        warn(warning)
    if output_format == "json":
        print_json(archive_report_json(report))
    elif quiet:
        for image in report.images:
            for name in image.names:
                echo(name)
    else:
        _print_report(report)
    if report.problem is not None:
        raise CargoholdError(f"import would fail: {report.problem}")


def _delta_line(delta: ArchiveDelta) -> str:
    """What a delta left out, and whether the store can supply it."""
    line = f"yes, {counted(delta.blobs, 'blob')} ({human_size(delta.size)}) omitted"
    if delta.namespace is None:
        return f"{line}; no store here to check them against"
    if not delta.missing:
        return f"{line}; namespace {delta.namespace} holds them all"
    lacking = sum(size for _, size in delta.missing)
    return f"{line}; namespace {delta.namespace} lacks {len(delta.missing)} ({human_size(lacking)})"


def _print_report(report: ArchiveReport) -> None:
    """The archive's format and blobs, a row per image name, and what an import would add."""
    print_fields(
        [
            ("Format", "OCI image layout" if report.format == "oci" else "docker archive"),
            ("Blobs", f"{report.blobs}, {human_size(report.size)}"),
            *([("Delta", _delta_line(report.delta))] if report.delta is not None else []),
        ]
    )
    echo()
    print_rows(
        ("NAME", "DIGEST", "PLATFORMS", "SIZE", "MISSING"),
        [
            (
                name,
                str(image.target.digest),
                ",".join(str(p) for p in image.platforms) or "-",
                human_size(image.size),
                str(len(image.missing)),
            )
            for image in report.images
            for name in image.names
        ],
    )
    echo()
    if report.importable:
        echo(
            f"Import would add {counted(report.new_blobs, 'blob')},"
            f" {human_size(report.bytes_to_add)}"
        )
