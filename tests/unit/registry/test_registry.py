"""The registry client against a fake registry: verification, authentication, where credentials
go (and where they never go), resumed downloads, retries, bounded reads, and uploads."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cargohold.errors import CargoholdError, ContentError, NotFoundError
from cargohold.oci.digests import Digest
from cargohold.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from cargohold.registry.client import (
    AccessDeniedError,
    AuthenticationError,
    Credentials,
    CredentialsError,
    ForeignRealmError,
    RegistryClient,
    RegistryConnectionError,
    RegistryContentError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTooSlowError,
    RetryPolicy,
    load_docker_credentials,
)
from fakeregistry import (
    Exchange,
    FakeRegistry,
    FakeServer,
    Storage,
    TokenService,
    serve,
    serve_blob,
    sha256,
)
from tlscerts import self_signed_certificate

REPO = "team/app"
PASSWORD = "hunter2-very-secret"
ALICE = Credentials("alice", PASSWORD)
USERS = {"alice": PASSWORD}
BLOB = bytes(range(256)) * 700  # 179,200 bytes
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest":
                   str(sha256(b"{}")), "size": 2},
        "layers": [],
    }
).encode()  # fmt: skip


class Sleeps:
    """A RetryPolicy sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def registry() -> FakeRegistry:
    """A fake registry's state: repositories, blobs, and what requests it saw."""
    return FakeRegistry()


@pytest.fixture
def server(registry: FakeRegistry) -> Iterator[FakeServer]:
    """The fake registry served on 127.0.0.1 for the length of a test."""
    with serve(registry) as server:
        yield server


def client_for(
    server: FakeServer, sleeps: Sleeps | None = None, **kwargs: object
) -> RegistryClient:
    kwargs.setdefault("use_docker_config", False)
    kwargs.setdefault("retry", RetryPolicy(attempts=3, backoff=0.25, sleep=sleeps or Sleeps()))
    kwargs.setdefault("chunk_size", 16 << 10)
    kwargs.setdefault("trust_env", False)
    return RegistryClient(server.netloc, plain_http=True, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def client(server: FakeServer, sleeps: Sleeps) -> Iterator[RegistryClient]:
    with client_for(server, sleeps) as client:
        yield client


#: ``direct_read_min`` for each way a blob's body can be read: through httpx, or (over plain
#: HTTP) from the socket once the headers are parsed; the blob tests run both.
READS = {"through-httpx": 1 << 62, "from-the-socket": 0}


@pytest.fixture(params=sorted(READS))
def reads(request: pytest.FixtureRequest) -> int:
    return READS[request.param]


@pytest.fixture
def blob_client(server: FakeServer, sleeps: Sleeps, reads: int) -> Iterator[RegistryClient]:
    with client_for(server, sleeps, direct_read_min=reads) as client:
        yield client


def fetch(client: RegistryClient, digest: Digest, size: int, repo: str = REPO) -> bytes:
    out = io.BytesIO()
    client.fetch_blob(repo, digest, size, out)
    return out.getvalue()


# -- pulling -----------------------------------------------------------------------------------


def test_pull_manifest_and_blob(registry: FakeRegistry, blob_client: RegistryClient) -> None:
    manifest_digest = registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    blob_digest = registry.add_blob(REPO, BLOB)

    by_tag = blob_client.get_manifest(REPO, "v1")
    assert by_tag == (MANIFEST, OCI_MANIFEST, manifest_digest)
    data, media_type, digest = blob_client.get_manifest(REPO, manifest_digest)
    assert (data, media_type, digest) == (MANIFEST, OCI_MANIFEST, manifest_digest)
    assert blob_client.head_manifest(REPO, "v1") == (OCI_MANIFEST, manifest_digest, len(MANIFEST))
    assert blob_client.head_manifest(REPO, "v2") is None

    chunks: list[bytes] = []
    received = blob_client.fetch_blob(
        REPO, blob_digest, len(BLOB), lambda view: chunks.append(bytes(view))
    )
    assert b"".join(chunks) == BLOB and received == len(BLOB)
    assert max(map(len, chunks)) <= 16 << 10  # the client's chunk size bounds its memory
    assert fetch(blob_client, blob_digest, len(BLOB)) == BLOB
    assert blob_client.blob_exists(REPO, blob_digest) == len(BLOB)
    assert blob_client.blob_exists(REPO, sha256(b"absent")) is None


def test_accept_header_and_generic_content_type(
    registry: FakeRegistry, server: FakeServer, client: RegistryClient
) -> None:
    registry.add_manifest(REPO, "v1", MANIFEST, "application/json")
    _, media_type, _ = client.get_manifest(REPO, "v1", accept=[OCI_MANIFEST, DOCKER_MANIFEST])
    assert media_type == OCI_MANIFEST  # the document's own mediaType
    accept = server.requests_for("GET", "/manifests/")[-1].headers["accept"]
    assert accept == f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"


def test_missing_manifest_and_blob_are_not_found(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    with pytest.raises(RegistryNotFoundError) as caught:
        client.get_manifest(REPO, "nope")
    assert isinstance(caught.value, NotFoundError)
    message = str(caught.value)
    assert "team/app:nope" in message and "MANIFEST_UNKNOWN" in message and "404" in message
    assert caught.value.code == "MANIFEST_UNKNOWN" and caught.value.status_code == 404
    missing = sha256(b"missing")
    with pytest.raises(RegistryNotFoundError, match="BLOB_UNKNOWN") as caught_blob:
        fetch(client, missing, 7)
    assert str(missing) in str(caught_blob.value)
    assert caught_blob.value.digest == missing


def test_wrong_blob_served_is_refused(registry: FakeRegistry, blob_client: RegistryClient) -> None:
    digest = sha256(BLOB)
    wrong = bytearray(BLOB)
    wrong[1000] ^= 1
    registry.blobs[REPO] = {str(digest): bytes(wrong)}
    with pytest.raises(RegistryContentError) as caught:
        fetch(blob_client, digest, len(BLOB))
    assert isinstance(caught.value, ContentError)
    assert str(digest) in str(caught.value) and "does not match its digest" in str(caught.value)


def test_wrong_manifest_served_for_a_digest_is_refused(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    digest = sha256(MANIFEST)
    other = MANIFEST.replace(b"[]", b"[ ]")
    registry.manifests[REPO] = {str(digest): (other, OCI_MANIFEST)}
    with pytest.raises(RegistryContentError, match=f"does not match its digest {digest}"):
        client.get_manifest(REPO, digest)


def test_docker_content_digest_mismatch_is_refused(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    lie = sha256(b"something else")

    def lying(ex: Exchange) -> bool:
        if ex.path.endswith("/manifests/v1"):
            ex.respond(
                200, MANIFEST, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": str(lie)}
            )
            return True
        return False

    registry.interceptors.append(lying)
    with pytest.raises(RegistryContentError, match=f"Docker-Content-Digest {lie}"):
        client.get_manifest(REPO, "v1")


def test_manifest_over_the_limit_is_refused(registry: FakeRegistry, client: RegistryClient) -> None:
    registry.add_manifest(REPO, "big", b" " * 5000 + MANIFEST, OCI_MANIFEST)
    with pytest.raises(RegistryContentError, match="exceeds 4096"):
        client.get_manifest(REPO, "big", limit=4096)


def test_blob_larger_than_declared_is_refused(
    registry: FakeRegistry, blob_client: RegistryClient
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    sink = io.BytesIO()
    with pytest.raises(RegistryContentError, match="larger than its declared size 1000"):
        blob_client.fetch_blob(REPO, digest, 1000, sink)
    assert sink.getvalue() == b""  # refused from Content-Length, before any byte was taken


def test_endless_blob_without_length_is_cut_at_the_declared_size(
    registry: FakeRegistry, blob_client: RegistryClient
) -> None:
    digest = sha256(BLOB)
    stopped = threading.Event()

    def endless(ex: Exchange) -> bool:
        if ex.method != "GET" or str(digest) not in ex.path:
            return False
        ex.send_head(200, {"Content-Type": "application/octet-stream", "Connection": "close"})
        ex.close_connection()
        try:
            for _ in range(100_000):
                ex.handler.wfile.write(BLOB)
        except OSError:
            pass
        stopped.set()
        return True

    registry.interceptors.append(endless)
    taken = bytearray()
    with pytest.raises(RegistryContentError, match="larger than its declared size"):
        blob_client.fetch_blob(REPO, digest, len(BLOB), taken.extend)
    assert len(taken) <= len(BLOB)
    assert stopped.wait(10)


def test_blob_smaller_than_declared_is_refused(
    registry: FakeRegistry, blob_client: RegistryClient
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    with pytest.raises(RegistryContentError, match="smaller than its declared size"):
        fetch(blob_client, digest, len(BLOB) + 1)


def test_empty_blob(registry: FakeRegistry, blob_client: RegistryClient) -> None:
    digest = registry.add_blob(REPO, b"")
    assert fetch(blob_client, digest, 0) == b""


# -- resuming and retrying ---------------------------------------------------------------------


def drop_after(digest: Digest, cut: int, times: int = 1) -> tuple[list[int], object]:
    """An interceptor that breaks the first *times* downloads of *digest* after *cut* bytes."""
    broken: list[int] = []

    def intercept(ex: Exchange) -> bool:
        if ex.method != "GET" or not ex.path.endswith(str(digest)) or len(broken) >= times:
            return False
        broken.append(cut)
        data = BLOB
        start = 0
        if "range" in ex.headers:
            start = int(ex.headers["range"].removeprefix("bytes=").rstrip("-"))
            ex.send_head(
                206,
                {
                    "Content-Length": str(len(data) - start),
                    "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                },
            )
        else:
            ex.send_head(200, {"Content-Length": str(len(data))})
        ex.handler.wfile.write(data[start : start + cut])
        ex.close_connection()
        return True

    return broken, intercept


def test_dropped_connection_resumes_with_range(
    registry: FakeRegistry, server: FakeServer, blob_client: RegistryClient, sleeps: Sleeps
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    _, intercept = drop_after(digest, 50_000)
    registry.interceptors.append(intercept)  # type: ignore[arg-type]
    assert fetch(blob_client, digest, len(BLOB)) == BLOB
    gets = server.requests_for("GET", str(digest))
    # every byte received is kept: the download resumes exactly where it broke off
    assert [r.headers.get("range") for r in gets] == [None, "bytes=50000-"]
    assert sleeps.delays == [0.25]


def test_resume_survives_a_503_and_a_second_drop(
    registry: FakeRegistry, server: FakeServer, sleeps: Sleeps, reads: int
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    _, intercept = drop_after(digest, 40_000, times=2)
    unavailable: list[str] = []

    def once_503(ex: Exchange) -> bool:
        if "range" in ex.headers and not unavailable:
            unavailable.append(ex.headers["range"])
            ex.error(503, "UNAVAILABLE", "try later", {"Retry-After": "1"})
            return True
        return False

    registry.interceptors += [once_503, intercept]  # type: ignore[list-item]
    patience = RetryPolicy(attempts=4, sleep=sleeps)
    with client_for(server, sleeps, retry=patience, direct_read_min=reads) as patient:
        assert fetch(patient, digest, len(BLOB)) == BLOB
    ranges = [r.headers.get("range") for r in server.requests_for("GET", str(digest))]
    assert ranges == [None, "bytes=40000-", "bytes=40000-", "bytes=80000-"]
    assert sleeps.delays[1] == 1.0  # Retry-After


def test_resume_when_the_registry_ignores_range(
    registry: FakeRegistry, server: FakeServer, blob_client: RegistryClient
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    _, intercept = drop_after(digest, 20_000)

    def no_range(ex: Exchange) -> bool:
        if "range" in ex.headers:
            ex.respond(200, BLOB, {"Content-Type": "application/octet-stream"})
            return True
        return False

    registry.interceptors += [intercept, no_range]  # type: ignore[list-item]
    assert fetch(blob_client, digest, len(BLOB)) == BLOB


def test_resume_from_a_partial_file(
    registry: FakeRegistry, server: FakeServer, blob_client: RegistryClient, tmp_path: Path
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    partial = tmp_path / "partial"
    partial.write_bytes(BLOB[:70_000] + b"garbage after the resume point")
    with partial.open("r+b") as f:
        received = blob_client.fetch_blob(REPO, digest, len(BLOB), f, resume_from=70_000)
    assert received == len(BLOB) - 70_000
    assert partial.read_bytes() == BLOB
    assert server.requests_for("GET", str(digest))[-1].headers["range"] == "bytes=70000-"

    hasher = hashlib.sha256(BLOB[:1000])
    tail = bytearray()
    blob_client.fetch_blob(REPO, digest, len(BLOB), tail.extend, resume_from=1000, hasher=hasher)
    assert bytes(tail) == BLOB[1000:]
    with pytest.raises(ValueError, match="file sink"):
        blob_client.fetch_blob(REPO, digest, len(BLOB), tail.extend, resume_from=1000)


def test_persistent_5xx_fails_cleanly_after_the_retries(
    registry: FakeRegistry, server: FakeServer, client: RegistryClient, sleeps: Sleeps
) -> None:
    digest = registry.add_blob(REPO, BLOB)

    def failing(ex: Exchange) -> bool:
        ex.error(502, "BAD_GATEWAY", "upstream is down")
        return True

    registry.interceptors.append(failing)
    with pytest.raises(RegistryServerError) as caught:
        fetch(client, digest, len(BLOB))
    message = str(caught.value)
    assert str(digest) in message and "BAD_GATEWAY" in message and "502" in message
    assert "\n" not in message
    assert len(server.requests_for("GET", str(digest))) == 3
    assert sleeps.delays == [0.25, 0.5]


def test_connection_refused_is_a_connection_error(sleeps: Sleeps) -> None:
    with serve(FakeRegistry()) as gone:
        netloc = gone.netloc
    client = RegistryClient(
        netloc, plain_http=True, trust_env=False, use_docker_config=False,
        retry=RetryPolicy(attempts=2, sleep=sleeps),
    )  # fmt: skip
    with client, pytest.raises(RegistryConnectionError, match=f"{netloc}/team/app:v1: manifest"):
        client.get_manifest(REPO, "v1")
    assert len(sleeps.delays) == 1


def test_huge_error_body_is_not_read_whole(registry: FakeRegistry, client: RegistryClient) -> None:
    stopped = threading.Event()

    def endless_error(ex: Exchange) -> bool:
        ex.send_head(400, {"Content-Type": "application/json", "Connection": "close"})
        ex.close_connection()
        try:
            ex.handler.wfile.write(b'{"errors": [{"code": "HUGE", "message": "')
            for _ in range(1_000_000):
                ex.handler.wfile.write(b"x" * 65536)
        except OSError:
            pass
        stopped.set()
        return True

    registry.interceptors.append(endless_error)
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"manifest refused \(HTTP 400\)"):
        client.get_manifest(REPO, "v1")
    assert time.monotonic() - start < 5
    assert stopped.wait(10)  # the client hung up; the server did not write 64 GiB


# -- the floor on progress ---------------------------------------------------------------------

#: Small enough that a trickle of 64 bytes every 20 ms (the fake's default) delivers it in a
#: second or two, so that a client without a floor on progress gets it in the end.
SMALL = bytes(range(256)) * 16
#: A floor no trickle meets and every transfer on the loopback does.
FLOOR = {"speed_limit": 2_000_000, "speed_time": 0.2}


def test_trickling_blob_download_is_abandoned(
    registry: FakeRegistry,
    server: FakeServer,
    sleeps: Sleeps,
    reads: int,
) -> None:
    digest = registry.add_blob(REPO, SMALL)

    def trickling(ex: Exchange) -> bool:
        if ex.method == "GET" and ex.path.endswith(str(digest)):
            ex.trickle(SMALL, {"Docker-Content-Digest": str(digest)})
            return True
        return False

    registry.interceptors.append(trickling)
    with client_for(server, sleeps, **FLOOR, direct_read_min=reads) as client:
        with pytest.raises(RegistryTooSlowError) as caught:
            fetch(client, digest, len(SMALL))
        assert caught.value.digest == digest and caught.value.registry == server.netloc
        message = str(caught.value)
        assert f"{server.netloc}/{REPO}@{digest}: blob slower than 2000000 bytes/s for 0.2 s (" in (
            message
        )
        assert "abandoned" in message and "\n" not in message
        # abandoned at once: a trickling registry would only trickle again
        assert len(server.requests_for("GET", str(digest))) == 1 and sleeps.delays == []
        registry.interceptors.clear()
        assert fetch(client, digest, len(SMALL)) == SMALL  # a registry at speed meets the floor


def test_trickling_manifest_is_abandoned(
    registry: FakeRegistry, server: FakeServer, sleeps: Sleeps
) -> None:
    document = MANIFEST + b" " * (len(SMALL) - len(MANIFEST))
    registry.add_manifest(REPO, "v1", document, OCI_MANIFEST)

    def trickling(ex: Exchange) -> bool:
        if ex.method == "GET" and "/manifests/" in ex.path:
            ex.trickle(document, {"Content-Type": OCI_MANIFEST})
            return True
        return False

    registry.interceptors.append(trickling)
    with (
        client_for(server, sleeps, **FLOOR) as client,
        pytest.raises(RegistryTooSlowError, match=r":v1: manifest slower than 2000000 bytes/s"),
    ):
        client.get_manifest(REPO, "v1")
    assert sleeps.delays == []


def test_speed_limit_zero_turns_the_floor_off(
    registry: FakeRegistry,
    server: FakeServer,
    sleeps: Sleeps,
    reads: int,
) -> None:
    digest = registry.add_blob(REPO, SMALL[:640])  # ten steps of the trickle, 0.2 s

    def trickling(ex: Exchange) -> bool:
        if ex.method == "GET" and ex.path.endswith(str(digest)):
            ex.trickle(SMALL[:640])
            return True
        return False

    registry.interceptors.append(trickling)
    with client_for(
        server, sleeps, speed_limit=0, speed_time=0.05, direct_read_min=reads
    ) as client:
        assert fetch(client, digest, 640) == SMALL[:640]
    with (
        client_for(
            server, sleeps, speed_limit=1_000_000, speed_time=0.05, direct_read_min=reads
        ) as client,
        pytest.raises(RegistryTooSlowError),
    ):
        fetch(client, digest, 640)
    with pytest.raises(ValueError, match="speed limit"):
        RegistryClient("localhost", speed_limit=-1)
    with pytest.raises(ValueError, match="speed time"):
        RegistryClient("localhost", speed_time=0)


@pytest.mark.parametrize("monolithic_limit", [64 << 20, 0], ids=["put", "patch"])
def test_upload_to_a_registry_reading_slowly_is_abandoned(
    registry: FakeRegistry, server: FakeServer, sleeps: Sleeps, monolithic_limit: int
) -> None:
    data = random.Random(5).randbytes(8 << 20)
    digest = sha256(data)

    def slow_reader(ex: Exchange) -> bool:
        if ex.method in ("PUT", "PATCH") and int(ex.headers.get("content-length", "0")):
            return ex.read_body_slowly() is None  # else, the body read, the registry answers
        return False

    registry.interceptors.append(slow_reader)
    # Small socket buffers, so that what the kernel holds does not hide the registry's pace
    # (the server's receive buffer is made small by read_body_slowly).
    options = [(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)]
    with (
        client_for(
            server, sleeps, monolithic_limit=monolithic_limit, upload_chunk_size=4 << 20,
            transport=httpx.HTTPTransport(socket_options=options), **FLOOR,
        ) as client,
        pytest.raises(RegistryTooSlowError) as caught,
    ):  # fmt: skip
        client.upload_blob(REPO, digest, len(data), lambda: io.BytesIO(data))
    message = str(caught.value)
    assert f"{server.netloc}/{REPO}@{digest}: blob upload slower than 2000000 bytes/s" in message
    assert "bytes sent" in message and "\n" not in message
    method = "PUT" if monolithic_limit else "PATCH"
    assert len(server.requests_for(method, "/blobs/uploads/")) == 1  # one body, not retried
    assert sleeps.delays == []
    assert registry.cancelled_uploads and registry.blob(str(digest)) is None


# -- redirects ---------------------------------------------------------------------------------


def test_blob_redirect_to_another_host_gets_no_authorization(
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
    reads: int,
) -> None:
    caplog.set_level(logging.DEBUG, "cargohold.registry.client")
    registry = FakeRegistry(auth="basic", users=USERS)
    digest = registry.add_blob(REPO, BLOB)
    with serve(registry, "127.0.0.1") as reg, serve(Storage(registry), "localhost") as storage:
        registry.redirect_blobs_to = storage.url
        with client_for(reg, sleeps, credentials=ALICE, direct_read_min=reads) as client:
            assert fetch(client, digest, len(BLOB)) == BLOB
    registry_gets = reg.requests_for("GET", str(digest))
    assert registry_gets[-1].headers["authorization"].startswith("Basic ")
    storage_gets = storage.requests_for("GET", "/storage/")
    assert len(storage_gets) == 1
    assert "authorization" not in storage_gets[0].headers
    assert storage_gets[0].query["X-Signature"] == ["s3cr3t"]  # the query survives the redirect
    ours = [r.getMessage() for r in caplog.records if r.name == "cargohold.registry.client"]
    assert any("/storage/" in line for line in ours)
    assert not any("s3cr3t" in line for line in ours)  # signed URLs are logged without query


def test_redirect_to_the_same_host_on_another_port_is_another_origin(
    sleeps: Sleeps, reads: int
) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    digest = registry.add_blob(REPO, BLOB)
    with serve(registry) as reg, serve(Storage(registry)) as storage:
        registry.redirect_blobs_to = storage.url
        with client_for(reg, sleeps, credentials=ALICE, direct_read_min=reads) as client:
            assert fetch(client, digest, len(BLOB)) == BLOB
    assert "authorization" not in storage.requests_for("GET", "/storage/")[0].headers


def test_redirect_from_plain_http_to_https_is_another_origin(sleeps: Sleeps) -> None:
    """httpx keeps Authorization on an http:80 → https:443 redirect of the same host; the
    registry's origin is http://localhost, so its credentials do not follow. Ports 80 and 443
    cannot be served by an unprivileged test, hence a transport that answers in-process."""
    digest = sha256(BLOB)
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url.copy_with(query=None)), request.headers.get("authorization")))
        # bodies are iterators: streamed as from a socket, not read ahead by httpx
        if request.url.scheme == "https":
            return httpx.Response(200, content=iter([BLOB]))
        if "authorization" not in request.headers:
            challenge = {"WWW-Authenticate": 'Basic realm="r"'}
            return httpx.Response(401, headers=challenge, content=iter([b""]))
        location = {"Location": f"https://localhost/storage/{digest}"}
        return httpx.Response(307, headers=location, content=iter([b""]))

    with RegistryClient(
        "localhost", plain_http=True, credentials=ALICE, trust_env=False,
        retry=RetryPolicy(sleep=sleeps), transport=httpx.MockTransport(answer),
    ) as client:  # fmt: skip
        assert fetch(client, digest, len(BLOB)) == BLOB
    assert seen[-2][1] == ALICE.basic_authorization()  # the registry's own origin
    assert seen[-1] == (f"https://localhost/storage/{digest}", None)


@pytest.mark.parametrize(
    ("location", "same_origin"),
    [
        ("http://localhost:443/up", False),  # https→http on the same host:port
        ("http://localhost/up", False),
        ("https://localhost:8443/up", False),
        ("https://storage.example/up", False),
        ("https://LOCALHOST:443/up", True),
        ("/up", True),
    ],
)
def test_upload_location_gets_credentials_only_on_the_registry_origin(
    sleeps: Sleeps, location: str, same_origin: bool
) -> None:
    """An upload goes on at the Location the registry names, anywhere; its Authorization only
    where the registry's origin is (the URL's scheme, host and port), never in clear text."""
    data = b"layer"
    seen: list[tuple[str, str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        url = request.url
        registry = (url.scheme, url.host.lower(), url.port or 443) == ("https", "localhost", 443)
        if registry and "authorization" not in request.headers:
            challenge = {"WWW-Authenticate": 'Basic realm="r"'}
            return httpx.Response(401, headers=challenge, content=iter([b""]))
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": location}, content=iter([b""]))
        if request.method == "HEAD":
            return httpx.Response(404, content=iter([b""]))
        return httpx.Response(201, headers={"Docker-Content-Digest": str(sha256(data))},
                              content=iter([b""]))  # fmt: skip

    with RegistryClient(
        "localhost", credentials=ALICE, trust_env=False, retry=RetryPolicy(sleep=sleeps),
        transport=httpx.MockTransport(answer),
    ) as client:  # fmt: skip
        assert client.upload_blob(REPO, sha256(data), len(data), lambda: io.BytesIO(data)) is False
    [put] = [s for s in seen if s[0] == "PUT"]
    assert put[1] == "/up"
    assert put[2] == (ALICE.basic_authorization() if same_origin else None)


def test_resumed_download_after_redirect_keeps_range_and_drops_auth(
    sleeps: Sleeps, reads: int
) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    digest = registry.add_blob(REPO, BLOB)
    storage_app = Storage(registry)
    _, intercept = drop_after(digest, 30_000)

    def flaky_storage(ex: Exchange) -> bool:
        return bool(intercept(ex))  # type: ignore[operator]

    def storage_handler(ex: Exchange) -> None:
        if not flaky_storage(ex):
            storage_app(ex)

    with serve(registry) as reg, serve(storage_handler, "localhost") as storage:
        registry.redirect_blobs_to = storage.url
        with client_for(reg, sleeps, credentials=ALICE, direct_read_min=reads) as client:
            assert fetch(client, digest, len(BLOB)) == BLOB
    gets = storage.requests_for("GET", "/storage/")
    assert [g.headers.get("range") for g in gets] == [None, "bytes=30000-"]
    assert all("authorization" not in g.headers for g in gets)


# -- authentication ----------------------------------------------------------------------------


def test_basic_auth(sleeps: Sleeps) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    digest = registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg:
        with client_for(reg, sleeps, credentials=ALICE) as client:
            assert client.get_manifest(REPO, "v1").digest == digest
            assert client.get_manifest(REPO, digest).digest == digest
        gets = reg.requests_for("GET", "/manifests/")
        assert "authorization" not in gets[0].headers  # the first learns the scheme…
        assert all(g.headers["authorization"] == ALICE.basic_authorization() for g in gets[1:])
        assert len(gets) == 3  # …then every request carries the credentials at once

        wrong = Credentials("alice", "not-the-password")
        with (
            client_for(reg, sleeps, credentials=wrong) as client,
            pytest.raises(AuthenticationError) as caught,
        ):
            client.get_manifest(REPO, "v1")
        assert "authentication failed" in str(caught.value)
        assert "not-the-password" not in str(caught.value)

        with (
            client_for(reg, sleeps) as anonymous,
            pytest.raises(AuthenticationError, match=f"no credentials for {reg.netloc}"),
        ):
            anonymous.get_manifest(REPO, "v1")


def bearer_registry(tokens: TokenService) -> FakeRegistry:
    return FakeRegistry(auth="bearer", tokens=tokens)


def test_bearer_flow_with_scopes_and_cached_tokens(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    digest = registry.add_blob(REPO, BLOB)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps, credentials=ALICE) as client:
            client.get_manifest(REPO, "v1")
            assert fetch(client, digest, len(BLOB)) == BLOB
            assert client.blob_exists(REPO, digest) == len(BLOB)
            client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
        token_requests = reg.requests_for("GET", "/token")
        assert [r.query["scope"] for r in token_requests] == [
            ["repository:team/app:pull"],
            ["repository:team/app:pull,push"],
        ]
        assert all(r.query["service"] == ["fake-registry"] for r in token_requests)
        assert all(
            r.headers["authorization"] == ALICE.basic_authorization() for r in token_requests
        )
        registry_requests = [r for r in reg.requests if r.path.startswith("/v2/")]
        assert sum("authorization" not in r.headers for r in registry_requests) == 1
        bearer = [r.headers.get("authorization", "") for r in registry_requests[1:]]
        assert all(value.startswith("Bearer tok-") for value in bearer)


def test_tokens_are_fetched_once_by_threads(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    digests = [registry.add_blob(REPO, BLOB + bytes([i])) for i in range(8)]
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps, credentials=ALICE) as client:
            client.blob_exists(REPO, digests[0])  # learn the challenge
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda d: fetch(client, d, len(BLOB) + 1), digests))
        assert results == [BLOB + bytes([i]) for i in range(8)]
        assert len(reg.requests_for("GET", "/token")) == 1


def test_refused_token_refreshes_once(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps, credentials=ALICE) as client:
            client.get_manifest(REPO, "v1")
            tokens.issued.clear()  # the registry forgets (a token revoked or expired early)
            client.get_manifest(REPO, "v1")
        assert len(reg.requests_for("GET", "/token")) == 2


def test_bearer_without_credentials_is_anonymous(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=True)
    registry = bearer_registry(tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps) as client:
            client.get_manifest(REPO, "v1")
            with pytest.raises(AuthenticationError, match="no credentials"):
                client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
        assert all("authorization" not in r.headers for r in reg.requests_for("GET", "/token"))


def test_token_realm_on_another_host_gets_no_credentials(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=True)
    registry = bearer_registry(tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry, "127.0.0.1") as reg, serve(tokens, "localhost") as auth:
        registry.realm = f"{auth.url}/token"
        # Anonymous pull works: the token request is made, without the credentials.
        with client_for(reg, sleeps, credentials=ALICE) as client:
            client.get_manifest(REPO, "v1")
            # Pushing needs the credentials, which stay home: a clear error.
            with pytest.raises(ForeignRealmError) as caught:
                client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
        message = str(caught.value)
        assert f"token service {auth.netloc} is on another host" in message
        assert "not sent" in message
        assert PASSWORD not in message
        assert all("authorization" not in r.headers for r in auth.requests)

        tokens.anonymous = False
        with (
            client_for(reg, sleeps, credentials=ALICE) as client,
            pytest.raises(ForeignRealmError, match="anonymous access was refused"),
        ):
            client.get_manifest(REPO, "v1")
        assert all("authorization" not in r.headers for r in auth.requests)

        # The caller may allow it.
        with client_for(reg, sleeps, credentials=ALICE, allow_foreign_realm=True) as client:
            client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
        assert auth.requests[-1].headers["authorization"] == ALICE.basic_authorization()


def test_token_realm_on_another_port_of_the_same_host_gets_no_credentials(
    sleeps: Sleeps,
) -> None:
    """Another port is another server (another origin): the registry's credentials stay home
    unless the caller consents, exactly as for another host."""
    tokens = TokenService(USERS, anonymous=True)
    registry = bearer_registry(tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry, "127.0.0.1") as reg, serve(tokens, "127.0.0.1") as auth:
        registry.realm = f"{auth.url}/token"
        with client_for(reg, sleeps, credentials=ALICE) as client:
            client.get_manifest(REPO, "v1")
            with pytest.raises(ForeignRealmError) as caught:
                client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
        assert f"token service {auth.netloc} is on another origin" in str(caught.value)
        assert auth.requests and all("authorization" not in r.headers for r in auth.requests)

        with client_for(reg, sleeps, credentials=ALICE, allow_foreign_realm=True) as client:
            client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
        assert auth.requests[-1].headers["authorization"] == ALICE.basic_authorization()


def test_registry_cookies_do_not_reach_another_origin(sleeps: Sleeps) -> None:
    """Cookies are scoped by host, not by port: a cookie the registry sets (a session, a
    load balancer's ticket) would follow to a token service or storage on another port of the
    same host. The client keeps no cookies, as docker's does not."""
    tokens = TokenService(USERS, anonymous=True)
    registry = bearer_registry(tokens)
    digest = registry.add_blob(REPO, BLOB)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)

    def set_cookie(ex: Exchange) -> bool:
        if ex.path.startswith("/v2/") and "authorization" not in ex.headers:
            challenge = f'Bearer realm="{registry.realm}",service="fake-registry"'
            headers = {"WWW-Authenticate": challenge, "Set-Cookie": "session=s3cr3t; Path=/"}
            ex.error(401, "UNAUTHORIZED", "log in", headers)
            return True
        return False

    registry.interceptors.append(set_cookie)
    storage = Storage(registry)
    with serve(registry) as reg, serve(tokens) as auth, serve(storage) as store:
        registry.realm = f"{auth.url}/token"
        registry.redirect_blobs_to = store.url
        with client_for(reg, sleeps) as client:
            client.get_manifest(REPO, "v1")
            assert fetch(client, digest, len(BLOB)) == BLOB
    assert auth.requests and store.requests
    for request in [*auth.requests, *store.requests, *reg.requests]:
        assert "cookie" not in request.headers


def test_registry_on_this_machine_is_not_reached_through_a_proxy(
    sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy from the environment is another origin: it would get the credentials of a
    registry on this machine, in clear text over plain HTTP. Like docker (Go's
    ProxyFromEnvironment), a loopback registry is always reached directly."""
    registry = FakeRegistry(auth="basic", users=USERS)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    # the "proxy" answers as the registry would, so that a client going through it goes on
    with serve(registry, "localhost") as reg, serve(registry) as proxy:
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        with client_for(reg, sleeps, credentials=ALICE, trust_env=True) as client:
            client.get_manifest(REPO, "v1")
        assert proxy.requests == []
        assert reg.requests[-1].headers["authorization"] == ALICE.basic_authorization()


def test_challenge_from_a_redirect_target_is_not_answered(sleeps: Sleeps) -> None:
    """A storage host that answers 401 with a challenge must not get credentials for it."""
    registry = FakeRegistry(auth="basic", users=USERS)
    digest = registry.add_blob(REPO, BLOB)

    def hostile_storage(ex: Exchange) -> None:
        ex.error(401, "UNAUTHORIZED", "give me your password",
                 {"WWW-Authenticate": 'Basic realm="storage"'})  # fmt: skip

    with serve(registry) as reg, serve(hostile_storage, "localhost") as storage:
        registry.redirect_blobs_to = storage.url
        with (
            client_for(reg, sleeps, credentials=ALICE) as client,
            pytest.raises(AuthenticationError),
        ):
            fetch(client, digest, len(BLOB))
    assert all("authorization" not in r.headers for r in storage.requests)


def test_denied_is_access_denied(registry: FakeRegistry, client: RegistryClient) -> None:
    def deny(ex: Exchange) -> bool:
        ex.error(403, "DENIED", "requested access to the resource is denied")
        return True

    registry.interceptors.append(deny)
    with pytest.raises(AccessDeniedError, match="DENIED: requested access"):
        client.get_manifest(REPO, "v1")


# -- credentials -------------------------------------------------------------------------------


def write_config(path: Path, auths: dict[str, dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_docker_config_credentials_by_path(sleeps: Sleeps, tmp_path: Path) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg:
        config = write_config(
            tmp_path / "config.json", {reg.netloc: {"auth": b64(f"alice:{PASSWORD}")}}
        )
        with client_for(reg, sleeps, use_docker_config=True, config_path=config) as client:
            client.get_manifest(REPO, "v1")
            assert "alice" in repr(client) and PASSWORD not in repr(client)


def test_docker_config_credentials_from_home(
    sleeps: Sleeps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    with serve(registry) as reg:
        write_config(
            tmp_path / ".docker" / "config.json",
            {f"http://{reg.netloc}": {"username": "alice", "password": PASSWORD}},
        )
        with client_for(reg, sleeps, use_docker_config=True) as client:
            client.get_manifest(REPO, "v1")


def test_load_docker_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(
        tmp_path / "c.json",
        {
            "https://index.docker.io/v1/": {"auth": b64("hub:pw1")},
            "ghcr.io": {"auth": b64("gh:pw:with:colons")},
            "https://registry.example.com/v2/": {"username": "ex", "password": "pw3"},
            "helper.example.com": {},
        },
    )
    assert load_docker_credentials("docker.io", config) == Credentials("hub", "pw1")
    assert load_docker_credentials("index.docker.io", config) == Credentials("hub", "pw1")
    assert load_docker_credentials("ghcr.io", config) == Credentials("gh", "pw:with:colons")
    assert load_docker_credentials("registry.example.com", config) == Credentials("ex", "pw3")
    assert load_docker_credentials("helper.example.com", config) is None
    assert load_docker_credentials("quay.io", config) is None
    assert load_docker_credentials("ghcr.io", tmp_path / "absent.json") is None

    # docker keys credentials by host[:port]: another port is another registry
    ports = write_config(
        tmp_path / "ports.json",
        {
            "registry": {"auth": b64("plain:pw")},
            "https://registry:5000/v2/": {"auth": b64("five:pw")},
            "http://user@other.example:8443": {"auth": b64("other:pw")},
        },
    )
    assert load_docker_credentials("registry", ports) == Credentials("plain", "pw")
    assert load_docker_credentials("registry:5000", ports) == Credentials("five", "pw")
    assert load_docker_credentials("registry:443", ports) is None
    assert load_docker_credentials("registry:5001", ports) is None
    assert load_docker_credentials("other.example:8443", ports) == Credentials("other", "pw")
    assert load_docker_credentials("other.example", ports) is None

    hub = write_config(tmp_path / "hub.json", {"registry-1.docker.io": {"auth": b64("h:p")}})
    assert load_docker_credentials("docker.io", hub) == Credentials("h", "p")

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    write_config(tmp_path / "dc" / "config.json", {"ghcr.io": {"auth": b64("env:pw")}})
    assert load_docker_credentials("ghcr.io") == Credentials("env", "pw")

    broken = tmp_path / "broken.json"
    broken.write_text('{"auths": {"ghcr.io": {"auth": "!!!not base64 secret"}}}')
    with pytest.raises(CredentialsError) as caught:
        load_docker_credentials("ghcr.io", broken)
    assert "secret" not in str(caught.value)
    broken.write_text("{not json, password=secret")
    with pytest.raises(CredentialsError, match="not valid JSON") as caught:
        load_docker_credentials("ghcr.io", broken)
    assert "secret" not in str(caught.value)


def test_credentials_are_masked() -> None:
    assert PASSWORD not in repr(ALICE)
    assert "alice" in repr(ALICE)
    assert Credentials.from_user_option("bob:pa:ss") == Credentials("bob", "pa:ss")
    assert Credentials.from_user_option("bob", "from-stdin\n") == Credentials("bob", "from-stdin")
    with pytest.raises(CredentialsError, match="no password"):
        Credentials.from_user_option("bob")
    with pytest.raises(CredentialsError):
        Credentials("a:b", "x")
    with pytest.raises(CredentialsError):
        Credentials("a", "x\r\nInjected: header")
    assert Credentials("a", "tab\tand ünïcode").password == "tab\tand ünïcode"


def test_secrets_stay_out_of_logs_and_errors(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    digest = registry.add_blob(REPO, BLOB)

    def echoing(ex: Exchange) -> bool:
        if ex.method == "HEAD":
            return False
        # A hostile registry echoes the credentials it was sent into its error message.
        ex.error(400, "ECHO", f"you sent {ex.headers.get('authorization')} and {PASSWORD}")
        return True

    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        caplog.set_level(logging.DEBUG)
        with client_for(reg, sleeps, credentials=ALICE) as client:
            client.blob_exists(REPO, digest)
            registry.interceptors.append(echoing)
            with pytest.raises(RegistryError) as caught:
                fetch(client, digest, len(BLOB))
    assert "ECHO" in str(caught.value)
    for secret in [PASSWORD, b64(f"alice:{PASSWORD}"), *tokens.issued]:
        assert secret not in str(caught.value)
        assert secret not in caplog.text


# -- pushing -----------------------------------------------------------------------------------


class Opener:
    """An ``open_reader`` that counts its calls."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0

    def __call__(self) -> io.BytesIO:
        self.calls += 1
        return io.BytesIO(self.data)


@pytest.mark.parametrize("absolute", [False, True])
def test_upload_monolithic(sleeps: Sleeps, absolute: bool) -> None:
    registry = FakeRegistry(absolute_locations=absolute)
    digest = sha256(BLOB)
    with serve(registry) as reg, client_for(reg, sleeps) as client:
        assert client.upload_blob(REPO, digest, len(BLOB), Opener(BLOB)) is False
        put = reg.requests_for("PUT", "/blobs/uploads/")[0]
        assert put.headers["content-length"] == str(len(BLOB))
        assert put.headers["content-type"] == "application/octet-stream"
    assert registry.blobs[REPO][str(digest)] == BLOB
    assert registry.finished_uploads == [(REPO, digest, [])]  # no PATCH


def test_a_large_blob_goes_in_one_request_by_default(sleeps: Sleeps) -> None:
    # As containerd and docker push it: blobs past 32 MiB went in 8 MiB PATCH chunks before.
    data = random.Random(7).randbytes(40 << 20)
    registry, digest = FakeRegistry(), sha256(data)
    with serve(registry) as reg, client_for(reg, sleeps) as client:
        assert client.upload_blob(REPO, digest, len(data), Opener(data)) is False
        assert not reg.requests_for("PATCH")
        assert reg.requests_for("PUT")[0].headers["content-length"] == str(len(data))
    assert registry.finished_uploads == [(REPO, digest, [])]


@pytest.mark.parametrize("absolute", [False, True])
def test_upload_chunked(sleeps: Sleeps, absolute: bool) -> None:
    registry = FakeRegistry(absolute_locations=absolute)
    digest = sha256(BLOB)
    with serve(registry) as reg:
        client = client_for(reg, sleeps, monolithic_limit=64 << 10, upload_chunk_size=50_000)
        with client:
            assert client.upload_blob(REPO, digest, len(BLOB), Opener(BLOB)) is False
        patches = reg.requests_for("PATCH")
        assert [p.headers["content-range"] for p in patches] == [
            "0-49999", "50000-99999", "100000-149999", "150000-179199",
        ]  # fmt: skip
        assert reg.requests_for("PUT")[0].headers["content-length"] == "0"
    assert registry.blobs[REPO][str(digest)] == BLOB
    assert registry.finished_uploads == [(REPO, digest, [50_000, 50_000, 50_000, 29_200])]


def test_upload_chunked_honours_the_minimum_chunk(sleeps: Sleeps) -> None:
    registry = FakeRegistry(chunk_min_length=100_000)
    digest = sha256(BLOB)
    with (
        serve(registry) as reg,
        client_for(reg, sleeps, monolithic_limit=1, upload_chunk_size=10_000) as client,
    ):
        client.upload_blob(REPO, digest, len(BLOB), Opener(BLOB))
    assert registry.finished_uploads == [(REPO, digest, [100_000, 79_200])]


def test_upload_with_bearer_auth(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    digest = sha256(BLOB)
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps, credentials=ALICE, monolithic_limit=100_000) as client:
            client.upload_blob(REPO, digest, len(BLOB), Opener(BLOB))
        assert [r.query["scope"] for r in reg.requests_for("GET", "/token")] == [
            ["repository:team/app:pull,push"]
        ]
    assert registry.blobs[REPO][str(digest)] == BLOB


@pytest.mark.parametrize("monolithic_limit", [1 << 30, 1])
@pytest.mark.parametrize(
    ("content", "problem"),
    [(BLOB[:-1] + b"!", "does not match its digest"), (BLOB[:-1], "has 179199 bytes"),
     (BLOB + b"!", "more than 179200 bytes")],
)  # fmt: skip
def test_upload_of_wrong_local_content_is_never_committed(
    sleeps: Sleeps, monolithic_limit: int, content: bytes, problem: str
) -> None:
    registry = FakeRegistry()
    digest = sha256(BLOB)
    with (
        serve(registry) as reg,
        client_for(reg, sleeps, monolithic_limit=monolithic_limit, upload_chunk_size=60_000) as c,
        pytest.raises(ContentError, match=problem),
    ):
        c.upload_blob(REPO, digest, len(BLOB), Opener(content))
    assert registry.blobs == {} and registry.finished_uploads == []
    assert len(registry.cancelled_uploads) == 1


def test_upload_starts_over_after_a_5xx(sleeps: Sleeps) -> None:
    registry = FakeRegistry()
    digest = sha256(BLOB)
    failed: list[bool] = []

    def fail_first_put(ex: Exchange) -> bool:
        if ex.method == "PUT" and not failed:
            failed.append(True)
            ex.error(500, "INTERNAL", "storage hiccup")
            return True
        return False

    registry.interceptors.append(fail_first_put)
    opener = Opener(BLOB)
    with serve(registry) as reg, client_for(reg, sleeps) as client:
        client.upload_blob(REPO, digest, len(BLOB), opener)
        assert len(reg.requests_for("POST")) == 2
    assert opener.calls == 2
    assert registry.blobs[REPO][str(digest)] == BLOB


def test_upload_refused_by_the_registry_is_a_content_error(sleeps: Sleeps) -> None:
    registry = FakeRegistry()

    def corrupt(ex: Exchange) -> bool:
        if ex.method == "PUT":
            ex.body()
            ex.error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            return True
        return False

    registry.interceptors.append(corrupt)
    digest = sha256(BLOB)
    with (
        serve(registry) as reg,
        client_for(reg, sleeps) as client,
        pytest.raises(RegistryContentError, match="DIGEST_INVALID") as caught,
    ):
        client.upload_blob(REPO, digest, len(BLOB), Opener(BLOB))
    assert caught.value.digest == digest


def test_mount(registry: FakeRegistry, server: FakeServer, client: RegistryClient) -> None:
    digest = registry.add_blob("team/base", BLOB)
    assert client.mount_blob(REPO, digest, "team/base") is True
    assert registry.blobs[REPO][str(digest)] == BLOB
    post = server.requests_for("POST")[-1]
    assert post.query == {"mount": [str(digest)], "from": ["team/base"]}

    other = sha256(b"not there")
    assert client.mount_blob("team/third", other, "team/base") is False
    assert len(registry.cancelled_uploads) == 1  # the 202 session was cancelled
    assert registry.uploads == {}


def test_upload_with_mount_from(
    registry: FakeRegistry, server: FakeServer, client: RegistryClient
) -> None:
    digest = registry.add_blob("team/base", BLOB)
    assert client.upload_blob(REPO, digest, len(BLOB), Opener(b""), mount_from="team/base")

    fresh = b"a new layer" * 100
    fresh_digest = sha256(fresh)
    opener = Opener(fresh)
    assert not client.upload_blob(REPO, fresh_digest, len(fresh), opener, mount_from="team/base")
    assert opener.calls == 1 and registry.cancelled_uploads == []  # the 202 session was used
    assert registry.blobs[REPO][str(fresh_digest)] == fresh
    assert len(server.requests_for("POST")) == 2


def test_mount_with_bearer_asks_for_both_scopes(sleeps: Sleeps) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    digest = registry.add_blob("team/base", BLOB)
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps, credentials=ALICE) as client:
            assert client.mount_blob(REPO, digest, "team/base") is True
        scopes = reg.requests_for("GET", "/token")[-1].query["scope"]
        assert sorted(scopes) == ["repository:team/app:pull,push", "repository:team/base:pull"]


def test_put_manifest(registry: FakeRegistry, server: FakeServer, client: RegistryClient) -> None:
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    digest = client.put_manifest(REPO, "v1", index, OCI_INDEX)
    assert digest == sha256(index)
    put = server.requests_for("PUT", "/manifests/v1")[0]
    assert put.headers["content-type"] == OCI_INDEX
    assert client.get_manifest(REPO, "v1") == (index, OCI_INDEX, digest)

    assert client.put_manifest(REPO, digest, index, OCI_INDEX) == digest
    assert server.requests_for("PUT")[-1].path == f"/v2/{REPO}/manifests/{digest}"
    with pytest.raises(ContentError):
        client.put_manifest(REPO, sha256(b"other"), index, OCI_INDEX)


# -- arguments ---------------------------------------------------------------------------------


def test_names_are_validated_before_they_reach_a_url(client: RegistryClient) -> None:
    with pytest.raises(CargoholdError):
        client.get_manifest("../../etc", "v1")
    with pytest.raises(CargoholdError):
        client.get_manifest(REPO, "v1/../../x")
    with pytest.raises(CargoholdError):
        client.get_manifest(REPO, "sha256:short")
    with pytest.raises(CargoholdError):
        RegistryClient("not a host", use_docker_config=False)


def test_docker_hub_is_reached_at_its_api_host() -> None:
    with RegistryClient("docker.io", use_docker_config=False) as hub:
        assert str(hub.base_url) == "https://registry-1.docker.io"
        assert hub.host == "docker.io"
    with RegistryClient("index.docker.io", use_docker_config=False) as hub:
        assert hub.host == "docker.io"


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_tls_verification(certificate: tuple[Path, Path], sleeps: Sleeps) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    registry = FakeRegistry()
    digest = registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    retry = RetryPolicy(attempts=3, sleep=sleeps)
    with FakeServer(registry, tls=context) as reg:

        def tls_client(verify: bool | str = True) -> RegistryClient:
            return RegistryClient(
                reg.netloc, verify=verify, trust_env=False, use_docker_config=False, retry=retry
            )

        with (
            tls_client() as client,
            pytest.raises(RegistryConnectionError, match="certificate verification failed"),
        ):
            client.get_manifest(REPO, "v1")
        assert sleeps.delays == []  # a refused certificate is not retried
        with tls_client(str(cert)) as client:
            assert client.get_manifest(REPO, "v1").digest == digest
        with tls_client(False) as client:
            assert client.get_manifest(REPO, "v1").digest == digest
    with pytest.raises(RegistryError, match="cannot load CA certificate"):
        RegistryClient("127.0.0.1", verify=str(cert.parent / "absent.pem"))


def test_protocol_errors_are_clean(registry: FakeRegistry, client: RegistryClient) -> None:
    digest = registry.add_blob(REPO, BLOB)

    def bad_range(ex: Exchange) -> bool:
        if ex.method == "GET" and "range" not in ex.headers:
            return False
        ex.respond(206, BLOB[:10], {"Content-Range": "bytes 5-14/179200"})
        return True

    _, intercept = drop_after(digest, 20_000)
    registry.interceptors += [intercept, bad_range]  # type: ignore[list-item]
    with pytest.raises(RegistryProtocolError, match="sent bytes 5-14 when asked for 20000-"):
        fetch(client, digest, len(BLOB))


def test_partial_answer_to_a_full_request_is_refused(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    digest = registry.add_blob(REPO, BLOB)
    seen: list[int] = []

    def spy(ex: Exchange) -> bool:
        if ex.method == "GET" and ex.path.endswith(str(digest)):
            ex.headers["range"] = "bytes=100-"
            seen.append(1)
            serve_blob(ex, BLOB)
            return True
        return False

    registry.interceptors.append(spy)
    with pytest.raises(RegistryProtocolError):
        fetch(client, digest, len(BLOB))  # 206 from 100 when 0 was asked for
    assert seen == [1]


@pytest.mark.parametrize(
    "challenge",
    [
        'Bearer realm="{realm}",service="fake-registry"',
        "Bearer realm={realm},service=fake-registry",
        'Basic realm="other", Bearer realm="{realm}", service="fake-registry"',
        'bearer  service="fake-registry" , realm="{realm}",error="invalid_token"',
    ],
)
def test_challenge_variants(sleeps: Sleeps, challenge: str) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = bearer_registry(tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)

    def challenging(ex: Exchange) -> bool:
        if ex.path.startswith("/v2/") and "authorization" not in ex.headers:
            header = challenge.format(realm=registry.realm)
            ex.error(401, "UNAUTHORIZED", "log in", {"WWW-Authenticate": header})
            return True
        return False

    registry.interceptors.append(challenging)
    with serve(registry) as reg:
        registry.realm = f"{reg.url}/token"
        with client_for(reg, sleeps, credentials=ALICE) as client:
            assert client.get_manifest(REPO, "v1").data == MANIFEST
        token_request = reg.requests_for("GET", "/token")[0]
        assert token_request.query["service"] == ["fake-registry"]
        assert token_request.headers["authorization"] == ALICE.basic_authorization()


def test_no_credentials_to_a_realm_without_tls(
    certificate: tuple[Path, Path], sleeps: Sleeps
) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tokens = TokenService(USERS, anonymous=True)
    registry = bearer_registry(tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    retry = RetryPolicy(attempts=3, sleep=sleeps)
    with FakeServer(registry, tls=context) as reg, serve(tokens) as auth:
        registry.realm = f"{auth.url}/token"  # same host, plain HTTP
        options = {"credentials": ALICE, "verify": str(cert), "trust_env": False}
        with RegistryClient(reg.netloc, retry=retry, **options) as client:  # type: ignore[arg-type]
            client.get_manifest(REPO, "v1")
            with pytest.raises(ForeignRealmError, match="reached without TLS"):
                client.put_manifest(REPO, "v2", MANIFEST, OCI_MANIFEST)
    assert auth.requests and all("authorization" not in r.headers for r in auth.requests)
