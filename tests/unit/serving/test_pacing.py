"""Connections from this machine are not paced: a loopback listener hands its connections Reno
from the start, and a connection from a loopback address to a listener on every address is
switched when it gets a blob; connections from elsewhere keep the system's choice. Real
sockets on this machine's loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cargohold.serving.pacing import LOOPBACK_CONGESTION, is_loopback_peer, unpace_loopback
from cargohold.serving.server import bind

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_CONGESTION"), reason="TCP_CONGESTION is Linux's"
)


def congestion(sock: socket.socket) -> bytes:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")


def system_congestion() -> bytes:
    return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip().encode()


@contextmanager
def accepted(listener: socket.socket, client_host: str) -> Iterator[socket.socket]:
    """The server side of a connection from *client_host* to *listener*."""
    port = listener.getsockname()[1]
    with listener, socket.create_connection((client_host, port)):
        conn, _ = listener.accept()
        with conn:
            yield conn


def test_a_loopback_listener_gives_its_connections_reno_from_the_start() -> None:
    with accepted(bind("127.0.0.1", 0), "127.0.0.1") as conn:
        assert congestion(conn) == LOOPBACK_CONGESTION
        assert unpace_loopback(conn)  # already so: nothing to change


def test_an_ipv6_loopback_listener_too() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with accepted(bind("::1", 0), "::1") as conn:
        assert congestion(conn) == LOOPBACK_CONGESTION


def test_a_listener_on_every_address_keeps_the_system_choice_until_a_local_blob() -> None:
    listener = bind("0.0.0.0", 0)
    assert congestion(listener) == system_congestion()
    with accepted(listener, "127.0.0.1") as conn:
        assert congestion(conn) == system_congestion()
        assert unpace_loopback(conn)
        assert congestion(conn) == LOOPBACK_CONGESTION


def test_what_is_no_tcp_connection_is_left_alone(tmp_path: Path) -> None:
    assert not unpace_loopback(None)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        unix.bind(str(tmp_path / "sock"))
        assert not unpace_loopback(unix)
    with socket.socket() as unconnected:  # no peer (a client gone): nothing to switch
        assert not unpace_loopback(unconnected)


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("192.0.2.7", 5000), False),
        (("::ffff:192.0.2.7", 5000, 0, 0), False),
        (("2001:db8::1", 5000, 0, 0), False),
        (("fe80::1%eth0", 5000, 0, 2), False),
        ("/run/cargohold.sock", False),
        ((), False),
        (("not an address", 1), False),
    ],
)
def test_is_loopback_peer(peer: object, local: bool) -> None:
    assert is_loopback_peer(peer) is local
