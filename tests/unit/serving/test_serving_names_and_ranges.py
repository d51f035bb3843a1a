"""The pure parts of the server: which stored repository a request means, the Range header,
the media type of a manifest asked for by digest."""

from __future__ import annotations

import json

import pytest

from cargohold.errors import ApiError, InvalidReferenceError
from cargohold.serving.content import OCI_INDEX, OCI_MANIFEST, sniff_media_type
from cargohold.serving.names import request_name, store_repository
from cargohold.serving.ranges import requested_range


@pytest.mark.parametrize(
    ("name", "ns", "repository"),
    [
        ("alpine", None, "docker.io/library/alpine"),
        ("library/alpine", None, "docker.io/library/alpine"),
        ("library/alpine", "docker.io", "docker.io/library/alpine"),
        ("alpine", "registry-1.docker.io", "docker.io/library/alpine"),
        ("team/app", "example.com", "example.com/team/app"),
        ("team/app", "localhost:5000", "localhost:5000/team/app"),
        ("example.com/team/app", None, "example.com/team/app"),
        ("user/app", None, "docker.io/user/app"),
    ],
)
def test_store_repository(name: str, ns: str | None, repository: str) -> None:
    assert store_repository(name, ns) == repository


@pytest.mark.parametrize(
    ("name", "ns"),
    [("..", None), ("a/../b", None), ("UP", None), ("app:tag", None), ("app", "bad_host!"),
     ("a@sha256:00", None), ("", "example.com")],
)  # fmt: skip
def test_names_that_are_refused(name: str, ns: str | None) -> None:
    with pytest.raises(InvalidReferenceError):
        store_repository(name, ns)


def test_request_names_in_the_catalog() -> None:
    assert request_name("docker.io/library/alpine", None) == "library/alpine"
    assert request_name("example.com/team/app", None) == "example.com/team/app"
    assert request_name("example.com/team/app", "example.com") == "team/app"
    assert request_name("docker.io/library/alpine", "docker.io") == "library/alpine"
    assert request_name("example.com/team/app", "ghcr.io") is None


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=90-200", (90, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=9-5", None),
        ("bytes=0-1,3-4", None),
        ("lines=0-1", None),
        ("bytes=-", None),
        ("bytes=" + "9" * 30 + "-", None),
    ],
)
def test_requested_range(header: str | None, span: tuple[int, int] | None) -> None:
    assert requested_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        requested_range(header, 100)
    assert caught.value.status == 416
    assert caught.value.headers == {"Content-Range": "bytes */100"}


def test_media_type_of_a_document_asked_for_by_digest() -> None:
    def doc(value: object) -> bytes:
        return json.dumps(value).encode()

    docker = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = {"schemaVersion": 2, "config": {}, "layers": []}
    assert sniff_media_type(doc(manifest)) == OCI_MANIFEST
    assert sniff_media_type(doc({**manifest, "mediaType": docker})) == docker
    assert sniff_media_type(doc({"schemaVersion": 2, "manifests": []})) == OCI_INDEX
    assert sniff_media_type(doc({"architecture": "amd64", "rootfs": {}})) is None
    assert sniff_media_type(doc({"schemaVersion": 1, "manifests": []})) is None
    assert sniff_media_type(b"\x1f\x8b not json") is None
