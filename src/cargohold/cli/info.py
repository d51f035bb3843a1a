"""``cargohold info``: where the store is, and what its content takes on disk."""

from __future__ import annotations

import click

from ..operations.info import store_info
from .context import Context, pass_context
from .jsonout import store_info_json
from .options import format_option
from .render import echo, print_fields, print_json
from .units import counted, human_size


@click.command("info")
@click.option("-q", "--quiet", is_flag=True, help="Print only the store's root.")
@format_option
@pass_context
def info(ctx: Context, quiet: bool, output_format: str) -> None:
    """Where the store is and what it holds: root, format, namespaces, images, blobs and their
    size, and what `content gc` would reclaim now (docker system df, for a store)."""
    with ctx.store("read") as store:
        found = store_info(store)
    if output_format == "json":
        print_json(store_info_json(found))
        return
    if quiet:
        echo(str(found.root))
        return
    reclaim = f"{counted(found.reclaimable_blobs, 'blob')} ({human_size(found.reclaimable_bytes)})"
    if found.reclaimable_blobs:
        reclaim += ": cargohold content gc removes them"
    print_fields(
        [
            ("Root", found.root),
            ("Format", f"{found.format} (cargohold {found.version})"),
            ("Namespaces", str(found.namespaces)),
            ("Images", f"{found.images} (all namespaces)"),
            ("Blobs", f"{found.blobs} ({human_size(found.bytes)})"),
            ("Reclaimable", reclaim),
        ]
    )
