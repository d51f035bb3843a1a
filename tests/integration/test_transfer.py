"""``image pull`` and ``image push`` against the fake registry: what is fetched and sent, what
is skipped, and that every failed pull leaves the store exactly as it was."""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.errors import CargoholdError
from cargohold.oci.digests import Digest
from cargohold.operations.pulling import WRITEBACK_STEP
from cargohold.operations.store import Store
from cargohold.operations.transfer import default_client_factory, is_loopback
from cargohold.registry.client import (
    AuthenticationError,
    Credentials,
    ForeignRealmError,
    RegistryContentError,
    RegistryError,
    RegistryServerError,
)
from clisupport import archive, assert_one_error_line, run
from fakeregistry import Exchange, FakeRegistry, FakeServer, TokenService, serve
from imagefactory import OCI_INDEX, OCI_MANIFEST, ArchiveBuilder, platform_json
from registryhelpers import REPO, factory_for, publish
from snapshots import HOST, OTHER, snapshot

PASSWORD = "hunter2-very-secret"
ALICE = Credentials("alice", PASSWORD)
USERS = {"alice": PASSWORD}
#: A layer big enough (and incompressible) that a download is seen in the middle (the client
#: reads 16 KiB chunks).
BIG = {"big.bin": random.Random(7).randbytes(200_000)}


def multi_platform(builder: ArchiveBuilder) -> dict[str, Any]:
    """An index of HOST (two layers, one big) and OTHER."""
    manifests = []
    for platform in (HOST, OTHER):
        desc = builder.image(platform, files={**BIG, "p": platform.encode()}, layers=2)
        desc["platform"] = platform_json(platform)
        manifests.append(desc)
    return builder.index(manifests)


@pytest.fixture
def registry() -> FakeRegistry:
    """A fake registry's state: repositories, blobs, and what requests it saw."""
    return FakeRegistry()


@pytest.fixture
def server(registry: FakeRegistry) -> Iterator[FakeServer]:
    """The fake registry served on 127.0.0.1 for the length of a test."""
    with serve(registry) as server:
        yield server


@pytest.fixture
def published(registry: FakeRegistry) -> tuple[ArchiveBuilder, dict[str, Any]]:
    builder = ArchiveBuilder()
    top = multi_platform(builder)
    publish(registry, builder, top, REPO, "v1")
    return builder, top


def new_store(tmp_path: Path, name: str = "root") -> Store:
    return Store(tmp_path / name)


def blob_gets(server: FakeServer) -> int:
    return len(server.requests_for("GET", "/blobs/"))


# -- pull ----------------------------------------------------------------------------------


def test_pull_by_tag_and_by_digest(
    server: FakeServer, published: tuple[ArchiveBuilder, dict[str, Any]], tmp_path: Path
) -> None:
    builder, top = published
    ref = f"{server.netloc}/{REPO}:v1"
    with new_store(tmp_path) as store:
        result = store.pull(ref, client_factory=factory_for())
        assert result.name == ref
        assert str(result.digest) == top["digest"] and result.media_type == OCI_INDEX
        assert result.action == "created"
        assert [str(p) for p in result.platforms] == [HOST]
        assert result.blobs_downloaded == 3 and result.manifests_downloaded == 1
        record = store.resolve(ref)
        assert str(record.digest) == top["digest"]
        assert all(c.ok for c in store.check([ref]))
        # only the host's content came
        other = json.loads(builder.blobs[top["digest"]])["manifests"][1]
        assert store.blobs.blob_size(Digest.parse(other["digest"])) is None
        assert not list(store.blobs.ingest_dir.iterdir())  # staging cleaned up

    by_digest = f"{server.netloc}/{REPO}@{top['digest']}"
    with new_store(tmp_path, "fresh") as fresh:
        result = fresh.pull(by_digest, client_factory=factory_for(), platforms="all")
        assert result.name == by_digest and str(result.digest) == top["digest"]
        assert sorted(str(p) for p in result.platforms) == sorted([HOST, OTHER])
        assert result.blobs_downloaded == 6
        assert str(fresh.resolve(by_digest).digest) == top["digest"]
        assert all(c.ok for c in fresh.check([by_digest], platforms="all"))


def test_second_pull_downloads_nothing(
    server: FakeServer, published: tuple[ArchiveBuilder, dict[str, Any]], tmp_path: Path
) -> None:
    ref = f"{server.netloc}/{REPO}:v1"
    with new_store(tmp_path) as store:
        store.pull(ref, client_factory=factory_for())
        blobs_before = blob_gets(server)
        manifests_before = len(server.requests_for("GET", "/manifests/sha256:"))
        again = store.pull(ref, client_factory=factory_for())
    assert again.action == "unchanged"
    assert (again.blobs_downloaded, again.manifests_downloaded, again.blobs_present) == (0, 0, 3)
    assert blob_gets(server) == blobs_before
    assert len(server.requests_for("GET", "/manifests/sha256:")) == manifests_before


def test_pull_of_a_layer_spanning_several_writeback_steps(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    """A blob written (and its writeback started) in several steps is stored whole."""
    builder = ArchiveBuilder()
    size = 2 * WRITEBACK_STEP + 4097
    top = builder.image(HOST, files={"big.bin": random.Random(11).randbytes(size)})
    publish(registry, builder, top, REPO, "big")
    ref = f"{server.netloc}/{REPO}:big"
    with new_store(tmp_path) as store:
        result = store.pull(ref, client_factory=factory_for())
        assert result.bytes_downloaded > size
        assert all(c.ok for c in store.check([ref]))
        for digest, data in builder.blobs.items():
            assert store.blobs.read_blob(Digest.parse(digest), len(data)) == data


def test_pull_of_a_single_manifest_and_a_missing_platform(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    builder = ArchiveBuilder()
    desc = builder.image(HOST, files=BIG)
    digest = publish(registry, builder, desc, REPO, "single")
    with new_store(tmp_path) as store:
        result = store.pull(f"{server.netloc}/{REPO}:single", client_factory=factory_for())
        assert result.digest == digest and result.media_type == OCI_MANIFEST
        before = snapshot(store)
        builder2 = ArchiveBuilder()
        top = builder2.multi_platform([OTHER])
        publish(registry, builder2, top, REPO, "other-only")
        with pytest.raises(CargoholdError, match="has no manifest for"):
            store.pull(f"{server.netloc}/{REPO}:other-only", client_factory=factory_for())
        assert snapshot(store) == before


# -- push ----------------------------------------------------------------------------------


def import_image(
    store: Store, tmp_path: Path, name: str, all_platforms: bool = True
) -> dict[str, Any]:
    builder = ArchiveBuilder()
    top = multi_platform(builder)
    builder.add(top, name=name)
    store.import_archive(
        builder.write(tmp_path / "in.tar"), platforms="all" if all_platforms else ()
    )
    return top


def test_push_then_pull_round_trip(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    ref = f"{server.netloc}/{REPO}:v1"
    with new_store(tmp_path) as store:
        top = import_image(store, tmp_path, ref)
        result = store.push(ref, client_factory=factory_for())
        assert str(result.digest) == top["digest"] and result.warnings == []
        assert (result.blobs_uploaded, result.manifests) == (6, 3)
        assert sorted(str(p) for p in result.platforms) == sorted([HOST, OTHER])
    # the index went last, under the tag; manifests before it, by digest
    puts = [r.path for r in server.requests_for("PUT", "/manifests/")]
    assert puts[-1] == f"/v2/{REPO}/manifests/v1" and len(puts) == 3
    assert registry.manifests[REPO]["v1"] == (
        registry.manifests[REPO][top["digest"]][0],
        OCI_INDEX,
    )
    with new_store(tmp_path, "fresh") as fresh:
        pulled = fresh.pull(ref, platforms="all", client_factory=factory_for())
        assert str(pulled.digest) == top["digest"]
        assert all(c.ok for c in fresh.check([ref], platforms="all"))


def test_push_skips_present_blobs_and_mounts_across_repositories(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    ref = f"{server.netloc}/{REPO}:v1"
    with new_store(tmp_path) as store:
        import_image(store, tmp_path, ref)
        store.push(ref, client_factory=factory_for())
        uploads = len(registry.finished_uploads)
        again = store.push(ref, client_factory=factory_for())
        assert (again.blobs_present, again.blobs_uploaded, again.blobs_mounted) == (6, 0, 0)
        assert len(registry.finished_uploads) == uploads
        other = f"{server.netloc}/team/other:v2"
        moved = store.push(ref, other, client_factory=factory_for())
        assert (moved.blobs_mounted, moved.blobs_uploaded) == (6, 0)
        assert moved.destination == other
    assert len(registry.finished_uploads) == uploads
    mounts = [r for r in server.requests_for("POST", "/team/other/") if "mount" in r.query]
    assert len(mounts) == 6 and all(r.query["from"] == [REPO] for r in mounts)
    assert "v2" in registry.manifests["team/other"]


def test_push_of_a_partial_index_pushes_an_index_of_what_is_there(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    ref = f"{server.netloc}/{REPO}:v1"
    with new_store(tmp_path) as store:
        top = import_image(store, tmp_path, ref, all_platforms=False)
        result = store.push(ref, client_factory=factory_for())
        assert str(result.digest) != top["digest"]
        assert [str(p) for p in result.platforms] == [HOST]
        assert len(result.warnings) == 1 and "1 of 2" in result.warnings[0]
        with pytest.raises(CargoholdError, match="not in the store"):
            store.push(ref, client_factory=factory_for(), platforms="all")
    index = json.loads(registry.manifests[REPO]["v1"][0])
    assert [m["platform"] for m in index["manifests"]] == [platform_json(HOST)]
    with new_store(tmp_path, "fresh") as fresh:
        assert fresh.pull(ref, platforms="all", client_factory=factory_for()).digest == (
            result.digest
        )


# -- failures leave the store unchanged ------------------------------------------------------


def _layer_digest(builder: ArchiveBuilder, top: dict[str, Any]) -> str:
    """The big layer of the host's manifest."""
    host = json.loads(builder.blobs[top["digest"]])["manifests"][0]
    return str(json.loads(builder.blobs[host["digest"]])["layers"][0]["digest"])


def _wrong_digest(registry: FakeRegistry, layer: str, **_: Any) -> None:
    data = bytearray(registry.blobs[REPO][layer])
    data[5000] ^= 1
    registry.blobs[REPO][layer] = bytes(data)


def _persistent_5xx_mid_blob(registry: FakeRegistry, layer: str, **_: Any) -> None:
    broken: list[int] = []
    data = registry.blobs[REPO][layer]

    def intercept(ex: Exchange) -> bool:
        if ex.method != "GET" or not ex.path.endswith(layer):
            return False
        if broken:
            ex.error(503, "UNAVAILABLE", "the backend is down")
            return True
        broken.append(1)
        ex.send_head(200, {"Content-Length": str(len(data))})
        ex.handler.wfile.write(data[: len(data) // 2])
        ex.close_connection()
        return True

    registry.interceptors.append(intercept)


def _huge_error_body(registry: FakeRegistry, layer: str, **_: Any) -> None:
    def intercept(ex: Exchange) -> bool:
        if ex.method != "GET" or not ex.path.endswith(layer):
            return False
        ex.send_head(400, {"Content-Type": "application/json", "Connection": "close"})
        ex.close_connection()
        try:
            ex.handler.wfile.write(b'{"errors": [{"code": "HUGE", "message": "')
            for _ in range(1_000_000):
                ex.handler.wfile.write(b"x" * 65536)
        except OSError:
            pass
        return True

    registry.interceptors.append(intercept)


def _referrers_refused(registry: FakeRegistry, layer: str, **_: Any) -> None:
    """The referrers API refuses (while the image's blobs download beside it)."""

    def intercept(ex: Exchange) -> bool:
        if ex.method != "GET" or "/referrers/" not in ex.path:
            return False
        ex.error(403, "DENIED", "no referrers for you")
        return True

    registry.interceptors.append(intercept)


FAILURES: dict[str, tuple[Callable[..., None], type[Exception], str]] = {
    "wrong-digest": (_wrong_digest, RegistryContentError, "does not match its digest"),
    "5xx-mid-blob": (_persistent_5xx_mid_blob, RegistryServerError, "UNAVAILABLE"),
    "huge-error-body": (_huge_error_body, RegistryError, r"HTTP 400"),
    "referrers-refused": (_referrers_refused, RegistryError, r"DENIED"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_failed_pull_leaves_the_store_unchanged(
    registry: FakeRegistry,
    server: FakeServer,
    published: tuple[ArchiveBuilder, dict[str, Any]],
    tmp_path: Path,
    failure: str,
) -> None:
    builder, top = published
    inject, error, message = FAILURES[failure]
    inject(registry, _layer_digest(builder, top))
    with new_store(tmp_path) as store:
        store.import_archive(archive(tmp_path / "other.tar", "example.com/already:here"))
        before = snapshot(store)
        start = time.monotonic()
        with pytest.raises(error, match=message):
            store.pull(f"{server.netloc}/{REPO}:v1", client_factory=factory_for())
        assert time.monotonic() - start < 10
        assert snapshot(store) == before


def test_cli_pull_abandons_a_trickling_registry(
    registry: FakeRegistry,
    server: FakeServer,
    published: tuple[ArchiveBuilder, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """--speed-limit/--speed-time: a layer trickled a few bytes at a time (for seconds, then
    all of it, so a pull without a floor would succeed) fails the pull at once, one line naming
    the blob and the registry, and the store is as it was (staging included)."""
    builder, top = published
    layer = _layer_digest(builder, top)

    def trickling(ex: Exchange) -> bool:
        if ex.method == "GET" and ex.path.endswith(layer):
            ex.trickle(registry.blob(layer) or b"")
            return True
        return False

    registry.interceptors.append(trickling)
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "other.tar", "example.com/already:here"))
        before = snapshot(store)
    ref = f"{server.netloc}/{REPO}:v1"
    floor = ["--speed-limit", "2000000", "--speed-time", "0.2"]
    line = assert_one_error_line(run(root, "image", "pull", "--plain-http", *floor, ref))
    assert f"{server.netloc}/{REPO}@{layer}: blob slower than 2000000 bytes/s for 0.2 s" in line
    with Store(root) as store:
        assert snapshot(store) == before

    registry.interceptors.clear()
    for command in (["pull", ref], ["push", ref, f"{server.netloc}/team/copy:v1"]):
        proc = run(root, "image", command[0], "--plain-http", "--speed-limit", "0",
                   "--speed-time", "5", *command[1:])  # fmt: skip
        assert proc.returncode == 0, proc.stderr


def test_default_client_factory_takes_the_floor() -> None:
    factory = functools.partial(default_client_factory, speed_limit=5, speed_time=2.5)
    with factory("localhost:5000") as client:
        assert (client.speed_limit, client.speed_time) == (5, 2.5)
    with default_client_factory("localhost:5000") as client:
        assert (client.speed_limit, client.speed_time) == (1024, 30.0)


def test_redirect_to_another_host_gets_no_authorization(tmp_path: Path) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    builder = ArchiveBuilder()
    top = multi_platform(builder)
    publish(registry, builder, top, REPO, "v1")

    def hostile_storage(ex: Exchange) -> None:
        ex.error(401, "UNAUTHORIZED", "send credentials", {"WWW-Authenticate": 'Basic realm="x"'})

    with (
        serve(registry, "127.0.0.1") as reg,
        serve(hostile_storage, "localhost") as storage,
        new_store(tmp_path) as store,
    ):
        registry.redirect_blobs_to = storage.url
        before = snapshot(store)
        with pytest.raises(AuthenticationError):
            store.pull(f"{reg.netloc}/{REPO}:v1", client_factory=factory_for(credentials=ALICE))
        assert snapshot(store) == before
    assert storage.requests and all("authorization" not in r.headers for r in storage.requests)
    assert reg.requests_for("GET", "/manifests/v1")[-1].headers["authorization"].startswith("Basic")


def test_token_realm_on_another_host_gets_no_credentials(tmp_path: Path) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = FakeRegistry(auth="bearer", tokens=tokens)
    builder = ArchiveBuilder()
    top = multi_platform(builder)
    publish(registry, builder, top, REPO, "v1")
    with (
        serve(registry, "127.0.0.1") as reg,
        serve(tokens, "localhost") as auth,
        new_store(tmp_path) as store,
    ):
        registry.realm = f"{auth.url}/token"
        before = snapshot(store)
        with pytest.raises(ForeignRealmError) as caught:
            store.pull(f"{reg.netloc}/{REPO}:v1", client_factory=factory_for(credentials=ALICE))
        assert PASSWORD not in str(caught.value)
        assert snapshot(store) == before
    assert auth.requests and all("authorization" not in r.headers for r in auth.requests)


def test_a_failing_download_stops_the_others(
    registry: FakeRegistry,
    server: FakeServer,
    published: tuple[ArchiveBuilder, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """The first failure cancels the downloads still running; none outlives the pull."""
    builder, top = published
    _wrong_digest(registry, _layer_digest(builder, top))
    with new_store(tmp_path) as store:
        with pytest.raises(RegistryContentError):
            store.pull(f"{server.netloc}/{REPO}:v1", client_factory=factory_for())
        assert not [t for t in threading.enumerate() if t.name.startswith("cargohold-transfer")]
        assert not list(store.blobs.ingest_dir.iterdir())


def test_is_loopback() -> None:
    for host in ("localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000", "a.localhost"):
        assert is_loopback(host), host
    for host in ("example.com", "10.0.0.1:5000", "127.example.com", "[::2]"):
        assert not is_loopback(host), host


# -- the command line ------------------------------------------------------------------------


def test_cli_pull_and_push(
    registry: FakeRegistry,
    server: FakeServer,
    published: tuple[ArchiveBuilder, dict[str, Any]],
    tmp_path: Path,
) -> None:
    _, top = published
    root = tmp_path / "root"
    ref = f"{server.netloc}/{REPO}:v1"
    proc = run(root, "image", "pull", "--plain-http", "--format", "json", ref)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {
        "name", "digest", "mediaType", "action", "platforms", "manifestsDownloaded",
        "blobsDownloaded", "bytesDownloaded", "blobsPresent", "referrers",
    }  # fmt: skip
    assert (doc["name"], doc["digest"], doc["action"]) == (ref, top["digest"], "created")

    dest = f"{server.netloc}/team/copy:v1"
    proc = run(root, "image", "push", "--plain-http", "--format", "json", ref, dest)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {
        "name", "destination", "digest", "mediaType", "platforms", "manifests",
        "blobsUploaded", "bytesUploaded", "blobsMounted", "blobsPresent", "referrers",
    }  # fmt: skip
    assert doc["destination"] == dest and doc["blobsMounted"] == 3
    # only the host's manifest is in the store: an index of it was pushed, with a warning
    assert "warning" in proc.stderr.decode() and doc["digest"] != top["digest"]

    proc = run(root, "image", "push", "--plain-http", "-q", ref, f"{server.netloc}/team/q:1")
    assert proc.returncode == 0 and proc.stdout == b""


def test_cli_pull_with_user_from_stdin(tmp_path: Path) -> None:
    registry = FakeRegistry(auth="basic", users=USERS)
    builder = ArchiveBuilder()
    publish(registry, builder, multi_platform(builder), REPO, "v1")
    with serve(registry) as reg:
        ref = f"{reg.netloc}/{REPO}:v1"
        root = tmp_path / "root"
        proc = run(root, "image", "pull", "--plain-http", "--user", "alice", "--password-stdin",
                   ref, stdin=PASSWORD.encode() + b"\n")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        wrong = run(root, "image", "pull", "--plain-http", "--user", "alice:nope", ref)
        line = assert_one_error_line(wrong)
        assert "authentication failed" in line and "nope" not in line


def test_cli_sends_credentials_to_a_token_host_only_with_trust_token_host(tmp_path: Path) -> None:
    tokens = TokenService(USERS, anonymous=False)
    registry = FakeRegistry(auth="bearer", tokens=tokens)
    builder = ArchiveBuilder()
    top = multi_platform(builder)
    publish(registry, builder, top, REPO, "v1")
    with serve(registry, "127.0.0.1") as reg, serve(tokens, "localhost") as auth:
        registry.realm = f"{auth.url}/token"
        ref = f"{reg.netloc}/{REPO}:v1"
        root = tmp_path / "root"
        pull = ["image", "pull", "--plain-http", "--user", f"alice:{PASSWORD}", ref]
        refused = run(root, *pull)
        assert PASSWORD not in assert_one_error_line(refused)
        assert all("authorization" not in r.headers for r in auth.requests)
        trusted = run(root, *pull[:2], "--trust-token-host", *pull[2:])
        assert trusted.returncode == 0, trusted.stderr
        assert any("authorization" in r.headers for r in auth.requests)


def test_cli_failures_are_one_line(server: FakeServer, tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = run(root, "image", "pull", "--plain-http", f"{server.netloc}/{REPO}:absent")
    assert "MANIFEST_UNKNOWN" in assert_one_error_line(proc)
    # plain HTTP to a registry that is not this machine is allowed, with one warning
    proc = run(root, "image", "pull", "--plain-http", "registry.invalid/app:1")
    warning, error = proc.stderr.decode().splitlines()
    assert proc.returncode == 1
    assert warning == (
        "cargohold: warning: registry.invalid is reached over plain HTTP: what is sent can be read"
    )
    assert "cannot resolve registry host registry.invalid" in error
    proc = run(root, "image", "push", "--plain-http", "example.com/absent:1")
    assert "not found" in assert_one_error_line(proc)


@pytest.mark.parametrize(
    ("options", "selected"),
    [([], {HOST}), (["--platform", OTHER], {OTHER}), (["--all-platforms"], {HOST, OTHER})],
    ids=["default", "one", "all"],
)
def test_cli_pull_selects_platforms(
    server: FakeServer,
    published: tuple[ArchiveBuilder, dict[str, Any]],
    tmp_path: Path,
    options: list[str],
    selected: set[str],
) -> None:
    ref = f"{server.netloc}/{REPO}:v1"
    proc = run(
        tmp_path / "root", "image", "pull", "--plain-http", "--format", "json", *options, ref
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["platforms"]) == selected


@pytest.mark.parametrize(
    ("options", "selected"),
    [([], {HOST, OTHER}), (["--platform", OTHER], {OTHER}), (["--all-platforms"], {HOST, OTHER})],
    ids=["default", "one", "all"],
)
def test_cli_push_selects_platforms(
    server: FakeServer,
    published: tuple[ArchiveBuilder, dict[str, Any]],
    tmp_path: Path,
    options: list[str],
    selected: set[str],
) -> None:
    root, ref = tmp_path / "root", f"{server.netloc}/{REPO}:v1"
    pulled = run(root, "image", "pull", "--plain-http", "-q", "--all-platforms", ref)
    assert pulled.returncode == 0, pulled.stderr
    dest = f"{server.netloc}/team/copy:v1"
    proc = run(root, "image", "push", "--plain-http", "--format", "json", *options, ref, dest)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["platforms"]) == selected
