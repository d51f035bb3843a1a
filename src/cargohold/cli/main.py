"""The ``cargohold`` command line: parses arguments, calls :class:`cargohold.Store`, prints.

Every failure cargohold can explain becomes one line on stderr (``cargohold: error: …``) and
exit status 1; usage errors exit 2; tracebacks appear only with ``--debug``.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeVar, cast

import click
from click.shell_completion import CompletionItem, get_completion_class

from ..archive.compression import Compression
from ..errors import CargoholdError, ReadOnlyStoreError
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME, Limits
from ..oci.tree import TreeNode
from ..operations.context import DEFAULT_NAMESPACE, default_root
from ..operations.results import iso_time
from ..operations.store import Store
from ..storage.metadata import StoreMode
from ..version import __version__
from .progress import make_progress
from .text import terminal_safe
from .units import human_size

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


class _Interrupted(Exception):
    """Ctrl-C, carried past click (which would print a blank line and exit 1) to :func:`main`."""


class RootGroup(AliasedGroup):
    """The top-level group: a Ctrl-C in any command ends it with status 130, as a shell's."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None


class Context:
    """What every command needs: where the store is and how to report."""

    def __init__(self, root: str | None, namespace: str, debug: bool) -> None:
        self.root = root
        self.namespace = namespace
        self.debug = debug
        #: Rows of the store's metadata that listings left out (see :func:`after_command`).
        self.unreadable: list[str] = []

    @contextmanager
    def store(self, mode: StoreMode) -> Iterator[Store]:
        """The store, opened for what the command does: to read (creates nothing, works for
        a user who may only read the store) or to write (creates it, needs write access).
        Each row of metadata a listing had to leave out is warned about as it closes."""
        try:
            store = Store(self.root, self.namespace, mode)
        except ReadOnlyStoreError as exc:
            command = click.get_current_context().command_path
            raise ReadOnlyStoreError(f"{exc}: {command} needs write access") from None
        try:
            yield store
        finally:
            store.close()
            for message in store.meta.unreadable:
                _warn(message)
            self.unreadable.extend(store.meta.unreadable)


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


#: -q for commands that show progress: it also turns the progress display off.
_quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="Print nothing but errors and warnings."
)


class _ByteSize(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A size in bytes, with an optional binary suffix: 512, 8KiB, 16MiB, 2GiB, 1TiB."""

    name = "size"
    _UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().removesuffix("b").removesuffix("i")
        number, unit = text.rstrip("kmgt"), text[len(text.rstrip("kmgt")) :]
        if unit not in self._UNITS or not number.isdigit():
            self.fail(f"{value!r} is not a size (examples: 4096, 8MiB, 2GiB)", param, ctx)
        return int(number) * self._UNITS[unit]


def _limit_options(f: F) -> F:
    defaults = Limits()
    f = click.option(
        "--max-uncompressed-size",
        type=_ByteSize(),
        default=defaults.uncompressed_bytes,
        metavar="SIZE",
        help="Refuse a compressed archive that expands beyond SIZE. [default: 1TiB]",
    )(f)
    f = click.option(
        "--max-expansion",
        type=click.FloatRange(min=1),
        default=defaults.expansion_ratio,
        show_default=True,
        metavar="RATIO",
        help="Refuse a compressed archive that expands more than RATIO times its size"
        " (decompression bombs).",
    )(f)
    return click.option(
        "--max-document-size",
        type=_ByteSize(),
        default=defaults.document_bytes,
        metavar="SIZE",
        help="Largest JSON document (index, manifest, config) read. [default: 4MiB, at most 64MiB]",
    )(f)


def _limits(max_document_size: int, max_expansion: float, max_uncompressed_size: int) -> Limits:
    try:
        return Limits(max_document_size, max_expansion, max_uncompressed_size)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


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
    cls=RootGroup,
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


@cli.result_callback()
@pass_context
def after_command(ctx: Context, /, result: object, **params: object) -> None:
    """A command that listed what it could but left out unreadable rows of the store's
    metadata (warned about already) exits 1, so that a script notices."""
    if ctx.unreadable:
        raise CargoholdError(
            f"{len(ctx.unreadable)} unreadable record(s) of the store's metadata left out"
        )


@cli.group(cls=AliasedGroup, aliases={"images": "image", "i": "image"})
def image() -> None:
    """Import, export, pull, push, tag, list and remove images (aliases: images, i)."""


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
@_limit_options
@_format_option
@_progress_option
@_quiet_option
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
    max_document_size: int,
    max_expansion: float,
    max_uncompressed_size: int,
    output_format: str,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Import the images of an OCI image layout archive (FILE, or - for stdin).

    Every blob is verified; nothing is stored unless the whole archive is sound.
    """
    _refuse_terminal_stdin(archive)
    with ctx.store("write") as store:
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
            limits=_limits(max_document_size, max_expansion, max_uncompressed_size),
        )
    for warning in result.warnings:
        _warn(warning)
    if output_format == "json":
        _print_json(result.to_json())
    elif not quiet:
        width = max(len(i.name) for i in result.images)
        for item in result.images:
            _echo(
                f"{item.name:<{width}}  {item.digest.algorithm}:{item.digest.short}  {item.action}"
            )
        _echo(
            f"{result.blobs_written} blobs written, {human_size(result.bytes_written)} written,"
            f" {human_size(result.bytes_deduplicated)} deduplicated"
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
@_progress_option
@_quiet_option
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
    platforms: tuple[str, ...],
    all_platforms: bool,
    skip_manifest_json: bool,
    skip_non_distributable: bool,
    compress: Compression,
    archive_format: str,
    sync: bool,
    verify: bool,
    progress_mode: str,
    quiet: bool,
    output_format: str,
) -> None:
    """Write images to an archive (OUT, or - for stdout): an OCI image layout with docker's
    manifest.json, readable by ctr, skopeo, podman and docker. Byte-reproducible.

    With --compress the whole archive is gzip or zstd compressed; cargohold, ctr 2.x, docker
    and podman read those directly. With --format oci-dir, OUT is a new layout directory.

    A regular file at OUT is replaced atomically (keeping its mode, and its group and owner
    where permitted); a symlink is written through to its file; a FIFO or device at OUT is
    written in place, like -."""
    if out == "-" and sys.stdout.isatty():
        raise CargoholdError("refusing to write an archive to a terminal; redirect stdout")
    with ctx.store("read") as store:
        result = store.export(
            out,
            refs,
            platforms=platforms,
            all_platforms=all_platforms,
            skip_manifest_json=skip_manifest_json,
            skip_non_distributable=skip_non_distributable,
            compress=compress,
            layout_dir=archive_format == "oci-dir",
            progress=make_progress(progress_mode, quiet=quiet),
            sync=sync,
            verify=verify,
        )
    if output_format == "json":
        # with the archive on stdout, the report goes to stderr
        click.echo(json.dumps(result.to_json(), indent=2), err=_is_stdout(out))


def _is_stdout(out: str) -> bool:
    """Whether the output is stdout: ``-``, or a name of it (``/dev/stdout``, ``/dev/fd/1``)."""
    if out == "-":
        return True
    try:
        named, stdout = os.stat(out), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (named.st_dev, named.st_ino) == (stdout.st_dev, stdout.st_ino)


def _refuse_terminal_stdin(source: str) -> None:
    """An archive read from a terminal is a forgotten redirection, not something to wait for
    (docker load and podman load refuse it too)."""
    if source == "-" and sys.stdin.isatty():
        raise CargoholdError(
            "refusing to read an archive from a terminal; redirect stdin from a file or a pipe"
        )


def _complete_images(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Image names of the store for shell completion; never creates a store."""
    root_ctx = ctx.find_root()
    root = root_ctx.params.get("root") or os.environ.get("CARGOHOLD_ROOT")
    namespace = root_ctx.params.get("namespace") or DEFAULT_NAMESPACE
    path = Path(root) if root else default_root()
    try:
        with Store(path, namespace, "read") as store:
            names = [info.name for info in store.meta.list_images(namespace)]
    except (CargoholdError, sqlite3.Error):
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _registry_options(body: F) -> F:
    """The registry options of pull and push, handed to the command as one client factory."""

    @functools.wraps(body)
    def command(
        *args: Any,
        plain_http: bool,
        trust_token_host: bool,
        user: str | None,
        password_stdin: bool,
        ca_cert: str | None,
        tls_verify: bool,
        speed_limit: int,
        speed_time: float,
        **kwargs: Any,
    ) -> Any:
        factory = _client_factory(
            plain_http, user, password_stdin, ca_cert, tls_verify, trust_token_host,
            speed_limit, speed_time,
        )  # fmt: skip
        return body(*args, client_factory=factory, **kwargs)

    f = cast(F, command)
    f = click.option(
        "--speed-time",
        type=click.FloatRange(min=0, min_open=True, max=86400),
        default=DEFAULT_SPEED_TIME,
        show_default=True,
        metavar="SECONDS",
        help="How long a transfer may stay below --speed-limit before it is abandoned.",
    )(f)
    f = click.option(
        "--speed-limit",
        type=click.IntRange(min=0),
        default=DEFAULT_SPEED_LIMIT,
        show_default=True,
        metavar="BYTES",
        help="Abandon a transfer moving fewer bytes a second than this for --speed-time"
        " (as curl's --speed-limit); 0 turns the floor off.",
    )(f)
    f = click.option(
        "--tls-verify",
        type=click.BOOL,
        default=True,
        show_default=True,
        metavar="BOOLEAN",
        help="Verify the registry's TLS certificate (--tls-verify=false to skip).",
    )(f)
    f = click.option(
        "--ca-cert",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="Trust this CA certificate (PEM) besides the system's.",
    )(f)
    f = click.option(
        "--password-stdin", is_flag=True, help="Read the password of --user from stdin."
    )(f)
    f = click.option(
        "--user",
        metavar="USER[:PASS]",
        help="Registry credentials (default: those of `docker login`, else anonymous).",
    )(f)
    f = click.option(
        "--trust-token-host",
        is_flag=True,
        help="Also send the credentials to a token service at another origin (host or port)"
        " than the registry's, when the registry names one (never done without this; never"
        " over plain HTTP to a TLS registry).",
    )(f)
    return click.option(
        "--plain-http",
        is_flag=True,
        help="HTTP without TLS, for a registry on this machine (localhost, 127.0.0.1, [::1]).",
    )(f)


def _client_factory(
    plain_http: bool,
    user: str | None,
    password_stdin: bool,
    ca_cert: str | None,
    tls_verify: bool,
    trust_token_host: bool,
    speed_limit: int,
    speed_time: float,
) -> Callable[[str], Any]:
    """Makes the registry client the options describe (the HTTP stack loads only here)."""
    from ..operations.transfer import check_plain_http
    from ..registry.client import Credentials, RegistryClient

    if password_stdin and user is None:
        raise click.UsageError("--password-stdin needs --user")
    credentials = None
    if user is not None:
        password = sys.stdin.readline() if password_stdin else None
        credentials = Credentials.from_user_option(user, password)
    verify: bool | str = ca_cert if ca_cert is not None and tls_verify else tls_verify

    def factory(host: str) -> RegistryClient:
        if plain_http:
            check_plain_http(host)
        return RegistryClient(
            host,
            credentials=credentials,
            plain_http=plain_http,
            verify=verify,
            allow_foreign_realm=trust_token_host,
            speed_limit=speed_limit,
            speed_time=speed_time,
        )

    return factory


@image.command("pull")
@click.argument("ref", metavar="REF")
@_platform_options
@_registry_options
@_format_option
@_progress_option
@_quiet_option
@pass_context
def pull(
    ctx: Context,
    ref: str,
    platforms: tuple[str, ...],
    all_platforms: bool,
    client_factory: Callable[[str], Any],
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
            platforms=platforms,
            all_platforms=all_platforms,
            client_factory=client_factory,
            progress=make_progress(progress_mode, quiet=quiet),
        )
    if output_format == "json":
        _print_json(result.to_json())
    elif not quiet:
        _echo(f"{result.name}  {result.digest.algorithm}:{result.digest.short}  {result.action}")
        _echo(
            f"{result.blobs_downloaded} blobs downloaded ({human_size(result.bytes_downloaded)}),"
            f" {result.blobs_present} already present"
        )


@image.command("push")
@click.argument("ref", metavar="REF", shell_complete=_complete_images)
@click.argument("destination", metavar="[DEST]", required=False)
@_platform_options
@_registry_options
@_format_option
@_progress_option
@_quiet_option
@pass_context
def push(
    ctx: Context,
    ref: str,
    destination: str | None,
    platforms: tuple[str, ...],
    all_platforms: bool,
    client_factory: Callable[[str], Any],
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
            platforms=platforms,
            all_platforms=all_platforms,
            client_factory=client_factory,
            progress=make_progress(progress_mode, quiet=quiet),
        )
    for warning in result.warnings:
        _warn(warning)
    if output_format == "json":
        _print_json(result.to_json())
    elif not quiet:
        _echo(f"{result.destination}  {result.digest.algorithm}:{result.digest.short}  pushed")
        _echo(
            f"{result.blobs_uploaded} blobs uploaded ({human_size(result.bytes_uploaded)}),"
            f" {result.blobs_mounted} mounted, {result.blobs_present} already there"
        )


@image.command("ls")
@click.argument("filters", metavar="[FILTER...]", nargs=-1)
@click.option("-q", "--quiet", is_flag=True, help="Print only image names.")
@_format_option
@pass_context
def ls(ctx: Context, filters: tuple[str, ...], quiet: bool, output_format: str) -> None:
    """List images (alias: list), those matching any FILTER when given.

    A filter is containerd's: name==REF, name~=REGEX (RE2 syntax, as Go's), target.digest==DIGEST,
    target.mediatype==TYPE, labels."KEY"==VALUE, annotations."KEY"!=VALUE, or a bare field
    that must be present. Commas inside one FILTER require all; several FILTERs require any.

    \b
      cargohold image ls 'name~=^docker.io/library/' 'labels."env"==prod,name~=:v1'
    """
    with ctx.store("read") as store:
        if quiet and output_format != "json":
            for name in store.list_names(filters):
                _echo(name)
            return
        infos = store.list_images(filters)
    if output_format == "json":
        _print_json([info.to_json() for info in infos])
    else:
        _print_rows(
            ("REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"),
            [
                (
                    i.record.name,
                    i.record.media_type,
                    str(i.record.digest),
                    human_size(i.size),
                    ",".join(str(p) for p in i.platforms) or "-",
                    _labels_text(i.record.labels),
                )
                for i in infos
            ],
        )


@image.command("inspect")
@click.argument("ref", metavar="REF", shell_complete=_complete_images)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    help="Summarise only these platforms' configs (repeatable); with --raw, the one to show.",
)
@click.option(
    "--raw",
    type=click.Choice(["manifest", "config", "index"]),
    help="Print the stored document, byte for byte (manifest and config: this host's"
    " platform, or --platform).",
)
@_format_option
@pass_context
def inspect(
    ctx: Context,
    ref: str,
    platforms: tuple[str, ...],
    raw: str | None,
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
        result = store.inspect(ref, platforms)
    if output_format == "json":
        _print_json(result.to_json())
        return
    r = result.record
    _print_fields(
        [
            ("Name", r.name),
            ("Digest", str(r.digest)),
            ("Media type", r.media_type),
            ("Labels", _labels_text(r.labels)),
            ("Imported", _iso(r.created_at)),
            ("Updated", _iso(r.updated_at)),
        ]
        + ([("Partial", "yes: some manifests of its index were not imported")] if r.partial else [])
    )
    _echo()
    _print_tree(result.tree)
    for manifest in result.manifests:
        _echo()
        _echo(f"{manifest.platform or 'no platform'} (manifest {manifest.node.descriptor.digest})")
        layers = manifest.node.children[1:]
        layer_text = f"{len(layers)} ({human_size(sum(n.descriptor.size for n in layers))})"
        config = manifest.config
        if config is None:
            _print_fields([("Config", "not in the store"), ("Layers", layer_text)], indent=2)
            continue
        _print_fields(
            [
                ("Created", config.created or "-"),
                ("Platform", str(config.platform) if config.platform else "-"),
                ("Entrypoint", _json_or_dash(config.entrypoint)),
                ("Cmd", _json_or_dash(config.cmd)),
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
@click.argument("refs", metavar="[REF...]", nargs=-1, shell_complete=_complete_images)
@_platform_options
@click.option("--verify", is_flag=True, help="Also re-hash every blob and report corrupt ones.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the names of complete images.")
@_format_option
@pass_context
def check(
    ctx: Context,
    refs: tuple[str, ...],
    platforms: tuple[str, ...],
    all_platforms: bool,
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
        results = store.check(refs, platforms=platforms, all_platforms=all_platforms, verify=verify)
    bad = [r for r in results if not r.ok]
    if output_format == "json":
        _print_json([r.to_json() for r in results])
    elif quiet:
        failed = {r.record.name for r in bad}
        for name in dict.fromkeys(r.record.name for r in results):
            if name not in failed:
                _echo(name)
    else:
        _print_rows(
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
                _echo(f"{where}: missing {digest}")
            for digest in r.corrupt:
                _echo(f"{where}: corrupt {digest}")
            if r.problem:
                _echo(f"{where}: {r.problem}")
    if bad:
        images = len({r.record.name for r in bad})
        raise CargoholdError(
            f"{images} image(s) with missing, corrupt or unreadable content"
            f" ({len(bad)} of {len(results)} checks failed)"
        )


@image.command("label")
@click.argument("ref", metavar="REF", shell_complete=_complete_images)
@click.argument("labels", metavar="KEY=VALUE...", nargs=-1)
@click.option("-r", "--replace-all", is_flag=True, help="Replace all labels with the ones given.")
@_format_option
@pass_context
def label(
    ctx: Context, ref: str, labels: tuple[str, ...], replace_all: bool, output_format: str
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
        _print_json({"name": name, "labels": result})
        return
    for key, value in sorted(result.items()):
        _echo(f"{key}={value}")


@image.command("tag")
@click.argument("source", metavar="SRC", shell_complete=_complete_images)
@click.argument("targets", metavar="DST...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Move names that point at another image.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@_format_option
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
        names = store.tag(source, targets, force=force)
        digest = store.resolve(names[0]).digest
    if output_format == "json":
        _print_json({"source": source, "names": names, "digest": str(digest)})
    elif not quiet:
        for name in names:
            _echo(name)


@image.command("rm")
@click.argument("refs", metavar="REF...", nargs=-1, required=True, shell_complete=_complete_images)
@click.option("--no-gc", is_flag=True, help="Remove names only; leave content for a later gc.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@_format_option
@pass_context
def rm(ctx: Context, refs: tuple[str, ...], no_gc: bool, quiet: bool, output_format: str) -> None:
    """Remove image names and free the content no image uses (aliases: remove, delete, del)."""
    with ctx.store("write") as store:
        result = store.remove(refs, collect_garbage=not no_gc)
    if output_format == "json":
        _print_json(
            {
                "removed": result.removed,
                "missing": result.missing,
                "blobsRemoved": len(result.gc.removed) if result.gc else 0,
                "bytesFreed": result.gc.bytes_freed if result.gc else 0,
            }
        )
    elif not quiet:
        for name in result.removed:
            _echo(name)
        if result.gc is not None:
            _echo(
                f"{len(result.gc.removed)} blobs removed, {human_size(result.gc.bytes_freed)} freed"
            )
    if result.missing:
        raise CargoholdError(f"image not found: {', '.join(result.missing)}")


@cli.group(cls=AliasedGroup, aliases={"list": "ls", "remove": "rm", "delete": "rm", "del": "rm"})
def content() -> None:
    """Work with the content (blobs) of the store."""


@content.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only digests.")
@_format_option
@pass_context
def content_ls(ctx: Context, quiet: bool, output_format: str) -> None:
    """List every blob of the store: digest, size, age, and the images that use it (images
    of other namespaces are shown as NAMESPACE/NAME)."""
    with ctx.store("read") as store:
        infos = store.content()
    if output_format == "json":
        _print_json([i.to_json() for i in infos])
    elif quiet:
        for info in infos:
            _echo(str(info.digest))
    else:
        now = time.time()
        _print_rows(
            ("DIGEST", "SIZE", "AGE", "USED BY"),
            [
                (
                    str(i.digest),
                    human_size(i.size),
                    _age(now - i.created_at),
                    ",".join(u.qualified(ctx.namespace) for u in i.users) or "-",
                )
                for i in infos
            ],
        )


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
@_format_option
@pass_context
def content_rm(
    ctx: Context, digests: tuple[str, ...], force: bool, quiet: bool, output_format: str
) -> None:
    """Remove blobs. Content an image uses is refused unless --force (the image then shows
    as incomplete in image check); content an import in progress holds is always refused."""
    with ctx.store("write") as store:
        result = store.remove_content(digests, force=force)
    if output_format == "json":
        _print_json({"removed": result.removed, "missing": result.missing})
    elif not quiet:
        for digest in result.removed:
            _echo(digest)
    if result.missing:
        raise CargoholdError(f"content not found: {', '.join(result.missing)}")


@content.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@_format_option
@pass_context
def gc(ctx: Context, dry_run: bool, output_format: str) -> None:
    """Remove content that no image and no import in progress needs, and abandoned ingests."""
    with ctx.store("write") as store:
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
    _echo(f"{len(result.removed)} blobs {verb}, {human_size(result.bytes_freed)}")


@cli.group(cls=AliasedGroup, aliases={"list": "ls", "remove": "rm", "delete": "rm", "del": "rm"})
def namespace() -> None:
    """List, create and remove namespaces (aliases: namespaces, ns)."""


cli.aliases.update({"namespaces": "namespace", "ns": "namespace"})


@namespace.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only names.")
@_format_option
@pass_context
def namespace_ls(ctx: Context, quiet: bool, output_format: str) -> None:
    """List namespaces and how many images each holds."""
    with ctx.store("read") as store:
        found = store.namespaces()
    if output_format == "json":
        _print_json(
            [
                {"name": n.name, "images": n.images, "createdAt": iso_time(n.created_at)}
                for n in found
            ]
        )
    elif quiet:
        for n in found:
            _echo(n.name)
    else:
        _print_rows(("NAME", "IMAGES"), [(n.name, str(n.images)) for n in found])


@namespace.command("create")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_context
def namespace_create(ctx: Context, names: tuple[str, ...]) -> None:
    """Create namespaces (importing into a new namespace also creates it)."""
    with ctx.store("write") as store:
        for name in names:
            store.create_namespace(name)
            _echo(name)


@namespace.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_context
def namespace_rm(ctx: Context, names: tuple[str, ...]) -> None:
    """Remove namespaces; one that still has images is refused."""
    with ctx.store("write") as store:
        for name in names:
            store.remove_namespace(name)
            _echo(name)


@cli.group()
def archive() -> None:
    """Look into image archives without importing them."""


@archive.command("inspect")
@click.argument("source", metavar="FILE|-")
@_platform_options
@_limit_options
@_format_option
@_progress_option
@pass_context
def archive_inspect(
    ctx: Context,
    source: str,
    platforms: tuple[str, ...],
    all_platforms: bool,
    max_document_size: int,
    max_expansion: float,
    max_uncompressed_size: int,
    output_format: str,
    progress_mode: str,
) -> None:
    """What an archive holds (images, names, platforms, blobs, size) and how much an import
    would add to this store, with every blob verified; nothing is written anywhere.

    The import estimate uses the platforms an import would (this host's by default,
    --platform, --all-platforms). Exits 1 when the import would fail."""
    _refuse_terminal_stdin(source)
    from ..operations.inspecting import inspect_archive

    report = inspect_archive(
        source,
        ctx.root,
        platforms=platforms,
        all_platforms=all_platforms,
        progress=make_progress(progress_mode),
        limits=_limits(max_document_size, max_expansion, max_uncompressed_size),
    )
    for warning in report.warnings:
        _warn(warning)
    if output_format == "json":
        _print_json(report.to_json())
    else:
        _print_fields(
            [
                ("Format", "OCI image layout" if report.format == "oci" else "docker archive"),
                ("Blobs", f"{report.blobs}, {human_size(report.size)}"),
            ]
        )
        _echo()
        _print_rows(
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
        _echo()
        if report.importable:
            _echo(f"Import would add {report.new_blobs} blobs, {human_size(report.bytes_to_add)}")
    if report.problem is not None:
        raise CargoholdError(f"import would fail: {report.problem}")


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (image names complete from the store).

    \b
      bash: eval "$(cargohold completion bash)"       (in ~/.bashrc)
      zsh:  eval "$(cargohold completion zsh)"        (in ~/.zshrc)
      fish: cargohold completion fish > ~/.config/fish/completions/cargohold.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "cargohold", "_CARGOHOLD_COMPLETE").source())


# -- output helpers -------------------------------------------------------------------------


def _render(renderable: object) -> None:
    """Print a rich renderable as plain text: no colour, no wrapping, no trailing blanks."""
    from rich.console import Console  # rich is slow to import: only when a tree is shown

    console = Console(width=100_000, highlight=False, color_system=None)
    with console.capture() as capture:
        console.print(renderable, crop=False, soft_wrap=True)
    for line in capture.get().splitlines():
        _echo(line.rstrip())


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns two spaces apart, as ctr prints them (plain text: rich's table layout costs
    half a second for a thousand rows). Cells are escaped before they are measured."""
    table = [[terminal_safe(cell) for cell in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        _echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_fields(fields: Sequence[tuple[str, str | Sequence[str]]], indent: int = 0) -> None:
    """``Name:  value`` lines; a list value is shown one item a line. Each item is escaped on
    its own, so a newline inside an item (an Env entry, a history line) cannot forge a line."""
    width = max(len(name) for name, _ in fields) + 2
    for name, value in fields:
        lines = [value] if isinstance(value, str) else list(value) or ["-"]
        _echo(f"{' ' * indent}{name + ':':<{width}}{terminal_safe(lines[0])}")
        for line in lines[1:]:
            _echo(f"{' ' * (indent + width)}{terminal_safe(line)}")


def _print_tree(root: TreeNode) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    def label(node: TreeNode) -> str:
        d = node.descriptor
        parts = [node.role]
        if d.platform is not None:
            parts.append(str(d.platform))
        parts += [str(d.digest), human_size(d.size), d.media_type]
        if not node.present:
            parts.append("(not in the store)")
        if node.problem:
            parts.append(f"(unreadable: {node.problem})")
        if node.repeated:
            parts.append("(listed above)")
        # Escaped twice: control characters for the terminal, then rich's markup ("[bold]").
        return escape(terminal_safe("  ".join(parts)))

    def add(branch: Any, node: TreeNode) -> None:
        for child in node.children:
            add(branch.add(label(child)), child)

    top = Tree(label(root))
    add(top, root)
    _render(top)


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _json_or_dash(value: list[str] | None) -> str:
    return json.dumps(value) if value else "-"


def _print_traceback() -> None:
    import traceback  # only for --debug

    traceback.print_exc()


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(seconds: float) -> str:
    """A short relative age, as docker and ctr print them."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{max(int(seconds), 0)} seconds"


def _echo(line: str = "", err: bool = False) -> None:
    """One line of human-readable output, its control and format characters escaped."""
    click.echo(terminal_safe(line), err=err)


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def _warn(message: str) -> None:
    _echo(f"cargohold: warning: {message}", err=True)


def _fail(message: str) -> NoReturn:
    _echo(f"cargohold: error: {message}", err=True)
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
    except (KeyboardInterrupt, _Interrupted):
        _echo("cargohold: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except CargoholdError as exc:
        if debug:
            _print_traceback()
        _fail(str(exc))
    except sqlite3.Error as exc:
        if debug:
            _print_traceback()
        if "locked" in str(exc):
            _fail("the store is locked by another cargohold process; gave up waiting")
        _fail(f"store metadata (metadata.db): {exc}")
    except OSError as exc:
        if debug:
            _print_traceback()
        _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except Exception as exc:
        if debug:
            _print_traceback()
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
