"""``cargohold serve``: the store as a read-only OCI registry, from its own files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..serving.server import DEFAULT_ADDRESS, RequestRecord, ServeConfig, parse_address, run
from .context import Context, pass_context
from .render import echo
from .text import terminal_safe


def text_line(record: RequestRecord) -> str:
    """One request as a line for people (what came from the client escaped)."""
    user = f" {record['user']}" if record["user"] else ""
    return terminal_safe(
        f'{record["time"]} {record["remote"]}{user} "{record["method"]} {record["path"]}"'
        f" {record['status']} {record['bytes']} {record['seconds']:.3f}s"
    )


def json_line(record: RequestRecord) -> str:
    """One request as one JSON object (``--log-format json``)."""
    return json.dumps(record, separators=(",", ":"))


@click.command("serve")
@click.option(
    "--addr",
    default=DEFAULT_ADDRESS,
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen ([v6]:PORT for IPv6; port 0 picks a free port).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve HTTPS with this certificate (PEM, its chain after it).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The certificate's key (PEM).",
)
@click.option(
    "--htpasswd",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Require basic auth from this htpasswd file (bcrypt entries, htpasswd -B); off"
    " loopback only with TLS.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per request on stderr, as text or JSON.",
)
@pass_context
def serve(
    ctx: Context,
    addr: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    htpasswd: Path | None,
    log_format: str,
) -> None:
    """Serve the namespace's images as a read-only OCI registry, blobs sent from the store's
    own files. `?ns=HOST` (containerd's mirror requests) serves HOST/NAME; short Docker Hub
    names work as in docker. Stops on SIGTERM or SIGINT once requests in flight finish."""
    host, port = parse_address(addr)
    config = ServeConfig(
        Path(ctx.root) if ctx.root else None,
        ctx.namespace,
        host,
        port,
        tls_cert,
        tls_key,
        htpasswd,
    )
    line = json_line if log_format == "json" else text_line
    run(config, line, lambda message: echo(f"cargohold: {message}", err=True))
