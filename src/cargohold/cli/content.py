"""``cargohold content``: the blobs of the store, listed, read, removed and collected."""

from __future__ import annotations

import sys
import time
from typing import Any, Final

import click

from ..errors import CargoholdError
from ..operations.results import ImageUser
from ..storage.gc import ResumableImport
from .context import Context, pass_context
from .groups import AliasedGroup
from .jsonout import content_json, gc_json, inventory_json
from .options import format_option
from .render import age, echo, print_json, print_rows
from .text import terminal_safe
from .units import counted, human_size


@click.group(
    cls=AliasedGroup,
    aliases={"list": "ls", "remove": "rm", "delete": "rm", "del": "rm", "prune": "gc"},
)
def content() -> None:
    """Work with the content (blobs) of the store."""


@content.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only digests.")
@format_option
@pass_context
def content_ls(ctx: Context, quiet: bool, output_format: str) -> None:
    """List every blob of the store: digest, size, age, and the images that use it (images
    of other namespaces are shown as NAMESPACE/NAME; past three, the rest are counted, as in
    "+998 more", and --format json lists them all)."""
    with ctx.store("read") as store:
        infos = store.content()
        resumable = store.resumable_imports()
    if output_format == "json":
        print_json([content_json(i) for i in infos])
    elif quiet:
        for info in infos:
            echo(str(info.digest))
    else:
        now = time.time()
        print_rows(
            ("DIGEST", "SIZE", "AGE", "USED BY"),
            [
                (
                    str(i.digest),
                    human_size(i.size),
                    age(now - i.created_at),
                    used_by(i.users, ctx.namespace),
                )
                for i in infos
            ],
        )
        _print_resumable(resumable, "kept to resume")


def _print_resumable(found: list[ResumableImport], state: str) -> None:
    """One line for each stopped import of a split archive whose staging is kept (or would
    be removed): not blobs of the store yet, but room it takes."""
    now = time.time()
    for item in found:
        echo(
            f"resumable import of {terminal_safe(item.archive)}: {human_size(item.staged_bytes)}"
            f" staged, {state}, last progress {age(now - item.updated_at)} ago"
        )


class _Duration(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """An age: a number with s, m, h or d (seconds by default)."""

    name = "duration"
    _UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        number, unit = text.rstrip("smhd"), text[len(text.rstrip("smhd")) :]
        if unit not in self._UNITS or not number.isdigit():
            self.fail(f"{value!r} is not an age (examples: 3600, 90m, 12h, 7d)", param, ctx)
        return float(int(number) * self._UNITS[unit])


#: How many of a blob's users the table names before it says how many more there are.
USED_BY_SHOWN = 3


def used_by(users: list[ImageUser], namespace: str) -> str:
    """The USED BY cell: the first few names and a count of the rest, so a blob a thousand
    tags share stays one readable row (``--format json`` lists every user)."""
    names = [u.qualified(namespace) for u in users[:USED_BY_SHOWN]]
    if len(users) > USED_BY_SHOWN:
        names.append(f"+{len(users) - USED_BY_SHOWN} more")
    return ",".join(names) or "-"


@content.command("get")
@click.argument("digest", metavar="DIGEST")
@click.option(
    "--verify",
    is_flag=True,
    help="Hash the bytes as they are written; exit 1 after the last one if they do not"
    " match DIGEST.",
)
@pass_context
def content_get(ctx: Context, digest: str, verify: bool) -> None:
    """Write a blob's bytes to stdout."""
    with ctx.store("read") as store, store.read_content(digest, verify=verify) as source:
        out = sys.stdout.buffer
        while chunk := source.read(1 << 20):
            out.write(chunk)
        out.flush()


@content.command("rm")
@click.argument("digests", metavar="DIGEST...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Remove content even if images use it.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@format_option
@pass_context
def content_rm(
    ctx: Context, digests: tuple[str, ...], force: bool, quiet: bool, output_format: str
) -> None:
    """Remove blobs. Content an image uses is refused unless --force (the image then shows
    as incomplete in image check); content an import in progress holds is always refused."""
    with ctx.store("write") as store:
        result = store.remove_content(digests, force=force)
    if output_format == "json":
        print_json({"removed": result.removed, "missing": result.missing})
    elif not quiet:
        for digest in result.removed:
            echo(digest)
    if result.missing:
        raise CargoholdError(f"{_blobs_not_found(result.missing)} not found in the store")


@content.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only the digests removed (or, --dry-run, to remove)."
)
@click.option(
    "--resumable",
    is_flag=True,
    help="Also remove what stopped imports of split archives staged, however recent (a"
    " re-run then reads every volume again).",
)
@click.option(
    "--resumable-max-age",
    type=_Duration(),
    default="7d",
    show_default=True,
    metavar="AGE",
    help="Keep a stopped split import's staging this long after its last progress.",
)
@format_option
@pass_context
def gc(
    ctx: Context,
    dry_run: bool,
    quiet: bool,
    resumable: bool,
    resumable_max_age: float,
    output_format: str,
) -> None:
    """Remove content that no image and no import in progress needs, and abandoned ingests
    (alias: prune, ctr's word). The staging of an import of a split archive that stopped at
    a bad volume is kept for --resumable-max-age, so a re-run resumes it."""
    with ctx.store("write") as store:
        result = store.gc(dry_run=dry_run, resumable=resumable, resumable_max_age=resumable_max_age)
    if output_format == "json":
        print_json(gc_json(result, dry_run))
        return
    if quiet:
        for digest, _ in result.removed:
            echo(str(digest))
        return
    if dry_run:  # what would go, so it can be checked before it is gone
        for digest, size in result.removed:
            echo(f"{digest}  {human_size(size)}")
        _print_resumable(result.resumable_removed, "would be removed")
        _print_resumable(result.resumable_kept, "kept to resume")
    else:
        _print_resumable(result.resumable_removed, "removed")
    verb = "would be removed" if dry_run else "removed"
    echo(f"{counted(len(result.removed), 'blob')} {verb}, {human_size(result.bytes_freed)}")


@content.command("inventory")
@click.option(
    "-o",
    "--output",
    "out",
    default="-",
    show_default=True,
    metavar="FILE|-",
    help="Where to write the inventory (- for stdout).",
)
@click.option("--sync", is_flag=True, help="Flush the file to disk before it takes its name.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing (with -o FILE).")
@format_option
@pass_context
def content_inventory(ctx: Context, out: str, sync: bool, quiet: bool, output_format: str) -> None:
    """Write what this namespace holds (every blob's digest and size, every image name and
    its target) for a sender to export only the rest: image export --against FILE.

    A versioned JSON document (application/vnd.cargohold.inventory.v1+json) with a digest of
    its own body, zstd-compressed when over 1 MiB. With -o FILE a line (or --format json)
    says what was written; with stdout, nothing else is printed."""
    if out == "-" and sys.stdout.isatty():
        raise CargoholdError("refusing to write an inventory to a terminal; use -o FILE")
    with ctx.store("read") as store:
        result = store.write_inventory(out, sync=sync)
    if out == "-":
        return
    if output_format == "json":
        print_json(inventory_json(result))
    elif not quiet:
        echo(
            f"inventory of namespace {result.namespace}: {counted(result.blobs, 'blob')}"
            f" ({human_size(result.size)}), {counted(result.images, 'image')};"
            f" {human_size(result.bytes_written)} written to {out} ({result.digest})"
        )


def _blobs_not_found(digests: list[str]) -> str:
    """``blob D`` or ``blobs D1, D2``: the subject of the store's one not-found wording."""
    noun = "blob" if len(digests) == 1 else "blobs"
    return f"{noun} {', '.join(digests)}"
