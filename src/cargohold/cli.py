"""The ``cargohold`` command line: parses arguments, calls :class:`cargohold.Store`, prints.

Every failure cargohold can explain becomes one line on stderr (``cargohold: error: …``) and
exit status 1; usage errors exit 2; tracebacks appear only with ``--debug``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .compression import Compression
from .errors import CargoholdError
from .progress import make_progress
from .store import DEFAULT_NAMESPACE, ImageInfo, Store

F = TypeVar("F", bound=Callable[..., Any])


class AliasedGroup(click.Group):
    """A group whose commands answer to several names (``ls``/``list``, ``rm``/``del``…)."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases or {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


class Context:
    """What every command needs: where the store is and how to report."""

    def __init__(self, root: str | None, namespace: str, debug: bool) -> None:
        self.root = root
        self.namespace = namespace
        self.debug = debug

    def store(self) -> Store:
        return Store(self.root, self.namespace)


pass_context = click.make_pass_decorator(Context)


def _platform_options(f: F) -> F:
    f = click.option(
        "--all-platforms", is_flag=True, help="Every platform of a multi-platform image."
    )(f)
    return click.option(
        "--platform",
        "platforms",
        multiple=True,
        metavar="OS/ARCH[/VARIANT]",
        help="Platform to select (repeatable). Default: this host's platform.",
    )(f)


def _progress_option(f: F) -> F:
    return click.option(
        "--progress",
        "progress_mode",
        type=click.Choice(["auto", "plain", "none"]),
        default="auto",
        show_default=True,
        help="Progress on stderr: auto (animated when stdout and stderr are terminals),"
        " plain (log lines) or none.",
    )(f)


def _format_option(f: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output format.",
    )(f)


@click.group(
    cls=AliasedGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    envvar="CARGOHOLD_ROOT",
    metavar="DIR",
    help="Store root. Default: $CARGOHOLD_ROOT, /var/lib/cargohold as root, else the user"
    " data directory.",
)
@click.option(
    "-n",
    "--namespace",
    envvar="CARGOHOLD_NAMESPACE",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Namespace of image names (env CARGOHOLD_NAMESPACE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="cargohold")
@click.pass_context
def cli(ctx: click.Context, root: str | None, namespace: str, debug: bool) -> None:
    """A local content-addressable store of OCI images, moved in and out as tarballs."""
    ctx.obj = Context(root, namespace, debug)


@cli.group(cls=AliasedGroup, aliases={"images": "image", "i": "image"})
def image() -> None:
    """Import, export, tag, list and remove images (aliases: images, i)."""


cli.aliases.update({"images": "image", "i": "image"})
assert isinstance(image, AliasedGroup)
image.aliases.update({"list": "ls", "remove": "rm", "delete": "rm", "del": "rm"})


@image.command("import")
@click.argument("archive", metavar="FILE|-")
@click.option("--base-name", metavar="NAME", help="Repository for bare tags in the archive.")
@click.option("--tag", "tags", multiple=True, metavar="REF", help="Name the image REF instead.")
@click.option("--digests", is_flag=True, help="Also name each image <base-name>@<digest>.")
@click.option("--index-name", metavar="NAME", help="Keep the archive's index as image NAME.")
@_platform_options
@click.option("--force", is_flag=True, help="Replace existing names even with older images.")
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
@_format_option
@_progress_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors and warnings.")
@pass_context
def import_(
    ctx: Context,
    archive: str,
    base_name: str | None,
    tags: tuple[str, ...],
    digests: bool,
    index_name: str | None,
    platforms: tuple[str, ...],
    all_platforms: bool,
    force: bool,
    skip_missing: bool,
    compress_blobs: bool,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Import the images of an OCI image layout archive (FILE, or - for stdin).

    Every blob is verified; nothing is stored unless the whole archive is sound.
    """
    with ctx.store() as store:
        result = store.import_archive(
            archive,
            base_name=base_name,
            tags=tags,
            digests=digests,
            index_name=index_name,
            platforms=platforms,
            all_platforms=all_platforms,
            force=force,
            skip_missing=skip_missing,
            compress_blobs=compress_blobs,
            progress=make_progress(progress_mode, quiet=quiet),
        )
    for warning in result.warnings:
        _warn(warning)
    if output_format == "json":
        _print_json(result.to_json())
    elif not quiet:
        width = max(len(i.name) for i in result.images)
        for item in result.images:
            click.echo(
                f"{item.name:<{width}}  {item.digest.algorithm}:{item.digest.short}  {item.action}"
            )
        click.echo(
            f"{result.blobs_written} blobs written, {_human(result.bytes_written)} written,"
            f" {_human(result.bytes_deduplicated)} deduplicated"
        )


@image.command("export")
@click.argument("out", metavar="OUT|-")
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@_platform_options
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
    default="tar",
    show_default=True,
    help="A tar archive, or an OCI image layout directory at OUT.",
)
@_progress_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors and warnings.")
@pass_context
def export(
    ctx: Context,
    out: str,
    refs: tuple[str, ...],
    platforms: tuple[str, ...],
    all_platforms: bool,
    skip_manifest_json: bool,
    skip_non_distributable: bool,
    compress: Compression,
    archive_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Write images to an archive (OUT, or - for stdout): an OCI image layout with docker's
    manifest.json, readable by ctr, skopeo, podman and docker. Byte-reproducible.

    With --compress the whole archive is gzip or zstd compressed; cargohold, ctr 2.x, docker
    and podman read those directly. With --format oci-dir, OUT is a new layout directory."""
    if out == "-" and sys.stdout.isatty():
        raise CargoholdError("refusing to write an archive to a terminal; redirect stdout")
    with ctx.store() as store:
        store.export(
            out,
            refs,
            platforms=platforms,
            all_platforms=all_platforms,
            skip_manifest_json=skip_manifest_json,
            skip_non_distributable=skip_non_distributable,
            compress=compress,
            layout_dir=archive_format == "oci-dir",
            progress=make_progress(progress_mode, quiet=quiet),
        )


@image.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only image names.")
@_format_option
@pass_context
def ls(ctx: Context, quiet: bool, output_format: str) -> None:
    """List images (alias: list)."""
    with ctx.store() as store:
        infos = store.list_images()
    if output_format == "json":
        _print_json([info.to_json() for info in infos])
    elif quiet:
        for info in infos:
            click.echo(info.record.name)
    else:
        _print_table(infos)


@image.command("tag")
@click.argument("source", metavar="SRC")
@click.argument("targets", metavar="DST...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Move names that point at another image.")
@pass_context
def tag(ctx: Context, source: str, targets: tuple[str, ...], force: bool) -> None:
    """Give an image more names."""
    with ctx.store() as store:
        for name in store.tag(source, targets, force=force):
            click.echo(name)


@image.command("rm")
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@click.option("--no-gc", is_flag=True, help="Remove names only; leave content for a later gc.")
@pass_context
def rm(ctx: Context, refs: tuple[str, ...], no_gc: bool) -> None:
    """Remove image names and free the content no image uses (aliases: remove, delete, del)."""
    with ctx.store() as store:
        result = store.remove(refs, collect_garbage=not no_gc)
    for name in result.removed:
        click.echo(name)
    if result.gc is not None:
        click.echo(f"{len(result.gc.removed)} blobs removed, {_human(result.gc.bytes_freed)} freed")
    if result.missing:
        raise CargoholdError(f"image not found: {', '.join(result.missing)}")


@cli.group()
def content() -> None:
    """Work with the content (blobs) of the store."""


@content.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@_format_option
@pass_context
def gc(ctx: Context, dry_run: bool, output_format: str) -> None:
    """Remove content that no image and no import in progress needs, and abandoned ingests."""
    with ctx.store() as store:
        result = store.gc(dry_run=dry_run)
    if output_format == "json":
        _print_json(
            {
                "dryRun": dry_run,
                "removed": [{"digest": str(d), "size": s} for d, s in result.removed],
                "bytesFreed": result.bytes_freed,
            }
        )
        return
    verb = "would be removed" if dry_run else "removed"
    click.echo(f"{len(result.removed)} blobs {verb}, {_human(result.bytes_freed)}")


# -- output helpers -------------------------------------------------------------------------


def _print_table(infos: Sequence[ImageInfo]) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2, 0, 0))
    for column in ("REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"):
        table.add_column(column, no_wrap=True)
    for info in infos:
        r = info.record
        labels = ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "-"
        table.add_row(
            r.name,
            r.media_type,
            str(r.digest),
            _human(info.size),
            ",".join(str(p) for p in info.platforms) or "-",
            labels,
        )
    console = Console(width=100_000, highlight=False, color_system=None)
    with console.capture() as capture:
        console.print(table, crop=False, soft_wrap=True)
    for line in capture.get().splitlines():
        click.echo(line.rstrip())


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def _warn(message: str) -> None:
    click.echo(f"cargohold: warning: {message}", err=True)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _fail(message: str) -> NoReturn:
    click.echo(f"cargohold: error: {message}", err=True)
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and an exit status."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="cargohold",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail("aborted")
    except KeyboardInterrupt:
        click.echo("cargohold: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except CargoholdError as exc:
        if debug:
            traceback.print_exc()
        _fail(str(exc))
    except OSError as exc:
        if debug:
            traceback.print_exc()
        _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
