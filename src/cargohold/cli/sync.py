"""``cargohold sync FILE…``: bring the store in line with lists of images (text lists or
skopeo-sync YAML files), and the summary of what moved."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from ..errors import CargoholdError
from .access import HostAccess, RegistryAccess
from .context import Context, pass_context
from .jsonout import sync_json
from .options import (
    BoolValueCommand,
    PlatformSelection,
    format_option,
    platform_options,
    progress_option,
    quiet_option,
    registry_access_options,
)
from .progress import isatty
from .render import echo, print_json, print_rows, warn
from .units import human_size

if TYPE_CHECKING:
    from ..operations.pushingall import PushAllEntry
    from ..operations.syncing import SyncEntry, SyncResult
    from ..operations.synclists import SyncList


def jobs_option(f: Callable[..., object]) -> Callable[..., object]:
    return click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1, 64),
        default=4,
        show_default=True,
        metavar="N",
        help="Images transferred at once.",
    )(f)


@click.command("sync", cls=BoolValueCommand)
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path())
@jobs_option
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@click.option(
    "--prune",
    is_flag=True,
    help="Remove names a previous sync of the same FILEs created that they no longer name.",
)
@platform_options
@registry_access_options
@format_option
@progress_option
@quiet_option
@pass_context
def sync(
    ctx: Context,
    files: tuple[str, ...],
    jobs: int,
    dry_run: bool,
    prune: bool,
    selection: PlatformSelection,
    access: RegistryAccess,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Pull every image the FILEs name that the store lacks or that changed upstream.

    A FILE is a text list (one reference a line, # comments, optionally --platform P or
    --all-platforms after a reference) or, when its name ends in .yaml or .yml, a skopeo sync
    file (registry: {images: {repo: [tags]}, images-by-tag-regex: {repo: regex}, tls-verify,
    cert-dir, credentials}). An image the store holds whole costs one HEAD request. One failed
    image does not stop the others; the exit status is 1 when any failed. --dry-run lists
    what would be created or updated and the bytes that would be downloaded. --format json prints
    {images: [{name, action, digest, bytes, error}], pruned, dryRun, created, updated,
    unchanged, failed, bytes}.
    """
    from ..operations.synclists import read

    lists = read(files)
    access = _scoped(access, lists)
    report = _reporter(progress_mode, quiet)
    with ctx.store("write") as store:
        result = store.sync(
            lists,
            platforms=selection.choice,
            client_factory=access.factory(),
            jobs=jobs,
            dry_run=dry_run,
            prune=prune,
            report=report,
        )
    for warning in result.warnings:
        warn(warning)
    if output_format == "json":
        print_json(sync_json(result))
    elif not quiet:
        _print_summary(result)
    if result.failed:
        raise CargoholdError(f"{len(result.failed)} of {len(result.entries)} images failed")


def _scoped(access: RegistryAccess, lists: SyncList) -> RegistryAccess:
    """The flags plus the YAML files' registry settings; --creds only for a list of one
    registry (credentials go to the registry they are for, never to every host of a list)."""
    from ..oci.references import Reference

    hosts = {Reference.parse(s.reference).domain for s in lists.sources}
    if access.credentials is not None and len(hosts) > 1:
        raise click.UsageError(
            f"--creds is for one registry, and the lists name {len(hosts)}: give each its"
            " credentials in the YAML file or with `cargohold login`"
        )
    settings = {
        host: HostAccess(s.tls_verify, s.cert_dir, s.credentials)
        for host, s in lists.registries.items()
    }
    return access.with_hosts(settings)


def _reporter(mode: str, quiet: bool) -> Callable[[SyncEntry], None] | None:
    """A line on stderr per image as it ends, on a terminal (or always with plain)."""
    if quiet or mode == "none" or (mode == "auto" and not isatty(sys.stderr)):
        return None
    lock = threading.Lock()
    done = 0

    def report(entry: SyncEntry) -> None:
        nonlocal done
        with lock:
            done += 1
            what = entry.error if entry.error else human_size(entry.bytes)
            echo(f"[{done}] {entry.name}: {entry.action} ({what})", err=True)

    return report


def _print_summary(result: SyncResult) -> None:
    rows = [
        (
            e.name,
            ("would be " if result.dry_run and e.action in ("created", "updated") else "")
            + e.action,
            f"{e.digest.algorithm}:{e.digest.short}" if e.digest else "-",
            human_size(e.bytes) if e.bytes else "-",
        )
        for e in result.entries
    ]
    if rows:
        moved = "TO DOWNLOAD" if result.dry_run else "DOWNLOADED"
        print_rows(("NAME", "ACTION", "DIGEST", moved), rows)
    for entry in result.failed:
        echo(f"{entry.name}: {entry.error}")
    for name in result.pruned:
        echo(f"{name}: {'would be ' if result.dry_run else ''}pruned")
    # Imported here: push and pull load this module for its options, not the sync machinery.
    from ..operations.syncing import SYNC_ACTIONS

    counts = ", ".join(f"{sum(e.action == a for e in result.entries)} {a}" for a in SYNC_ACTIONS)
    total = sum(e.bytes for e in result.entries)
    echo(f"{counts}; {human_size(total)} {'to download' if result.dry_run else 'downloaded'}")


# -- image push --all ------------------------------------------------------------------------


def print_push_all(entries: Sequence[PushAllEntry]) -> None:
    rows = [
        (
            e.destination,
            e.action,
            f"{e.digest.algorithm}:{e.digest.short}" if e.digest else "-",
            human_size(e.bytes) if e.bytes else "-",
            str(e.blobs_mounted),
            str(e.blobs_present),
        )
        for e in entries
    ]
    print_rows(("DESTINATION", "ACTION", "DIGEST", "UPLOADED", "MOUNTED", "PRESENT"), rows)
    for entry in entries:
        if entry.error:
            echo(f"{entry.name}: {entry.error}")
    pushed = sum(e.action == "pushed" for e in entries)
    failed = len(entries) - pushed
    echo(f"{pushed} pushed, {failed} failed; {human_size(sum(e.bytes for e in entries))} uploaded")


def push_reporter(mode: str, quiet: bool) -> Callable[[PushAllEntry], None] | None:
    """A line on stderr per image pushed, on a terminal (or always with plain)."""
    if quiet or mode == "none" or (mode == "auto" and not isatty(sys.stderr)):
        return None
    done = 0

    def report(entry: PushAllEntry) -> None:  # push_all calls it under its lock
        nonlocal done
        done += 1
        what = entry.error if entry.error else human_size(entry.bytes)
        echo(f"[{done}] {entry.destination}: {entry.action} ({what})", err=True)

    return report
