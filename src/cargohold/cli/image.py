"""``cargohold image``: the images of the store. The commands that look at and name images
are here; those that move images in and out live in :mod:`.image_transfer` and
:mod:`.image_export`, imported only when one of them runs (``image ls`` does not pay for them)."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, Literal, cast

import click

from ..errors import CargoholdError
from .completion import complete_images
from .context import Context, pass_context
from .groups import AliasedGroup, LazyCommands
from .jsonout import check_json, image_json, inspection_json
from .options import (
    PLATFORM_HELP,
    PlatformSelection,
    format_option,
    platform_choice,
    split_platforms,
)
from .progress import isatty
from .render import (
    echo,
    fit_rows,
    iso_utc,
    json_or_dash,
    labels_text,
    print_fields,
    print_json,
    print_rows,
    print_tree,
)
from .units import counted, human_size, short_media_type

if TYPE_CHECKING:
    from ..oci.platforms import Platform
    from ..operations.results import CheckResult, ImageInfo, ImageInspection, ManifestInspection


#: The commands of :mod:`.image_transfer` and its siblings, imported when first looked up.
TRANSFER_COMMANDS = {
    "import": ".image_transfer:import_",
    "export": ".image_export:export",
    "pull": ".image_transfer:pull",
    "push": ".image_transfer:push",
    "verify": ".image_verify:verify",
}


@click.group(
    cls=AliasedGroup,
    commands=LazyCommands(__package__ or "cargohold.cli", TRANSFER_COMMANDS),
    aliases={"list": "ls", "remove": "rm", "delete": "rm", "del": "rm"},
)
def image() -> None:
    """Import, export, pull, push, tag, list and remove images (alias: i; also images CMD)."""


@image.command("ls")
@click.argument("filters", metavar="[FILTER...]", nargs=-1)
@click.option("-q", "--quiet", is_flag=True, help="Print only image names.")
@click.option(
    "--no-trunc",
    is_flag=True,
    help="Full digests, media types, platforms and labels (always so when stdout is no terminal).",
)
@format_option
@pass_context
def ls(
    ctx: Context, filters: tuple[str, ...], quiet: bool, no_trunc: bool, output_format: str
) -> None:
    """List images (alias: list), those matching any FILTER when given.

    A filter is containerd's: name==REF, name~=REGEX (RE2 syntax, as Go's), target.digest==DIGEST,
    target.mediatype==TYPE, labels."KEY"==VALUE, annotations."KEY"!=VALUE, or a bare field
    that must be present. Commas inside one FILTER require all; several FILTERs require any.
    Names may be short (name==app:1; name~= searches the short form too); a FILTER that is
    no field is a name or */? glob (alpine: every tag of alpine).

    On a terminal rows are shortened to fit its width: 12 hex digits of the digest (as docker's
    IMAGE ID), short media types (index, manifest, docker-list, docker-manifest), the first
    stored platform and how many more, then labels, platforms and names cut with "…" as needed.
    A platform in parentheses is listed by the image's index but not stored (a default import
    takes only this host's); --format json has both lists (platforms, storedPlatforms).
    --no-trunc, or stdout not a terminal, prints every value whole.

    \b
      cargohold image ls 'name~=^docker.io/library/' 'labels."env"==prod,name~=:v1'
      cargohold image ls alpine 'my-app:*'
    """
    with ctx.store("read") as store:
        if quiet and output_format != "json":
            for name in store.list_names(filters):
                echo(name)
            return
        infos = store.list_images(filters)
    if output_format == "json":
        print_json([image_json(info) for info in infos])
    elif no_trunc or not isatty(sys.stdout):
        print_rows(IMAGE_COLUMNS, [_full_row(i) for i in infos])
    else:
        width = shutil.get_terminal_size().columns
        print_rows(
            IMAGE_COLUMNS, fit_rows(IMAGE_COLUMNS, [_short_row(i) for i in infos], width, _SHRINK)
        )


IMAGE_COLUMNS = ("REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS")

#: What gives room on a narrow terminal: labels first, then platforms, then the name (cut at
#: its start, so that its tag stays); digest, type and size are short already.
_SHRINK = ((5, 8, False), (4, 11, False), (0, 24, True))


def _full_row(i: ImageInfo) -> tuple[str, ...]:
    """A row of ``image ls --no-trunc``: every value whole, for scripts and wide screens."""
    return (
        i.record.name,
        i.record.media_type,
        str(i.record.digest),
        human_size(i.size),
        ",".join(_platform_text(i, p) for p in i.platforms) or "-",
        labels_text(i.record.labels),
    )


def _platform_text(i: ImageInfo, platform: Platform) -> str:
    """A platform the index lists but the store does not hold is shown in parentheses."""
    return str(platform) if platform in i.stored_platforms else f"({platform})"


def _short_row(i: ImageInfo) -> tuple[str, ...]:
    """A row that fits a terminal: a full digest and media type alone take 110 columns."""
    return (
        i.record.name,
        short_media_type(i.record.media_type),
        i.record.digest.hex[:12],
        human_size(i.size),
        _short_platforms(i),
        labels_text(i.record.labels),
    )


def _short_platforms(i: ImageInfo) -> str:
    """The first stored platform, how many more are stored, and in parentheses how many are
    only listed: ``linux/amd64 +1 (+2)``."""
    stored = [p for p in i.platforms if p in i.stored_platforms]
    listed = len(i.platforms) - len(stored)
    if not stored:
        if not listed:
            return "-"
        return f"({i.platforms[0]})" + (f" (+{listed - 1})" if listed > 1 else "")
    text = str(stored[0]) + (f" +{len(stored) - 1}" if len(stored) > 1 else "")
    return text + (f" (+{listed})" if listed else "")


#: ``cargohold images``: the list, as docker's and podman's ``images`` (``images CMD`` is
#: still ``image CMD``: the root sends it there).
images = click.Command(
    "images",
    callback=ls.callback,
    params=ls.params,
    help=(ls.help or "").replace(
        "List images (alias: list)", "List images as image ls does (images CMD runs image CMD)", 1
    ),
    short_help="List images, as image ls.",
)


@image.command("inspect")
@click.argument("ref", metavar="REF", shell_complete=complete_images)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    callback=split_platforms,
    help=f"Summarise only these platforms' configs. {PLATFORM_HELP} With --raw, the one to show.",
)
@click.option(
    "--raw",
    type=click.Choice(["manifest", "config", "index"]),
    help="Print the stored document, byte for byte (manifest and config: this host's"
    " platform, or --platform).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's digest.")
@format_option
@pass_context
def inspect(
    ctx: Context,
    ref: str,
    platforms: tuple[str, ...],
    raw: str | None,
    quiet: bool,
    output_format: str,
) -> None:
    """Show an image: its tree (index, manifests and their platforms, configs, layers) and
    a summary of each config (created, platform, entrypoint, cmd, env, labels, history)."""
    with ctx.store("read") as store:
        if raw is not None:
            if len(platforms) > 1:
                raise click.UsageError("--raw shows one document: give at most one --platform")
            which = cast(Literal["index", "manifest", "config"], raw)
            data = store.raw_document(ref, which, platforms[0] if platforms else None)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        if quiet and output_format != "json":
            echo(str(store.resolve(ref).digest))
            return
        result = store.inspect(ref, platforms)
    if output_format == "json":
        print_json(inspection_json(result))
    else:
        _print_inspection(result)


def _print_inspection(result: ImageInspection) -> None:
    """The image's record, its tree, then a summary of each manifest's config."""
    r = result.record
    print_fields(
        [
            ("Name", r.name),
            ("Digest", str(r.digest)),
            ("Media type", r.media_type),
            ("Labels", labels_text(r.labels)),
            ("Imported", iso_utc(r.created_at)),
            ("Updated", iso_utc(r.updated_at)),
        ]
        + ([("Partial", "yes: some manifests of its index were not imported")] if r.partial else [])
    )
    echo()
    print_tree(result.tree)
    for manifest in result.manifests:
        echo()
        echo(f"{manifest.platform or 'no platform'} (manifest {manifest.node.descriptor.digest})")
        _print_manifest_summary(manifest)
    if result.referrers:
        from ..operations.results import referrer_kind

        echo()
        echo("Referrers (signatures, attestations, SBOMs)")
        print_rows(
            ["KIND", "TYPE", "DIGEST", "SIZE", "SUBJECT", "ANNOTATIONS"],
            [
                [
                    referrer_kind(r),
                    r.descriptor.artifact_type or r.descriptor.media_type,
                    str(r.digest),
                    human_size(r.descriptor.size),
                    r.subject.short,
                    labels_text(dict(r.descriptor.annotations)),
                ]
                for r in result.referrers
            ],
        )


def _print_manifest_summary(manifest: ManifestInspection) -> None:
    """A manifest's config as docker inspect shows it, and its layers' count and size."""
    layers = manifest.node.children[1:]
    layer_text = f"{len(layers)} ({human_size(sum(n.descriptor.size for n in layers))})"
    config = manifest.config
    if config is None:
        print_fields([("Config", "not in the store"), ("Layers", layer_text)], indent=2)
        return
    print_fields(
        [
            ("Created", config.created or "-"),
            ("Platform", str(config.platform) if config.platform else "-"),
            ("Entrypoint", json_or_dash(config.entrypoint)),
            ("Cmd", json_or_dash(config.cmd)),
            ("Env", config.env),
            ("Working dir", config.working_dir or "-"),
            ("User", config.user or "-"),
            ("Ports", ", ".join(config.exposed_ports) or "-"),
            ("Volumes", ", ".join(config.volumes) or "-"),
            ("Labels", [f"{k}={v}" for k, v in sorted(config.labels.items())]),
            ("Layers", layer_text),
            (
                "History",
                [
                    f"{h['created'] or '-'}  {h['createdBy'] or h['comment'] or '-'}"
                    + ("  (empty layer)" if h["emptyLayer"] else "")
                    for h in config.history
                ],
            ),
        ],
        indent=2,
    )


@image.command("check")
@click.argument("refs", metavar="[REF...]", nargs=-1, shell_complete=complete_images)
@platform_choice("every platform the store holds")
@click.option("--verify", is_flag=True, help="Also re-hash every blob and report corrupt ones.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the names of complete images.")
@format_option
@pass_context
def check(
    ctx: Context,
    refs: tuple[str, ...],
    selection: PlatformSelection,
    verify: bool,
    quiet: bool,
    output_format: str,
) -> None:
    """Check that images' content is all in the store (every image when no REF is given).

    One line per manifest: complete (n/n), incomplete (n/m) when blobs are missing, corrupt
    when a blob has the wrong size or (with --verify) its bytes no longer match its digest,
    invalid when an index, manifest or config cannot be read as one (every document is
    parsed, with or without --verify), unavailable when the manifest itself is absent,
    partial for an image imported with --skip-missing. By default the manifests the store
    holds are checked; with --platform or --all-platforms the selected ones must be there.
    Exits 1 when anything is missing, corrupt or invalid."""
    with ctx.store("read") as store:
        results = store.check(
            refs,
            platforms=selection.choice,
            verify=verify,
        )
    bad = [r for r in results if not r.ok]
    if output_format == "json":
        print_json([check_json(r) for r in results])
    elif quiet:
        failed = {r.record.name for r in bad}
        for name in dict.fromkeys(r.record.name for r in results):
            if name not in failed:
                echo(name)
    else:
        _print_checks(results, bad)
    if bad:
        images = len({r.record.name for r in bad})
        raise CargoholdError(
            f"{counted(images, 'image')} with missing, corrupt or unreadable content"
            f" ({len(bad)} of {len(results)} checks failed)"
        )


def _print_checks(results: list[CheckResult], bad: list[CheckResult]) -> None:
    """A row per manifest checked, then a line per problem of the failed ones."""
    print_rows(
        ("REF", "TYPE", "DIGEST", "PLATFORM", "STATUS", "SIZE"),
        [
            (
                r.record.name,
                r.record.media_type,
                str(r.record.digest),
                str(r.platform) if r.platform else "-",
                r.summary(),
                f"{human_size(r.size)}/{human_size(r.total_size)}",
            )
            for r in results
        ],
    )
    for r in bad:
        where = f"{r.record.name} ({r.platform or 'no platform'})"
        for digest in r.missing:
            echo(f"{where}: missing {digest}")
        for digest in r.corrupt:
            echo(f"{where}: corrupt {digest}")
        if r.problem:
            echo(f"{where}: {r.problem}")


@image.command("label")
@click.argument("ref", metavar="REF", shell_complete=complete_images)
@click.argument("labels", metavar="KEY=VALUE...", nargs=-1)
@click.option("-r", "--replace-all", is_flag=True, help="Replace all labels with the ones given.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@format_option
@pass_context
def label(
    ctx: Context,
    ref: str,
    labels: tuple[str, ...],
    replace_all: bool,
    quiet: bool,
    output_format: str,
) -> None:
    """Set labels on an image; KEY= (empty value) removes KEY. Prints the labels after."""
    changes: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        changes[key] = value
    with ctx.store("write") as store:
        result = store.label(ref, changes, replace_all=replace_all)
        name = store.resolve(ref).name
    if output_format == "json":
        print_json({"name": name, "labels": result})
        return
    if quiet:
        return
    for key, value in sorted(result.items()):
        echo(f"{key}={value}")


@image.command("tag")
@click.argument("source", metavar="SRC", shell_complete=complete_images)
@click.argument("targets", metavar="DST...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Move names that point at another image.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@format_option
@pass_context
def tag(
    ctx: Context,
    source: str,
    targets: tuple[str, ...],
    force: bool,
    quiet: bool,
    output_format: str,
) -> None:
    """Give an image more names."""
    with ctx.store("write") as store:
        record = store.resolve(source)  # the stored name, as the new names are normalised
        names = store.tag(source, targets, force=force)
    if output_format == "json":
        print_json({"source": record.name, "names": names, "digest": str(record.digest)})
    elif not quiet:
        for name in names:
            echo(name)


@image.command("rm")
@click.argument("refs", metavar="REF...", nargs=-1, required=True, shell_complete=complete_images)
@click.option("--no-gc", is_flag=True, help="Remove names only; leave content for a later gc.")
@click.option(
    "--sync",
    is_flag=True,
    help="Accepted for ctr's scripts; a no-op: rm has done all its work (the gc too, unless"
    " --no-gc) when it returns.",
)
@click.option("-f", "--force", is_flag=True, help="A digest given removes every name of its image.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@format_option
@pass_context
def rm(
    ctx: Context,
    refs: tuple[str, ...],
    no_gc: bool,
    sync: bool,
    force: bool,
    quiet: bool,
    output_format: str,
) -> None:
    """Remove image names and free the content no image uses (aliases: remove, delete, del).

    REF is a name, or an image's digest (or a unique prefix of its hex): that removes the
    image's one name; an image with several is refused unless --force removes them all."""
    with ctx.store("write") as store:
        result = store.remove(refs, collect_garbage=not no_gc, force=force)
    if output_format == "json":
        print_json(
            {
                "removed": result.removed,
                "missing": result.missing,
                "blobsRemoved": len(result.gc.removed) if result.gc else 0,
                "bytesFreed": result.gc.bytes_freed if result.gc else 0,
            }
        )
    elif not quiet:
        for name in result.removed:
            echo(name)
        if result.gc is not None:
            echo(
                f"{counted(len(result.gc.removed), 'blob')} removed,"
                f" {human_size(result.gc.bytes_freed)} freed"
            )
    if result.missing:
        noun = "image" if len(result.missing) == 1 else "images"
        raise CargoholdError(
            f"{noun} {', '.join(result.missing)} not found in namespace {ctx.namespace}"
        )
