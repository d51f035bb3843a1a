"""Running the registry server: its socket, TLS, the access log, and a clean stop.

The server runs in the foreground until SIGTERM or SIGINT, then stops accepting, lets the
requests in flight finish for at most :data:`SHUTDOWN_SECONDS`, and returns. It listens on
loopback unless told otherwise, and refuses to take passwords over plain HTTP from other
machines: with ``--htpasswd`` on a non-loopback address, TLS is required.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import resource
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..errors import ServeConfigError
from ..operations.context import StoreContext
from .app import USER_KEY, make_app
from .auth import Htpasswd
from .content import ServedStore
from .pacing import unpace_listener

DEFAULT_ADDRESS: Final = "127.0.0.1:5000"
#: How long the requests in flight may take to finish after SIGTERM or SIGINT.
SHUTDOWN_SECONDS: Final = 10.0
#: An idle keep-alive connection is closed after this long (Go's registries use similar).
KEEPALIVE_SECONDS: Final = 30.0

#: What the access log hands the CLI for each request; the CLI renders the line.
RequestRecord = dict[str, Any]
LogLine = Callable[[RequestRecord], str]


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """What ``cargohold serve`` was asked to do."""

    root: Path | None
    namespace: str
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    htpasswd: Path | None = None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address; port 0 picks a free one); ``:PORT``
    is every IPv4 address, as in Distribution's configuration."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ServeConfigError(f"invalid address {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(config: ServeConfig) -> None:
    """Refuse what would be unsafe or cannot work, before anything listens."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ServeConfigError("--tls-cert and --tls-key go together")
    if config.htpasswd is not None and config.tls_cert is None and not is_loopback(config.host):
        raise ServeConfigError(
            f"--htpasswd on {config.host} without TLS would let passwords cross the network in"
            " clear text: give --tls-cert and --tls-key, or listen on a loopback address"
        )


def tls_context(config: ServeConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ServeConfigError(f"cannot load the TLS certificate and key: {exc}") from None
    return context


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (bound here, so that port 0's real port is known). On a loopback
    address every client is on this machine: its connections are not paced (see
    :mod:`.pacing`), from their first byte."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise ServeConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if is_loopback(host):
        unpace_listener(sock)
    return sock


def make_access_logger(line: LogLine, stream: TextIO) -> type[AbstractAccessLogger]:
    """An aiohttp access logger writing one line per request (rendered by *line*)."""

    class AccessLogger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            record: RequestRecord = {
                "time": _now(),
                "remote": request.remote or "",
                "user": request.get(USER_KEY) or "",
                "method": request.method,
                "path": request.path_qs,
                "status": response.status,
                "bytes": response.content_length or 0,
                "seconds": round(time, 6),
                "agent": request.headers.get("User-Agent", ""),
            }
            stream.write(line(record) + "\n")
            stream.flush()

        @property
        def enabled(self) -> bool:
            return True

    return AccessLogger


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def raise_open_files_limit() -> None:
    """Let the server hold as many connections as the system lets this user (each costs one
    descriptor, and an open blob one more): the soft limit up to the hard one, as Go's
    runtime does for Distribution."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(config: ServeConfig, line: LogLine, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT. *announce* gets the one line saying where it listens."""
    check_config(config)
    raise_open_files_limit()
    htpasswd = Htpasswd.load(config.htpasswd) if config.htpasswd is not None else None
    context = tls_context(config)
    store = StoreContext(config.root, config.namespace, "read")
    try:
        sock = bind(config.host, config.port)
        asyncio.run(_serve(store, htpasswd, context, sock, line, announce))
    finally:
        store.close()


async def _serve(
    store: StoreContext,
    htpasswd: Htpasswd | None,
    context: ssl.SSLContext | None,
    sock: socket.socket,
    line: LogLine,
    announce: Callable[[str], None],
) -> None:
    app = make_app(ServedStore(store), htpasswd)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_SECONDS,
        access_log_class=make_access_logger(line, sys.stderr),
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.SockSite(runner, sock, ssl_context=context)
        await site.start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if context is not None else "http"
        announce(
            f"listening on {scheme}://{shown}:{port} (namespace {store.namespace},"
            f" store {store.root})"
        )
        await stop.wait()
        announce("stopping: finishing the requests in flight")
    finally:
        await runner.cleanup()
