"""How the registry commands reach a registry: TLS or plain HTTP, which certificates, whose
credentials. The flags are podman's and skopeo's (``--tls-verify``, ``--creds``,
``--authfile``, ``--cert-dir``; :func:`cargohold.cli.options.registry_options` declares them),
handed to the command as one :class:`RegistryAccess`, which makes the client factory the
operations take.

Plain HTTP and unverified TLS are allowed for any host (a site's registry on its LAN often has
no certificate), with one warning per host that is not this machine. ``--tls-verify=false``
also lets a registry that does not speak TLS be reached over plain HTTP, as podman and skopeo
do. Credentials given with ``--creds`` go only to the registry the command names.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME
from .render import warn

if TYPE_CHECKING:
    from ..operations.transfer import ClientFactory
    from ..registry.client import RegistryClient
    from ..registry.credentials import Credentials

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class HostAccess:
    """What a skopeo-sync file says of one registry: TLS, CA certificates, credentials."""

    tls_verify: bool | None = None
    cert_dir: str | None = None
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    """The registry flags of one command."""

    plain_http: bool = False
    tls_verify: bool = True
    ca_cert: str | None = None
    credentials: Credentials | None = None
    authfile: str | None = None
    trust_token_host: bool = False
    speed_limit: int = DEFAULT_SPEED_LIMIT
    speed_time: float = DEFAULT_SPEED_TIME
    #: Per-registry settings (a skopeo-sync file's), over the flags.
    hosts: Mapping[str, HostAccess] = field(default_factory=dict)

    def with_hosts(self, hosts: Mapping[str, HostAccess]) -> RegistryAccess:
        return replace(self, hosts=hosts)

    def factory(self) -> ClientFactory:
        """Makes the client of a host as the flags say (the HTTP stack loads only here); warns
        once per host reached without TLS or without verifying it, unless it is this machine."""
        # httpcore imports trio when it is installed, for async use cargohold never makes: a
        # fifth of a second of every registry command (an unchanged sync takes less than a
        # second in all). The command line runs nothing else that could want it.
        sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
        from ..operations.transfer import is_loopback
        from ..registry.client import RegistryClient
        from ..registry.credentials import is_docker_hub
        from ..registry.http import answers_plain_http_only

        lock = threading.Lock()
        plain: dict[str, bool] = {}

        def insecure(host: str, verify: bool | str) -> bool:
            """Whether *host* is reached over plain HTTP; warns the first time it is."""
            with lock:
                if host not in plain:
                    plain[host] = self.plain_http or (
                        verify is False
                        and not is_docker_hub(host)
                        and answers_plain_http_only(host)
                    )
                    if not is_loopback(host):
                        if plain[host]:
                            warn(f"{host} is reached over plain HTTP: what is sent can be read")
                        elif verify is False:
                            warn(f"the TLS certificate of {host} is not verified")
                return plain[host]

        def make(host: str) -> RegistryClient:
            settings = self.hosts.get(host, HostAccess())
            tls_verify = self.tls_verify if settings.tls_verify is None else settings.tls_verify
            ca = settings.cert_dir or self.ca_cert
            verify: bool | str = ca if ca is not None and tls_verify else tls_verify
            return RegistryClient(
                host,
                credentials=settings.credentials or self.credentials,
                config_path=self.authfile,
                plain_http=insecure(host, verify),
                verify=verify,
                allow_foreign_realm=self.trust_token_host,
                speed_limit=self.speed_limit,
                speed_time=self.speed_time,
            )

        return make


def read_credentials(user: str | None, password_stdin: bool) -> Credentials | None:
    """``--creds USER[:PASS]`` (or ``--user``), the password perhaps from stdin."""
    from ..registry.credentials import Credentials

    if password_stdin and user is None:
        raise click.UsageError("--password-stdin needs --creds (or --user)")
    if user is None:
        return None
    password = sys.stdin.readline() if password_stdin else None
    return Credentials.from_user_option(user, password)


def tls_verify_option(f: F) -> F:
    """``--tls-verify`` as a flag (``--tls-verify=false`` too, with
    :class:`~cargohold.cli.options.BoolValueCommand`), as ``podman login`` takes it."""
    return click.option(
        "--tls-verify/--no-tls-verify",
        default=True,
        show_default=True,
        help="Verify the registry's TLS certificate; --tls-verify=false skips that, and falls"
        " back to plain HTTP for a registry without TLS (warned about unless it is on this"
        " machine).",
    )(f)


def authfile_option(f: F) -> F:
    """``--authfile FILE``: the auth.json read (and written by login)."""
    return click.option(
        "--authfile",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="The auth.json to read credentials from (default: $REGISTRY_AUTH_FILE, else"
        " podman's, then docker's config.json).",
    )(f)
