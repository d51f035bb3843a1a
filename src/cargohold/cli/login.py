"""``cargohold login`` and ``logout``: credentials kept where podman and skopeo keep them.

The flags are podman's. Login checks the credentials with the registry first (as podman does:
a refused password is never stored), then writes them to the auth file (``--authfile``, else
``$REGISTRY_AUTH_FILE``, else ``${XDG_RUNTIME_DIR}/containers/auth.json``), mode 0600; every
registry command of cargohold, podman and skopeo reads them from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import CargoholdError
from .access import RegistryAccess, authfile_option, tls_verify_option
from .jsonout import login_json, logout_json
from .options import BoolValueCommand, format_option
from .render import echo, print_json
from .text import terminal_safe


def _registry_host(registry: str) -> str:
    """The ``host[:port]`` a REGISTRY argument names (a scheme or a path is dropped, as podman
    drops them)."""
    from ..oci.references import Reference

    text = registry.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    host = text.split("/", 1)[0]
    Reference(host, "x")  # refuses what is no registry host
    return host.lower()


def _auth_file(authfile: str | None) -> Path:
    from ..registry.authfiles import default_auth_file

    return Path(authfile) if authfile is not None else default_auth_file()


@click.command("login", cls=BoolValueCommand)
@click.argument("registry", metavar="REGISTRY")
@click.option("-u", "--username", metavar="USER", help="The user name.")
@click.option("-p", "--password", metavar="PASS", help="The password (visible to other users).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@authfile_option
@tls_verify_option
@click.option(
    "--ca-cert", "--cert-dir", "ca_cert", metavar="PATH", type=click.Path(),
    help="Trust this CA certificate (PEM), or the *.crt files of this directory.",
)  # fmt: skip
@click.option("--plain-http", is_flag=True, help="HTTP without TLS.")
@click.option("--get-login", is_flag=True, help="Print the user name stored for REGISTRY.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@format_option
def login(
    registry: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    authfile: str | None,
    tls_verify: bool,
    ca_cert: str | None,
    plain_http: bool,
    get_login: bool,
    quiet: bool,
    output_format: str,
) -> None:
    """Log in to REGISTRY: check the credentials there, then store them in the auth file
    podman and skopeo read (mode 0600).

    Without --password or --password-stdin, the password is asked for on the terminal."""
    from ..registry.authfiles import AuthFile, find_credentials, store_login
    from ..registry.client import Credentials

    host = _registry_host(registry)
    path = _auth_file(authfile)
    if get_login:
        stored = find_credentials(host, [AuthFile(path)])
        if stored is None:
            raise CargoholdError(f"not logged in to {host} (in {path})")
        if output_format == "json":
            print_json(login_json(host, stored.username, path))
        else:
            echo(terminal_safe(stored.username))
        return
    if password is not None and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    username, password = _ask(username, password, password_stdin)
    credentials = Credentials(username, password)
    access = RegistryAccess(
        plain_http=plain_http, tls_verify=tls_verify, ca_cert=ca_cert, credentials=credentials
    )
    with access.factory()(host) as client:
        client.ping()
    store_login(path, host, credentials)
    if output_format == "json":
        print_json(login_json(host, username, path))
    elif not quiet:
        echo("Login Succeeded!")


def _ask(username: str | None, password: str | None, from_stdin: bool) -> tuple[str, str]:
    """The user name and password: given, read from stdin, or asked on the terminal."""
    if from_stdin:
        if username is None:
            raise click.UsageError("--password-stdin needs --username")
        return username, sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    interactive = sys.stdin.isatty()
    if username is None:
        if not interactive:
            raise click.UsageError("--username is needed when stdin is not a terminal")
        username = click.prompt("Username", err=True)
    if password is None:
        if not interactive:
            raise click.UsageError("give --password or --password-stdin")
        password = click.prompt("Password", hide_input=True, err=True)
    return username, password


@click.command("logout")
@click.argument("registry", metavar="[REGISTRY]", required=False)
@click.option("-a", "--all", "everything", is_flag=True, help="Forget every registry's login.")
@authfile_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@format_option
def logout(
    registry: str | None, everything: bool, authfile: str | None, quiet: bool, output_format: str
) -> None:
    """Forget the credentials stored for REGISTRY (or, with --all, for every registry) in the
    auth file."""
    from ..registry.authfiles import remove_login

    if everything == (registry is not None):
        raise click.UsageError("give REGISTRY or --all (not both)")
    path = _auth_file(authfile)
    host = _registry_host(registry) if registry is not None else None
    removed = remove_login(path, host)
    if host is not None and not removed:
        raise CargoholdError(f"not logged in to {host} (in {path})")
    if output_format == "json":
        print_json(logout_json(host, path))
    elif not quiet:
        echo(
            f"Removed login credentials for {host}" if host else "Removed login credentials for all"
        )
