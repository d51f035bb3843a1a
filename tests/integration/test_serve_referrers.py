"""``cargohold serve`` and referrers: the referrers API, the tag schema and cosign's tags,
answered from what the store keeps, and checked by a verifier that is not cargohold's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cargohold.operations.store import Store
from imagefactory import OCI_INDEX, ArchiveBuilder, digest_of
from servehelpers import serving
from signing import SPDX, add_artifact, independent_verify, new_key, public_pem, sbom, sig_tag
from signing import signature as cosign_signature
from snapshots import HOST

REPO = "registry.example/team/app"


@dataclass(frozen=True)
class Signed:
    client: httpx.Client
    image: str
    signature: str
    sbom: str
    public_key: bytes


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    work = tmp_path_factory.mktemp("serve-referrers")
    key = new_key()
    builder = ArchiveBuilder()
    image: dict[str, Any] = builder.image(HOST)
    builder.add(image, name=f"{REPO}:1")
    sig = cosign_signature(image["digest"], REPO, key)
    add_artifact(builder, sig, ref_name=sig_tag(image["digest"]))
    bom = sbom(image)
    add_artifact(builder, bom)
    root = work / "store"
    with Store(root) as store:
        store.import_archive(builder.write(work / "signed.tar"))
    with serving(root) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Signed(client, image["digest"], sig.digest, bom.digest, public_pem(key))


def test_the_referrers_api_lists_the_oci_referrers(signed: Signed) -> None:
    response = signed.client.get(f"/v2/{REPO}/referrers/{signed.image}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == OCI_INDEX
    index = response.json()
    assert [m["digest"] for m in index["manifests"]] == [signed.sbom]
    assert index["manifests"][0]["artifactType"] == SPDX
    sbom_doc = signed.client.get(f"/v2/{REPO}/manifests/{signed.sbom}")
    assert sbom_doc.status_code == 200
    assert json.loads(sbom_doc.content)["subject"]["digest"] == signed.image


def test_the_referrers_api_filters_by_artifact_type(signed: Signed) -> None:
    kept = signed.client.get(f"/v2/{REPO}/referrers/{signed.image}", params={"artifactType": SPDX})
    assert kept.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in kept.json()["manifests"]] == [signed.sbom]
    none = signed.client.get(
        f"/v2/{REPO}/referrers/{signed.image}", params={"artifactType": "text/other"}
    )
    assert none.status_code == 200 and none.json()["manifests"] == []


def test_a_subject_without_referrers_has_an_empty_index(signed: Signed) -> None:
    unknown = "sha256:" + "0" * 64
    response = signed.client.get(f"/v2/{REPO}/referrers/{unknown}")
    assert response.status_code == 200
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    bad = signed.client.get(f"/v2/{REPO}/referrers/sha256:nothex")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_the_tag_schema_tag_lists_the_referrers(signed: Signed) -> None:
    tag = signed.image.replace(":", "-")
    response = signed.client.get(f"/v2/{REPO}/manifests/{tag}")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest_of(response.content)
    assert [m["digest"] for m in response.json()["manifests"]] == [signed.sbom]


def test_cosigns_signature_tag_verifies_without_cargohold(signed: Signed) -> None:
    """What cosign does against a registry: the ``.sig`` tag, its payload blob, the key."""
    response = signed.client.get(f"/v2/{REPO}/manifests/{sig_tag(signed.image)}")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == signed.signature

    def read(digest: str) -> bytes:
        blob = signed.client.get(f"/v2/{REPO}/blobs/{digest}")
        assert blob.status_code == 200
        return blob.content

    assert independent_verify(response.content, read, signed.image, signed.public_key)
    other = "sha256:" + "1" * 64
    missing = signed.client.get(f"/v2/{REPO}/manifests/{sig_tag(other)}")
    assert missing.status_code == 404
