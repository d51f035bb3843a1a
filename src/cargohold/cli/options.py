"""Options several commands share, each handed to the command as one value where the user
sees several flags: the platform selection, the archive limits, the registry client.

Grouping happens here so that a command's body works with what the flags mean (a
:class:`PlatformSelection`, a :class:`~cargohold.limits.Limits`, a client factory) and a flag
cannot be added to one command and forgotten in its sibling.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import click

from ..errors import InvalidPlatformError
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME, Limits
from ..oci.platforms import Platform

if TYPE_CHECKING:
    from ..operations.transfer import ClientFactory
    from ..registry.client import RegistryClient

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class PlatformSelection:
    """Which platforms of a multi-platform image a command works on: those named with
    ``--platform``, every one (``--all-platforms``), or, with neither, the command's default."""

    platforms: tuple[str, ...] = ()
    all_platforms: bool = False


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
    """``--platform`` and ``--all-platforms``, handed to the command as ``selection``."""

    @functools.wraps(body)
    def command(*args: Any, platforms: tuple[str, ...], all_platforms: bool, **kwargs: Any) -> Any:
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
        help=f"Platforms to select. {PLATFORM_HELP} Default: this host's platform.",
    )(f)


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
            plain_http=plain_http, user=user, password_stdin=password_stdin, ca_cert=ca_cert,
            tls_verify=tls_verify, trust_token_host=trust_token_host, speed_limit=speed_limit,
            speed_time=speed_time,
        )  # fmt: skip
        return body(*args, client_factory=factory, **kwargs)

    return _registry_flags(cast(F, command))


def _registry_flags(f: F) -> F:
    """The flags of :func:`registry_options`, in the order help lists them (last first)."""
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
    *,
    plain_http: bool,
    user: str | None,
    password_stdin: bool,
    ca_cert: str | None,
    tls_verify: bool,
    trust_token_host: bool,
    speed_limit: int,
    speed_time: float,
) -> ClientFactory:
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
