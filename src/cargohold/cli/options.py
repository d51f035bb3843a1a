"""Options several commands share, each handed to the command as one value where the user
sees several flags: the platform selection, the archive limits, the registry client.

Grouping happens here so that a command's body works with what the flags mean (a
:class:`PlatformSelection`, a :class:`~cargohold.limits.Limits`, a client factory) and a flag
cannot be added to one command and forgotten in its sibling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import click

from ..errors import InvalidPlatformError
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME, Limits
from ..oci.platforms import ALL_PLATFORMS, Platform, PlatformChoice
from .access import RegistryAccess, authfile_option, read_credentials

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class PlatformSelection:
    """Which platforms of a multi-platform image a command works on: those named with
    ``--platform``, every one (``--all-platforms``), or, with neither, the command's default."""

    platforms: tuple[str, ...] = ()
    all_platforms: bool = False

    @property
    def choice(self) -> PlatformChoice:
        """The selection as the library's verbs take it (``"all"``, some, or none)."""
        return ALL_PLATFORMS if self.all_platforms else self.platforms


def split_platforms(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--platform`` values as docker, podman and crane take them: repeated, or several in
    one value separated by commas. Each is checked here, so that a platform that cannot be
    one is a usage error naming the option (exit 2) before the command opens the store."""
    platforms: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            try:
                Platform.parse(item)
            except InvalidPlatformError as exc:
                raise click.BadParameter(str(exc), ctx, param) from None
            if item not in platforms:
                platforms.append(item)
    return tuple(platforms)


#: ``--platform``'s help, shared by every command that takes it.
PLATFORM_HELP = "Comma-separated or repeated: linux/amd64,linux/arm64."


def platform_options(body: F) -> F:
    """``--platform`` and ``--all-platforms``, handed to the command as ``selection``; the
    command selects this host's platform when neither is given."""
    return platform_choice("this host's platform")(body)


def platform_choice(default: str) -> Callable[[F], F]:
    """:func:`platform_options` for a command whose default selection is *default* (its help
    says what the command really does without the options)."""

    def decorate(body: F) -> F:
        @functools.wraps(body)
        def command(
            *args: Any, platforms: tuple[str, ...], all_platforms: bool, **kwargs: Any
        ) -> Any:
            return body(*args, selection=PlatformSelection(platforms, all_platforms), **kwargs)

        f = cast(F, command)
        f = click.option(
            "--all-platforms", is_flag=True, help="Every platform of a multi-platform image."
        )(f)
        return click.option(
            "--platform",
            "platforms",
            multiple=True,
            metavar="OS/ARCH[/VARIANT]",
            callback=split_platforms,
            help=f"Platforms to select. {PLATFORM_HELP} Default: {default}.",
        )(f)

    return decorate


def progress_option(f: F) -> F:
    """``--progress``: how transfers report on stderr, as ``progress_mode``."""
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
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="Print nothing but errors and warnings."
)


def format_option(f: F) -> F:
    """``--format text|json``: what a command prints on stdout, as ``output_format``."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output format.",
    )(f)


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


#: A size in bytes with an optional binary suffix, for options of other modules.
ByteSize = _ByteSize


def limit_options(body: F) -> F:
    """The limits on what an archive may make cargohold read, handed to the command as one
    :class:`~cargohold.limits.Limits` (``limits``). Limits out of range are a usage error
    before the command starts, so that bad flags leave the store as it was."""

    @functools.wraps(body)
    def command(
        *args: Any,
        max_document_size: int,
        max_expansion: float,
        max_uncompressed_size: int,
        **kwargs: Any,
    ) -> Any:
        try:
            limits = Limits(max_document_size, max_expansion, max_uncompressed_size)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        return body(*args, limits=limits, **kwargs)

    defaults = Limits()
    f = click.option(
        "--max-uncompressed-size",
        type=_ByteSize(),
        default=defaults.uncompressed_bytes,
        metavar="SIZE",
        help="Refuse a compressed archive that expands beyond SIZE. [default: 1TiB]",
    )(cast(F, command))
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


def registry_options(body: F) -> F:
    """The registry options of pull and push, handed to the command as one client factory
    (``client_factory``)."""

    @functools.wraps(body)
    def command(*args: Any, access: RegistryAccess, **kwargs: Any) -> Any:
        return body(*args, client_factory=access.factory(), **kwargs)

    return registry_access_options(cast(F, command))


def registry_access_options(body: F) -> F:
    """The registry options, handed to the command as one
    :class:`~cargohold.cli.access.RegistryAccess` (``access``), for commands that reach
    several registries or settle the access per registry (sync, push --all)."""

    @functools.wraps(body)
    def command(
        *args: Any,
        plain_http: bool,
        trust_token_host: bool,
        user: str | None,
        password_stdin: bool,
        authfile: str | None,
        ca_cert: str | None,
        tls_verify: bool,
        speed_limit: int,
        speed_time: float,
        **kwargs: Any,
    ) -> Any:
        access = RegistryAccess(
            plain_http=plain_http, tls_verify=tls_verify, ca_cert=ca_cert,
            credentials=read_credentials(user, password_stdin), authfile=authfile,
            trust_token_host=trust_token_host, speed_limit=speed_limit, speed_time=speed_time,
        )  # fmt: skip
        return body(*args, access=access, **kwargs)

    return _registry_flags(cast(F, command))


def _registry_flags(f: F) -> F:
    """The flags of :func:`registry_options`, in the order help lists them (last first):
    ``--plain-http`` first, then the credential flags, then TLS and the speed floor."""
    f = _transport_flags(f)
    f = _credential_flags(f)
    return click.option(
        "--plain-http",
        is_flag=True,
        help="HTTP without TLS (warned about unless the registry is on this machine);"
        " --tls-verify=false also falls back to it for a registry without TLS.",
    )(f)


def _credential_flags(f: F) -> F:
    """Who the client is to the registry, and where its credentials may go (last first)."""
    f = authfile_option(f)
    f = click.option(
        "--password-stdin", is_flag=True, help="Read the password of --creds from stdin."
    )(f)
    f = click.option(
        "--creds",
        "--user",
        "user",
        metavar="USER[:PASS]",
        help="Registry credentials (default: those stored by `cargohold login`, `podman login`"
        " or `docker login`, else anonymous).",
    )(f)
    return click.option(
        "--trust-token-host",
        is_flag=True,
        help="Also send the credentials to a token service at another origin (host or port)"
        " than the registry's, when the registry names one (never done without this; never"
        " over plain HTTP to a TLS registry).",
    )(f)


def _transport_flags(f: F) -> F:
    """How the connection is held: the TLS trust and the speed floor (last first)."""
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
        "--tls-verify/--no-tls-verify",
        default=True,
        show_default=True,
        help="Verify the registry's TLS certificate (--tls-verify=false, as podman and"
        " skopeo spell it, works too).",
    )(f)
    f = click.option(
        "--insecure",
        is_flag=True,
        hidden=True,
        expose_value=False,
        callback=_refuse_insecure,
    )(f)
    f = click.option(
        "--ca-cert",
        "--cert-dir",
        "ca_cert",
        metavar="PATH",
        type=click.Path(),
        help="Trust this CA certificate (PEM), or the *.crt files of this directory, besides"
        " the system's.",
    )(f)
    return f


def _refuse_insecure(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--insecure`` (crane's, oras's) means two things here: say which options they are,
    rather than click's guess of the nearest name (``--user``)."""
    if value:
        raise click.UsageError(
            "no --insecure here: --tls-verify=false skips certificate checks,"
            " --plain-http talks HTTP without TLS",
            ctx,
        )


class BoolValueCommand(click.Command):
    """A command whose boolean flags also take podman's and skopeo's ``--flag=true|false``
    (click's flags take no value; ``--tls-verify=false`` is what their users type)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = {
            name
            for param in self.params
            if isinstance(param, click.Option) and param.is_bool_flag and param.secondary_opts
            for name in param.opts
        }
        return super().parse_args(ctx, [_flag_spelling(arg, flags) for arg in args])


def _flag_spelling(arg: str, flags: set[str]) -> str:
    """``--tls-verify=false`` as ``--no-tls-verify``, ``--tls-verify=true`` as ``--tls-verify``."""
    name, sep, value = arg.partition("=")
    if not sep or name not in flags:
        return arg
    if value.lower() in ("true", "1", "yes"):
        return name
    if value.lower() in ("false", "0", "no"):
        return "--no-" + name.removeprefix("--")
    raise click.BadParameter(f"{value!r} is not true or false", param_hint=name)
