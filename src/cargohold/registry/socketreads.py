"""A large plain-HTTP body read straight from its connection's socket, in big reads.

httpx hands a body over as httpcore reads it: 64 KiB at a time, each read copied into h11's
buffer, out of it and into a new ``bytes`` before the caller sees it. For a registry on this
machine or the local network that is most of the CPU a pull spends (four copies of every byte
and a few dozen Python calls per 64 KiB). Once the headers are parsed and h11 has handed over
what it already held, the rest of a ``Content-Length`` body is plain bytes on the socket:
``recv_into`` reads them into one reused buffer, a chunk at a time, with one copy.

Only the public side of httpx and httpcore is used: the response's ``network_stream``
extension and its ``get_extra_info("socket")``, and the request's ``timeout`` extension. The
HTTP parser never learns that the body was read, so the connection is closed afterwards, not
reused (httpcore closes a connection whose response ended unfinished). That is why it is kept
to plain HTTP (no TLS: an insecure registry is on this machine or the local network, where a
new connection costs a fraction of a millisecond; TLS registries are far away and keep their
connections) and to bodies of at least a few MiB.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Final

import httpx

from ..errors import TransferDropped
from .speed import SpeedMeter

__all__ = ["DIRECT_READ_MIN", "direct_socket", "read_direct"]

#: Bodies at least this large are read from the socket; smaller ones keep their connection.
DIRECT_READ_MIN: Final = 4 << 20


def direct_socket(
    response: httpx.Response, length: int | None, minimum: int
) -> socket.socket | None:
    """The socket *response*'s body can be read from directly, or None: when the body has a
    ``Content-Length`` of at least *minimum* bytes (and no other framing), and the response
    came over HTTP/1 on a plain (not TLS) connection whose socket httpcore exposes."""
    if length is None or length < minimum or "transfer-encoding" in response.headers:
        return None
    if response.url.scheme != "http" or not response.http_version.startswith("HTTP/1"):
        return None
    stream = response.extensions.get("network_stream")
    if stream is None or stream.get_extra_info("ssl_object") is not None:
        return None  # a mock transport, or TLS to a proxy: its socket carries ciphertext
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None
    return sock


def read_direct(
    response: httpx.Response,
    sock: socket.socket,
    length: int,
    buffer: memoryview,
    meter: SpeedMeter | None,
) -> Iterator[memoryview]:
    """The *length* bytes of *response*'s body, in chunks of at most ``len(buffer)`` (each a
    view of *buffer*, valid until the next is asked for).

    The first chunk is what the HTTP parser already holds (h11 hands over all of its buffered
    body bytes at once; if it holds none, httpcore reads once); then the socket is read, never
    past the body's end. A connection that ends or fails early raises
    :class:`TransferDropped` once the bytes that did arrive were handed over; a read that
    times out raises :class:`TimeoutError` (the caller asks the meter whether it was too slow).
    """
    raw = response.iter_raw()
    first = next(raw, b"")
    if len(first) > length:
        first = first[:length]  # cannot happen with h11's Content-Length framing; never more
    if meter is not None and first:
        meter.advance(len(first))
    for start in range(0, len(first), len(buffer)):
        yield memoryview(first)[start : start + len(buffer)]
    received = len(first)
    sock.settimeout(_read_timeout(response))
    while received < length:
        filled, failure = _fill(sock, buffer[: min(len(buffer), length - received)], meter)
        received += filled
        if filled:
            yield buffer[:filled]
        if failure is not None:
            raise TransferDropped(received, failure)


def _fill(
    sock: socket.socket, view: memoryview, meter: SpeedMeter | None
) -> tuple[int, str | None]:
    """Fill *view* from *sock*: how many bytes arrived and, when the connection ended or
    failed first, why. A timeout and the floor's error are raised as they are, dropping what
    this call read (the caller resumes from the bytes it was handed, or gives up)."""
    filled = 0
    recv_into: Callable[[memoryview], int] = sock.recv_into
    while filled < len(view):
        try:
            n = recv_into(view[filled:])
        except TimeoutError:  # an OSError too, but not a broken connection
            raise
        except OSError as exc:
            return filled, exc.strerror or type(exc).__name__
        if not n:
            return filled, "the response ended early"
        filled += n
        if meter is not None:
            meter.advance(n)
    return filled, None


def _read_timeout(response: httpx.Response) -> float | None:
    """The client's timeout for one read, as httpx put it on the request."""
    timeout = response.request.extensions.get("timeout", {})
    value = timeout.get("read") if isinstance(timeout, dict) else None
    return float(value) if isinstance(value, int | float) else None
