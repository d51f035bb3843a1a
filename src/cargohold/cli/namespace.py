"""``cargohold namespace``: the namespaces image names live in."""

from __future__ import annotations

import click

from .context import Context, pass_context
from .groups import AliasedGroup
from .jsonout import iso_time, names_json
from .options import format_option
from .render import echo, print_json, print_rows


@click.group(cls=AliasedGroup, aliases={"list": "ls", "remove": "rm", "delete": "rm", "del": "rm"})
def namespace() -> None:
    """List, create and remove namespaces (aliases: namespaces, ns)."""


@namespace.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only names.")
@format_option
@pass_context
def namespace_ls(ctx: Context, quiet: bool, output_format: str) -> None:
    """List namespaces and how many images each holds."""
    with ctx.store("read") as store:
        found = store.namespaces()
    if output_format == "json":
        print_json(
            [
                {"name": n.name, "images": n.images, "createdAt": iso_time(n.created_at)}
                for n in found
            ]
        )
    elif quiet:
        for n in found:
            echo(n.name)
    else:
        print_rows(("NAME", "IMAGES"), [(n.name, str(n.images)) for n in found])


@namespace.command("create")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@format_option
@pass_context
def namespace_create(ctx: Context, names: tuple[str, ...], quiet: bool, output_format: str) -> None:
    """Create namespaces (importing into a new namespace also creates it). Prints each name;
    --format json: {created: [NAME...]}."""
    with ctx.store("write") as store:
        for name in names:
            store.create_namespace(name)
    _print_names("created", names, quiet, output_format)


@namespace.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@format_option
@pass_context
def namespace_rm(ctx: Context, names: tuple[str, ...], quiet: bool, output_format: str) -> None:
    """Remove namespaces; one that still has images is refused. Prints each name;
    --format json: {removed: [NAME...]}."""
    with ctx.store("write") as store:
        for name in names:
            store.remove_namespace(name)
    _print_names("removed", names, quiet, output_format)


def _print_names(key: str, names: tuple[str, ...], quiet: bool, output_format: str) -> None:
    if output_format == "json":
        print_json(names_json(key, names))
    elif not quiet:
        for name in names:
            echo(name)
