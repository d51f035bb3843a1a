"""``cargohold serve``: the registry API from a real server process, asked with httpx.

One store and one server serve the read-only tests of the module; the tests that change the
store (or stop the server) start their own.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from cargohold.operations.store import Store
from clisupport import archive, run
from imagefactory import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, ArchiveBuilder, dumps
from servehelpers import Server, serving, start_server

BIG = 16 << 20  # larger than the socket buffers of a loopback connection


@dataclass(frozen=True)
class Served:
    root: Path
    server: Server
    client: httpx.Client
    manifest: str  # the digest of myapp:1
    index: str  # the digest of multi:1
    layer: str  # the digest of big:1's layer
    layer_bytes: bytes


def big_image(builder: ArchiveBuilder, data: bytes) -> dict[str, Any]:
    """An image whose one layer is *data* as it is (an uncompressed layer is any bytes here)."""
    layer = builder.blob(data, OCI_LAYER)
    config = builder.blob(
        dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers",
               "diff_ids": [layer["digest"]]}}),
        OCI_CONFIG,
    )  # fmt: skip
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    return builder.blob(dumps(manifest), OCI_MANIFEST)


def build_store(root: Path, work: Path) -> tuple[str, str, str, bytes]:
    builder = ArchiveBuilder()
    index = builder.multi_platform(["linux/amd64", "linux/arm64"])
    builder.add(index, name="docker.io/library/multi:1")
    data = os.urandom(BIG)
    big = big_image(builder, data)
    builder.add(big, name="docker.io/library/big:1")
    layer = json.loads(builder.blobs[big["digest"]])["layers"][0]["digest"]
    with Store(root) as store:
        store.import_archive(builder.write(work / "multi.tar"), platforms="all")
        store.import_archive(archive(work / "a.tar", "myapp:1", "myapp:2", "myapp:latest"))
        store.import_archive(archive(work / "b.tar", "example.com/team/app:2", files={"b": b"b"}))
        manifest = str(store.resolve("myapp:1").digest)
    return manifest, index["digest"], layer, data


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("serve")
    root = work / "store"
    manifest, index, layer, data = build_store(root, work)
    with serving(root) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Served(root, server, client, manifest, index, layer, data)


def errors(response: httpx.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


def test_base_answers_with_the_api_version(served: Served) -> None:
    response = served.client.get("/v2/")
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_a_manifest_by_tag_and_by_digest_is_the_stored_document(served: Served) -> None:
    by_tag = served.client.get("/v2/myapp/manifests/1")
    assert by_tag.status_code == 200
    assert "sha256:" + hashlib.sha256(by_tag.content).hexdigest() == served.manifest
    assert by_tag.headers["Docker-Content-Digest"] == served.manifest
    assert by_tag.headers["Content-Type"] == OCI_MANIFEST
    by_digest = served.client.get(f"/v2/library/myapp/manifests/{served.manifest}")
    assert by_digest.content == by_tag.content
    assert by_digest.headers["Content-Type"] == OCI_MANIFEST
    head = served.client.head("/v2/myapp/manifests/1")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(by_tag.content))
    assert head.headers["Docker-Content-Digest"] == served.manifest


def test_an_index_and_its_manifests_keep_their_media_types(served: Served) -> None:
    """The stored bytes whatever Accept says (never rewritten); a manifest the index lists,
    asked for by digest, gets the type its content declares."""
    index = served.client.get(
        "/v2/multi/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert index.status_code == 200
    assert index.headers["Content-Type"] == OCI_INDEX
    assert index.headers["Docker-Content-Digest"] == served.index
    for entry in index.json()["manifests"]:
        child = served.client.get(f"/v2/multi/manifests/{entry['digest']}")
        assert child.status_code == 200
        assert child.headers["Content-Type"] == OCI_MANIFEST
        assert "sha256:" + hashlib.sha256(child.content).hexdigest() == entry["digest"]


def test_a_layer_is_no_manifest(served: Served) -> None:
    config = served.client.get(f"/v2/myapp/manifests/{served.manifest}").json()["config"]
    response = served.client.get(f"/v2/myapp/manifests/{config['digest']}")
    assert response.status_code == 404
    assert errors(response) == ["MANIFEST_UNKNOWN"]


def test_unknown_names_tags_and_blobs(served: Served) -> None:
    assert errors(served.client.get("/v2/nothing/manifests/1")) == ["NAME_UNKNOWN"]
    assert errors(served.client.get("/v2/myapp/manifests/9")) == ["MANIFEST_UNKNOWN"]
    absent = "sha256:" + "0" * 64
    assert errors(served.client.get(f"/v2/myapp/blobs/{absent}")) == ["BLOB_UNKNOWN"]
    assert errors(served.client.get(f"/v2/myapp/manifests/{absent}")) == ["MANIFEST_UNKNOWN"]
    head = served.client.head(f"/v2/myapp/blobs/{absent}")
    assert head.status_code == 404 and head.content == b""


def test_a_blob_whole_and_in_ranges(served: Served) -> None:
    url = f"/v2/big/blobs/{served.layer}"
    whole = served.client.get(url)
    assert whole.status_code == 200
    assert whole.content == served.layer_bytes
    assert whole.headers["Docker-Content-Digest"] == served.layer
    assert whole.headers["ETag"] == f'"{served.layer}"'
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = served.client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == served.layer_bytes[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{BIG}"
    tail = served.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == served.layer_bytes[-10:]
    rest = served.client.get(url, headers={"Range": f"bytes={BIG - 5}-"})
    assert rest.content == served.layer_bytes[-5:]
    head = served.client.head(url)
    assert head.headers["Content-Length"] == str(BIG) and head.content == b""
    cached = served.client.get(url, headers={"If-None-Match": f'"{served.layer}"'})
    assert cached.status_code == 304 and cached.content == b""


def test_a_range_past_the_end_and_ranges_that_are_ignored(served: Served) -> None:
    url = f"/v2/big/blobs/{served.layer}"
    past = served.client.get(url, headers={"Range": f"bytes={BIG}-"})
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{BIG}"
    for ignored in ("bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-"):
        response = served.client.head(url, headers={"Range": ignored})
        assert response.status_code == 200, ignored
    stale = served.client.head(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert stale.status_code == 200


def test_a_download_resumed_with_range(served: Served) -> None:
    """A client that lost the connection half-way asks for the rest, and has the blob."""
    url = f"/v2/big/blobs/{served.layer}"
    got = bytearray()
    with served.client.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            got += chunk
            if len(got) > BIG // 2:
                break  # the connection is dropped with the rest unread
    rest = served.client.get(url, headers={"Range": f"bytes={len(got)}-"})
    assert rest.status_code == 206
    got += rest.content
    assert "sha256:" + hashlib.sha256(got).hexdigest() == served.layer


def test_tags_and_catalog_in_pages(served: Served) -> None:
    assert served.client.get("/v2/myapp/tags/list").json() == {
        "name": "myapp",
        "tags": ["1", "2", "latest"],
    }
    first = served.client.get("/v2/myapp/tags/list", params={"n": "2"})
    assert first.json()["tags"] == ["1", "2"]
    link = first.headers["Link"]
    assert 'rel="next"' in link and "last=2" in link
    second = served.client.get(link.split(";")[0].strip("<>"))
    assert second.json()["tags"] == ["latest"] and "Link" not in second.headers
    assert errors(served.client.get("/v2/myapp/tags/list", params={"n": "x"})) == [
        "PAGINATION_NUMBER_INVALID"
    ]
    assert errors(served.client.get("/v2/nothing/tags/list")) == ["NAME_UNKNOWN"]
    catalog = served.client.get("/v2/_catalog").json()["repositories"]
    assert catalog == ["example.com/team/app", "library/big", "library/multi", "library/myapp"]
    page = served.client.get("/v2/_catalog", params={"n": "1", "last": "library/big"})
    assert page.json()["repositories"] == ["library/multi"]


def test_containerd_mirror_names_and_docker_hub_short_names(served: Served) -> None:
    """``?ns=HOST`` serves HOST/NAME; docker.io's short names work with and without it."""
    for path in (
        "/v2/team/app/manifests/2?ns=example.com",
        "/v2/example.com/team/app/manifests/2",
        "/v2/library/myapp/manifests/1?ns=docker.io",
        "/v2/myapp/manifests/1?ns=index.docker.io",
        "/v2/myapp/manifests/1",
        "/v2/docker.io/library/myapp/manifests/1",
    ):
        assert served.client.get(path).status_code == 200, path
    assert errors(served.client.get("/v2/team/app/manifests/2?ns=ghcr.io")) == ["NAME_UNKNOWN"]
    assert errors(served.client.get("/v2/library/myapp/manifests/1?ns=example.com")) == [
        "NAME_UNKNOWN"
    ]
    assert served.client.get("/v2/team/app/tags/list?ns=example.com").json()["tags"] == ["2"]
    mirrored = served.client.get("/v2/_catalog?ns=example.com").json()
    assert mirrored == {"repositories": ["team/app"]}


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])
def test_every_write_is_refused_and_changes_nothing(served: Served, method: str) -> None:
    before = sorted(p.name for p in (served.root / "content" / "blobs" / "sha256").iterdir())
    for path in (
        "/v2/myapp/manifests/1",
        f"/v2/myapp/manifests/{served.manifest}",
        f"/v2/big/blobs/{served.layer}",
        "/v2/myapp/blobs/uploads/",
        "/v2/myapp/blobs/uploads/abc?digest=sha256:" + "0" * 64,
        "/v2/_catalog",
    ):
        response = served.client.request(method, path, content=b"{}")
        assert response.status_code == 405, path
        assert errors(response) == ["UNSUPPORTED"]
    assert served.client.get("/v2/myapp/blobs/uploads/abc").status_code == 405
    after = sorted(p.name for p in (served.root / "content" / "blobs" / "sha256").iterdir())
    assert after == before
    with Store(served.root, mode="read") as store:
        assert [r.name for r in store.meta.list_images("default")][:1] == [
            "docker.io/library/big:1"
        ]
        assert str(store.resolve("myapp:1").digest) == served.manifest


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/../../etc/passwd/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/%2e%2e/%2e%2e/etc/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/a%2f..%2f..%2fetc/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/UPPER/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/a%1b[31m/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/" + "a/" * 200 + "b/manifests/1", 400, "NAME_INVALID"),
        ("/v2/myapp/manifests/..%2f..%2fetc", 404, "UNSUPPORTED"),
        ("/v2/myapp/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd", 404, "UNSUPPORTED"),
        ("/v2/myapp/blobs/sha256:..", 400, "DIGEST_INVALID"),
        ("/v2/myapp/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"),
        ("/v2/myapp/blobs/sha256:" + "A" * 64, 400, "DIGEST_INVALID"),
        ("/v2/myapp/blobs/sha256:abc", 400, "DIGEST_INVALID"),
        ("/v2/myapp/manifests/sha384:" + "0" * 96, 400, "DIGEST_INVALID"),
        ("/v2/myapp/referrers/sha256:..%2f..%2fetc", 404, "UNSUPPORTED"),
        ("/v2/myapp/referrers/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"),
        ("/v2/nosuch/referrers/sha256:" + "0" * 64, 404, "NAME_UNKNOWN"),
        ("/etc/passwd", 404, "UNSUPPORTED"),
        ("/v2/team/app/manifests/2?ns=bad_host!", 400, "NAME_INVALID"),
    ],
)
def test_hostile_paths(served: Served, path: str, status: int, code: str) -> None:
    """Sent as they are (an HTTP client library would normalise the dots away)."""
    answer, body = raw_request(served.server, path)
    assert answer == status
    assert [e["code"] for e in json.loads(body)["errors"]] == [code]


def raw_request(server: Server, target: str) -> tuple[int, bytes]:
    """GET *target* byte for byte as given; the status and body."""
    host, port = server.netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def test_a_method_http_does_not_know_is_a_bad_request(served: Served) -> None:
    """The HTTP parser refuses it before the API is asked; the connection's end is the end."""
    assert served.client.request("FOO", "/v2/myapp/manifests/1").status_code == 400
    assert served.client.get("/v2/myapp/manifests/1").status_code == 200


def test_huge_headers_and_lines_are_refused_and_serving_goes_on(served: Served) -> None:
    assert served.client.get("/v2/", headers={"X-Big": "a" * 20_000}).status_code in (400, 431)
    assert served.client.get("/v2/" + "a" * 20_000).status_code in (400, 414)
    many = {f"X-H{i}": "1" for i in range(300)}
    assert served.client.get("/v2/", headers=many).status_code in (400, 431)
    assert served.client.get("/v2/myapp/manifests/1").status_code == 200


def test_thousands_of_absent_blobs_then_a_present_one(served: Served) -> None:
    for i in range(2000):
        digest = "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()
        assert served.client.head(f"/v2/myapp/blobs/{digest}").status_code == 404
    assert served.client.get("/v2/myapp/manifests/1").status_code == 200


def test_idle_connections_do_not_stop_others(tmp_path: Path) -> None:
    """200 slowloris connections, each with half a request, and a client is served: also when
    the server starts with a soft limit of open files below that (it raises it to the hard
    limit, as Go's runtime does)."""
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1"))
    with serving(root, open_files=64) as server:
        host, port = server.netloc.rsplit(":", 1)
        idle = []
        try:
            for _ in range(200):
                sock = socket.create_connection((host, int(port)))
                sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
                idle.append(sock)
            with httpx.Client(base_url=server.url, timeout=10) as other:
                assert other.get("/v2/app/manifests/1").status_code == 200
        finally:
            for sock in idle:
                sock.close()


def test_one_log_line_per_request_with_the_client_text_escaped(served: Served) -> None:
    served.client.get("/v2/a%1b]0;title%07/manifests/1")
    line = served.server.wait_for_line("title")
    assert "\x1b" not in line and "\x07" not in line
    assert '"GET /v2/a%1b]0;title%07/manifests/1" 400' in line


# --- servers of their own ------------------------------------------------------------------


def test_the_store_as_it_is_at_each_request(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "first:1"))
    with serving(root) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/second/manifests/1").status_code == 404
        with Store(root) as store:
            store.import_archive(archive(tmp_path / "b.tar", "second:1", files={"2": b"2"}))
            store.tag("first:1", ["first:2"])
        assert client.get("/v2/second/manifests/1").status_code == 200
        assert client.get("/v2/first/tags/list").json()["tags"] == ["1", "2"]
        with Store(root) as store:
            store.remove(["second:1"])
        assert errors(client.get("/v2/second/manifests/1")) == ["NAME_UNKNOWN"]


def test_a_blob_removed_by_gc_while_sent_is_sent_whole(tmp_path: Path) -> None:
    root = tmp_path / "store"
    builder = ArchiveBuilder()
    data = os.urandom(BIG)
    builder.add(big_image(builder, data), name="big:1")
    layer = "sha256:" + hashlib.sha256(data).hexdigest()
    with Store(root) as store:
        store.import_archive(builder.write(tmp_path / "big.tar"))
    with serving(root) as server, httpx.Client(base_url=server.url) as client:
        got = bytearray()
        with client.stream("GET", f"/v2/big/blobs/{layer}") as response:
            chunks = response.iter_bytes()
            got += next(chunks)
            with Store(root) as store:
                store.remove(["big:1"])  # and collects the blob
            assert not (root / "content" / "blobs" / "sha256" / layer[7:]).exists()
            for chunk in chunks:
                got += chunk
        assert bytes(got) == data
        assert errors(client.get(f"/v2/big/blobs/{layer}")) == ["NAME_UNKNOWN"]


def open_blob_files(server: Server, root: Path) -> list[str]:
    """The files under the store's ``content/blobs`` the server process has open."""
    blobs = str(root / "content" / "blobs")
    found = []
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith(blobs):
            found.append(target)
    return found


def test_a_client_gone_mid_blob_leaves_no_open_file(served: Served) -> None:
    """A client that reads part of a large blob and resets the connection: the server closes
    the blob's file (and goes on serving); so do clients gone before their first byte."""
    for wanted in (1 << 16, 0):
        with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
            path = f"/v2/big/blobs/{served.layer}?gone={wanted}"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = 0
            while got < wanted:
                got += len(sock.recv(1 << 16))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        served.server.wait_for_line(f"gone={wanted}")
        assert open_blob_files(served.server, served.root) == []
    assert served.client.get(f"/v2/big/blobs/{served.layer}").content == served.layer_bytes


def test_only_the_served_namespace_and_only_regular_files(tmp_path: Path) -> None:
    """A blob the namespace does not hold is not served, even when the store has it; a blob
    file replaced by a symlink (to a file outside the store) is not followed."""
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1"))
    with Store(root, "other") as store:
        store.import_archive(archive(tmp_path / "b.tar", "app:1", files={"o": b"other"}))
        other = store.resolve("app:1").digest
        other_config = json.loads(store.raw_document("app:1", "manifest"))["config"]["digest"]
    with Store(root) as store:
        manifest = json.loads(store.raw_document("app:1", "manifest"))
    config = manifest["config"]["digest"]
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    blob = root / "content" / "blobs" / "sha256" / config[7:]
    blob.unlink()
    blob.symlink_to(secret)
    with serving(root) as server, httpx.Client(base_url=server.url) as client:
        assert errors(client.get(f"/v2/app/manifests/{other}")) == ["MANIFEST_UNKNOWN"]
        assert errors(client.get(f"/v2/app/blobs/{other_config}")) == ["BLOB_UNKNOWN"]
        response = client.get(f"/v2/app/blobs/{config}")
        assert errors(response) == ["BLOB_UNKNOWN"]
        assert b"secret" not in response.content
    with serving(root, namespace="other") as server, httpx.Client(base_url=server.url) as client:
        assert client.get(f"/v2/app/manifests/{other}").status_code == 200
        assert client.get(f"/v2/app/blobs/{other_config}").status_code == 200


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed.replace('$2b$', '$2y$', 1)}\n")
    return path


def test_basic_auth_from_htpasswd(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1"))
    htpasswd = htpasswd_file(tmp_path / "htpasswd", "puller", "s3cret")
    with serving(root, "--htpasswd", str(htpasswd)) as server:
        with httpx.Client(base_url=server.url) as anonymous:
            for path in ("/v2/", "/v2/app/manifests/1", "/v2/_catalog"):
                response = anonymous.get(path)
                assert response.status_code == 401
                assert response.headers["WWW-Authenticate"] == 'Basic realm="cargohold"'
                assert errors(response) == ["UNAUTHORIZED"]
            wrong = anonymous.get("/v2/app/manifests/1", auth=("puller", "wrong"))
            assert wrong.status_code == 401
            assert anonymous.get("/v2/", auth=("nobody", "s3cret")).status_code == 401
            long = anonymous.get("/v2/", auth=("puller", "x" * 100))
            assert long.status_code == 401
            garbage = anonymous.get("/v2/", headers={"Authorization": "Basic %%%"})
            assert garbage.status_code == 401
        with httpx.Client(base_url=server.url, auth=("puller", "s3cret")) as client:
            for _ in range(2):  # the second check is remembered
                assert client.get("/v2/app/manifests/1").status_code == 200
            assert client.put("/v2/app/manifests/1").status_code == 405
        assert " puller " in server.wait_for_line('"PUT ')


def test_credentials_are_refused_in_clear_text_off_loopback(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1"))
    htpasswd = htpasswd_file(tmp_path / "htpasswd", "puller", "pw")
    proc = run(root, "serve", "--addr", "0.0.0.0:0", "--htpasswd", str(htpasswd))
    assert proc.returncode == 1
    assert b"without TLS" in proc.stderr and b"clear text" in proc.stderr
    bad = tmp_path / "bad"
    bad.write_text("puller:{SHA}abc\n")
    proc = run(root, "serve", "--addr", "127.0.0.1:0", "--htpasswd", str(bad))
    assert proc.returncode == 1 and b"bcrypt" in proc.stderr
    proc = run(root, "serve", "--addr", "nowhere")
    assert proc.returncode == 1 and b"HOST:PORT" in proc.stderr
    proc = run(root, "serve", "--addr", "127.0.0.1:0", "--tls-cert", str(bad))
    assert proc.returncode == 1 and b"go together" in proc.stderr
    proc = run(tmp_path / "none", "serve", "--addr", "127.0.0.1:0")
    assert proc.returncode == 1 and b"no cargohold store at" in proc.stderr
    proc = run(root, "serve", "--addr", ":0", "--htpasswd", str(htpasswd))
    assert proc.returncode == 1 and b"0.0.0.0 without TLS" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_after_the_requests_in_flight(
    tmp_path: Path, signum: int
) -> None:
    root = tmp_path / "store"
    builder = ArchiveBuilder()
    data = os.urandom(BIG)
    builder.add(big_image(builder, data), name="big:1")
    with Store(root) as store:
        store.import_archive(builder.write(tmp_path / "big.tar"))
    server = start_server(root)
    layer = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=server.url) as client:
        with client.stream("GET", f"/v2/big/blobs/{layer}") as response:
            chunks = response.iter_bytes()
            got = bytearray(next(chunks))
            server.process.send_signal(signum)
            for chunk in chunks:
                got += chunk
        assert bytes(got) == data
    assert server.process.wait(timeout=30) == 0
    assert "stopping" in server.log()


def test_a_damaged_record_is_a_server_error_and_the_rest_is_served(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1", "app:2"))
    with sqlite3.connect(root / "metadata.db") as db:
        db.execute("UPDATE images SET digest = 'bad' WHERE name = 'docker.io/library/app:1'")
    with serving(root) as server, httpx.Client(base_url=server.url) as client:
        damaged = client.get("/v2/app/manifests/1")
        assert damaged.status_code == 500
        assert errors(damaged) == ["UNKNOWN"]
        assert "metadata.db" in damaged.json()["errors"][0]["message"]
        assert client.get("/v2/app/manifests/2").status_code == 200


def test_listening_on_ipv6_loopback(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1"))
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with serving(root, "--addr", "[::1]:0") as server, httpx.Client(base_url=server.url) as c:
        assert server.netloc.startswith("[::1]:")
        assert c.get("/v2/app/manifests/1").status_code == 200


def test_json_log_lines(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "a.tar", "app:1"))
    with serving(root, "--log-format", "json") as server, httpx.Client(base_url=server.url) as c:
        c.get("/v2/app/manifests/1")
        c.get("/v2/app/manifests/nope")
        server.wait_for_line("nope")
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("GET", "/v2/app/manifests/1", 200),
        ("GET", "/v2/app/manifests/nope", 404),
    ]
