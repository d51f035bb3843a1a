"""The interop harness, checked without cargohold: the peers agree with one another.

If these fail, the machine or the harness is broken, not cargohold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from imagefactory import digest_of
from streams import tar_members

if TYPE_CHECKING:
    from conftest import Containerd, OciLayout, Skopeo

pytestmark = pytest.mark.interop

DEMO_REF = "example.com/umoci/demo:1.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def image_platform(layout: OciLayout) -> str:
    config: dict[str, Any] = json.loads(layout.blob(layout.manifest()["config"]["digest"]))
    return f"{config['os']}/{config['architecture']}"


def test_containerd_answers_version(containerd: Containerd) -> None:
    output = containerd.ctr("version").stdout
    assert "Server:" in output
    assert "Version:" in output.split("Server:", 1)[1]


def test_umoci_builds_a_two_layer_image(umoci_image: OciLayout) -> None:
    assert json.loads((umoci_image.path / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    descriptor = umoci_image.manifest_descriptor()
    assert descriptor["mediaType"] == OCI_MANIFEST
    manifest = umoci_image.manifest()
    assert len(manifest["layers"]) == 2
    config = json.loads(umoci_image.blob(manifest["config"]["digest"]))
    assert config["config"]["Cmd"] == ["/bin/hello"]
    assert "A=1" in config["config"]["Env"]
    assert len(config["rootfs"]["diff_ids"]) == 2


def test_skopeo_oci_archive_keeps_the_manifest(
    skopeo: Skopeo, umoci_image: OciLayout, oci_archive: Path
) -> None:
    files = tar_members(oci_archive)
    assert "oci-layout" in files
    index = json.loads(files["index.json"])
    [descriptor] = index["manifests"]
    assert descriptor["digest"] == umoci_image.manifest_digest
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == DEMO_REF

    raw = skopeo.raw_manifest(f"oci-archive:{oci_archive}")
    assert digest_of(raw) == umoci_image.manifest_digest
    assert skopeo.inspect(f"oci-archive:{oci_archive}")["Digest"] == umoci_image.manifest_digest


def test_oci_archive_imports_into_containerd(
    containerd: Containerd, ctr_namespace: str, umoci_image: OciLayout, oci_archive: Path
) -> None:
    containerd.ctr("image", "import", "--no-unpack", str(oci_archive), namespace=ctr_namespace)

    images = containerd.images(ctr_namespace)
    assert list(images) == [DEMO_REF]
    image = images[DEMO_REF]
    assert image.digest == umoci_image.manifest_digest
    assert image.media_type == OCI_MANIFEST
    assert image_platform(umoci_image) in image.platforms
    quiet = containerd.ctr("image", "ls", "-q", namespace=ctr_namespace).stdout.split()
    assert quiet == [DEMO_REF]


def test_ctr_export_is_an_oci_layout_that_skopeo_and_ctr_read(
    containerd: Containerd,
    ctr_namespace: str,
    skopeo: Skopeo,
    umoci_image: OciLayout,
    oci_archive: Path,
    tmp_path: Path,
) -> None:
    containerd.ctr("image", "import", "--no-unpack", str(oci_archive), namespace=ctr_namespace)
    exported = tmp_path / "ctr-export.tar"
    containerd.ctr("image", "export", str(exported), DEMO_REF, namespace=ctr_namespace)

    files = tar_members(exported)
    assert {"index.json", "oci-layout", "manifest.json"} <= set(files)
    [descriptor] = json.loads(files["index.json"])["manifests"]
    assert descriptor["digest"] == umoci_image.manifest_digest
    assert descriptor["annotations"]["io.containerd.image.name"] == DEMO_REF
    digest_hex = umoci_image.manifest_digest.removeprefix("sha256:")
    assert files[f"blobs/sha256/{digest_hex}"] == umoci_image.blob(umoci_image.manifest_digest)

    inspected = skopeo.inspect(f"oci-archive:{exported}")
    assert inspected["Digest"] == umoci_image.manifest_digest
    assert digest_of(skopeo.raw_manifest(f"oci-archive:{exported}")) == umoci_image.manifest_digest

    # ctr reads its own export back by index.json, not by the Docker manifest.json beside it.
    again = f"{ctr_namespace}-again"
    containerd.ctr("image", "import", "--no-unpack", str(exported), namespace=again)
    assert containerd.images(again)[DEMO_REF].digest == umoci_image.manifest_digest


def test_docker_archive_imports_into_containerd(
    containerd: Containerd, ctr_namespace: str, umoci_image: OciLayout, docker_archive: Path
) -> None:
    files = tar_members(docker_archive)
    [entry] = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == [DEMO_REF]

    containerd.ctr("image", "import", "--no-unpack", str(docker_archive), namespace=ctr_namespace)
    image = containerd.images(ctr_namespace)[DEMO_REF]
    assert image.media_type == DOCKER_MANIFEST
    assert image_platform(umoci_image) in image.platforms
    manifest = json.loads(
        containerd.ctr("content", "get", image.digest, namespace=ctr_namespace).stdout
    )
    # The same config (and so the same image) under a Docker manifest that ctr wrote.
    assert manifest["config"]["digest"] == umoci_image.manifest()["config"]["digest"]
