"""Referrers between the fake registry and the store: the referrers API where the registry has
it, the tag schema where it has not, cosign's tags either way; listings are only hints."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.operations import referrer_transfer
from cargohold.operations.store import Store
from fakeregistry import Exchange, FakeRegistry, FakeServer, serve
from imagefactory import OCI_INDEX, OCI_MANIFEST, ArchiveBuilder, digest_of, dumps
from registryhelpers import REPO, factory_for, publish
from signing import Artifact, new_key, sbom, sig_tag, signature
from snapshots import HOST, OTHER


def referrers_api(registry: FakeRegistry) -> Callable[[Exchange], bool]:
    """An OCI 1.1 referrers API over the fake registry's manifests."""

    def answer(ex: Exchange) -> bool:
        prefix, marker, subject = ex.path.rpartition("/referrers/")
        if not marker or ex.method != "GET":
            return False
        repo = prefix.removeprefix("/v2/")
        listed = []
        for ref, (data, media_type) in sorted(registry.manifests.get(repo, {}).items()):
            if ":" not in ref or media_type != OCI_MANIFEST:
                continue
            doc = json.loads(data)
            if doc.get("subject", {}).get("digest") == subject:
                entry = {"mediaType": media_type, "digest": ref, "size": len(data)}
                entry["artifactType"] = doc.get("artifactType") or doc["config"]["mediaType"]
                listed.append(entry)
        body = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed})
        ex.respond(200, body, {"Content-Type": OCI_INDEX})
        return True

    return answer


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def server(registry: FakeRegistry) -> Iterator[FakeServer]:
    with serve(registry) as server:
        yield server


def put(registry: FakeRegistry, artifact: Artifact, tag: str | None = None) -> None:
    for data in artifact.blobs.values():
        registry.add_blob(REPO, data)
    registry.add_manifest(REPO, tag, artifact.manifest, OCI_MANIFEST)


def published_index(registry: FakeRegistry) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    builder = ArchiveBuilder()
    manifests = []
    for platform in (HOST, OTHER):
        desc = builder.image(platform)
        desc["platform"] = {"os": platform.split("/")[0], "architecture": platform.split("/")[1]}
        manifests.append(desc)
    top = builder.index(manifests)
    publish(registry, builder, top, REPO, "v1")
    return top, manifests


def test_pull_asks_the_referrers_api_for_the_index_and_the_pulled_manifests(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    registry.interceptors.append(referrers_api(registry))
    top, (host, other) = published_index(registry)
    on_index, on_host, on_other = sbom(top, "index"), sbom(host, "host"), sbom(other, "other")
    for artifact in (on_index, on_host, on_other):
        put(registry, artifact)
    sig = signature(top["digest"], f"{server.netloc}/{REPO}", new_key())
    put(registry, sig, sig_tag(top["digest"]))
    name = f"{server.netloc}/{REPO}:v1"
    with Store(tmp_path / "s") as store:
        result = store.pull(name, client_factory=factory_for())
        assert result.referrers == 3
        # the image's 2 blobs, then (found while they downloaded) the referrers' 5
        assert (result.blobs_downloaded, result.blobs_present) == (7, 0)
        kept = {str(r.digest) for r in store.referrers(name)}
        assert kept == {on_index.digest, sig.digest}
        assert [str(r.digest) for r in store.referrers(host["digest"])] == [on_host.digest]
        assert store.referrers(other["digest"]) == []  # its manifest was not pulled either
    tag_schema = "/manifests/" + top["digest"].replace(":", "-")
    assert not [r for r in server.requests_for("GET", tag_schema) if r.path.endswith(tag_schema)]


def test_a_listed_referrer_whose_subject_is_another_image_is_left_out(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    publish(registry, builder, image, REPO, "v1")
    stranger = sbom({"mediaType": OCI_MANIFEST, "digest": digest_of(b"other"), "size": 5})
    put(registry, stranger)
    listing = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": stranger.digest,
                       "size": len(stranger.manifest)}],
    }  # fmt: skip
    registry.add_manifest(REPO, image["digest"].replace(":", "-"), dumps(listing), OCI_INDEX)
    name = f"{server.netloc}/{REPO}:v1"
    with Store(tmp_path / "s") as store:
        result = store.pull(name, client_factory=factory_for())
        assert result.referrers == 0
        assert any("its subject is not" in w for w in result.warnings)
        assert store.referrers(name) == []


def test_push_writes_the_tag_schema_only_where_there_is_no_referrers_api(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path
) -> None:
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    publish(registry, builder, image, REPO, "v1")
    bom = sbom(image)
    put(registry, bom)
    tag = image["digest"].replace(":", "-")
    listing = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": bom.digest, "size": len(bom.manifest)}],
    }
    registry.add_manifest(REPO, tag, dumps(listing), OCI_INDEX)
    name = f"{server.netloc}/{REPO}:v1"
    with Store(tmp_path / "s") as store:
        store.pull(name, client_factory=factory_for())
        # a registry without the API: the listing at the tag, merged with what is there
        elsewhere = FakeRegistry()
        earlier = sbom(image, "earlier")
        for data in earlier.blobs.values():
            elsewhere.add_blob("copy", data)
        elsewhere.add_manifest("copy", None, earlier.manifest, OCI_MANIFEST)
        old = {**listing, "manifests": [earlier.descriptor()]}
        elsewhere.add_manifest("copy", tag, dumps(old), OCI_INDEX)
        with serve(elsewhere) as other:
            pushed = store.push(name, f"{other.netloc}/copy:v1", client_factory=factory_for())
        assert pushed.referrers == 1
        written = json.loads(elsewhere.manifests["copy"][tag][0])
        assert [m["digest"] for m in written["manifests"]] == [earlier.digest, bom.digest]
        assert written["manifests"][1]["artifactType"] == "application/spdx+json"
        assert bom.digest in elsewhere.manifests["copy"]
        # a registry with the API lists the referrer itself: no tag is written
        with_api = FakeRegistry()
        with_api.interceptors.append(referrers_api(with_api))
        with serve(with_api) as third:
            store.push(name, f"{third.netloc}/copy:v1", client_factory=factory_for())
        assert bom.digest in with_api.manifests["copy"]
        assert tag not in with_api.manifests["copy"]


def test_a_pull_follows_at_most_the_limit_of_referrers_and_says_so(
    registry: FakeRegistry, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry listing more referrers than the limit is hostile: the pull keeps the first
    ones, follows nothing past the limit (not even their own referrers) and warns once."""
    monkeypatch.setattr(referrer_transfer, "MAX_REFERRERS", 3)
    registry.interceptors.append(referrers_api(registry))
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    publish(registry, builder, image, REPO, "v1")
    boms = [sbom(image, f"document {i}") for i in range(5)]
    for artifact in boms:
        put(registry, artifact)
    put(registry, sbom(json.loads(json.dumps(boms[0].descriptor())), "of a document"))
    name = f"{server.netloc}/{REPO}:v1"
    with Store(tmp_path / "s") as store:
        result = store.pull(name, client_factory=factory_for())
        assert result.referrers == 3
        assert [w for w in result.warnings if "referrers" in w] == [
            f"{REPO}: more than 3 referrers; the rest are left"
        ]
        assert len(store.referrers(name)) == 3
