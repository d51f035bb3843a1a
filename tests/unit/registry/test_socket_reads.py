"""Large plain-HTTP blob bodies read straight from the socket: the bytes that came with the
headers kept in order, the connection closed afterwards (small bodies keep theirs), and a
body that stalls resumed with ``Range`` after the read timeout, whichever way it is read.

(The other checks of a blob download, run both ways, are in test_registry.py.)"""

from __future__ import annotations

import io
import random
import socket
import struct
from collections.abc import Iterator

import pytest

from cargohold.oci.digests import Digest
from cargohold.registry.client import RegistryClient
from cargohold.registry.http import RetryPolicy
from fakeregistry import Exchange, FakeRegistry, FakeServer, serve

REPO = "team/app"
BLOB = random.Random(5).randbytes(300_000)
DIGEST = Digest.of_bytes(BLOB)
#: ``direct_read_min`` for each way a blob's body can be read.
READS = {"through-httpx": 1 << 62, "from-the-socket": 0}


@pytest.fixture
def registry() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add_blob(REPO, BLOB)
    return registry


@pytest.fixture
def server(registry: FakeRegistry) -> Iterator[FakeServer]:
    with serve(registry) as server:
        yield server


def client_for(server: FakeServer, direct_read_min: int, **kwargs: object) -> RegistryClient:
    return RegistryClient(
        server.netloc, plain_http=True, use_docker_config=False, trust_env=False,
        direct_read_min=direct_read_min, chunk_size=64 << 10, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def fetch(client: RegistryClient) -> bytes:
    out = io.BytesIO()
    client.fetch_blob(REPO, DIGEST, len(BLOB), out)
    return out.getvalue()


def blob_ports(server: FakeServer) -> list[int]:
    return [r.client_port for r in server.requests_for("GET", str(DIGEST))]


def test_a_body_read_from_the_socket_closes_its_connection(server: FakeServer) -> None:
    """At the threshold the body is read from the socket, and the next request needs a new
    connection; below it the connection is kept, as for every other request."""
    with client_for(server, direct_read_min=len(BLOB) + 1) as kept:
        assert fetch(kept) == BLOB
        assert fetch(kept) == BLOB
    with client_for(server, direct_read_min=len(BLOB)) as direct:
        assert fetch(direct) == BLOB
        assert fetch(direct) == BLOB
    first, second, third, fourth = blob_ports(server)
    assert first == second
    assert third != fourth


@pytest.mark.parametrize("with_head", [0, 1, 1000, 65_000, 70_000, len(BLOB)])
def test_body_bytes_sent_with_the_headers_come_first(
    registry: FakeRegistry, server: FakeServer, with_head: int
) -> None:
    """The bytes of the body the HTTP parser read along with the headers (none, a few, more
    than one read of it, all) are handed over before those read from the socket."""

    def one_write(ex: Exchange) -> bool:
        if ex.method != "GET" or not ex.path.endswith(str(DIGEST)):
            return False
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BLOB)}\r\n\r\n".encode()
        ex.handler.close_connection = True
        ex.handler.wfile.write(head + BLOB[:with_head])
        ex.handler.wfile.write(BLOB[with_head:])
        return True

    registry.interceptors.append(one_write)
    with client_for(server, direct_read_min=0) as client:
        assert fetch(client) == BLOB


@pytest.mark.parametrize("reads", sorted(READS))
def test_a_stalled_body_is_resumed_after_the_read_timeout(
    registry: FakeRegistry, server: FakeServer, reads: str
) -> None:
    """A registry that stops sending (without closing) is given up on after the client's
    read timeout, and the download resumes with ``Range`` where the bytes stopped."""
    stalled: list[int] = []

    def stall_once(ex: Exchange) -> bool:
        if ex.method != "GET" or not ex.path.endswith(str(DIGEST)) or stalled:
            return False
        stalled.append(200_000)
        ex.send_head(200, {"Content-Length": str(len(BLOB))})
        ex.handler.wfile.write(BLOB[:200_000])
        ex.handler.rfile.read()  # until the client hangs up
        ex.handler.close_connection = True
        return True

    registry.interceptors.append(stall_once)
    retry = RetryPolicy(attempts=2, sleep=lambda _: None)
    with client_for(server, READS[reads], timeout=0.3, retry=retry) as client:
        assert fetch(client) == BLOB
    ranges = [r.headers.get("range") for r in server.requests_for("GET", str(DIGEST))]
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(str(ranges[1]).removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 200_000  # what was handed over is kept (a partial chunk is not)


@pytest.mark.parametrize("reads", sorted(READS))
def test_a_reset_connection_is_resumed(
    registry: FakeRegistry, server: FakeServer, reads: str
) -> None:
    """A connection reset in the middle of the body (not an orderly end) is resumed too."""
    reset: list[int] = []

    def reset_once(ex: Exchange) -> bool:
        if ex.method != "GET" or not ex.path.endswith(str(DIGEST)) or reset:
            return False
        reset.append(150_000)
        ex.send_head(200, {"Content-Length": str(len(BLOB))})
        ex.handler.wfile.write(BLOB[:150_000])
        ex.handler.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )  # closing now sends a reset
        ex.close_connection()
        return True

    registry.interceptors.append(reset_once)
    retry = RetryPolicy(attempts=2, sleep=lambda _: None)
    with client_for(server, READS[reads], retry=retry) as client:
        assert fetch(client) == BLOB
    assert len(server.requests_for("GET", str(DIGEST))) == 2
