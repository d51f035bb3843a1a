"""cargohold's CLI against the real peers: archives flow both ways with skopeo and containerd.

Every image here is the umoci-built one (see conftest.py); its manifest digest, as umoci wrote
it, is what every tool must report at every hop.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import cargohold

from imagefactory import digest_of
from streams import tar_members

if TYPE_CHECKING:
    from conftest import Containerd, OciLayout, Skopeo, Umoci

pytestmark = pytest.mark.interop

DEMO_REF = "example.com/umoci/demo:1.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


# --- helpers -------------------------------------------------------------------------------


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert that a cargohold command succeeded, showing its output if it did not."""
    assert result.returncode == 0, (
        f"{' '.join(str(arg) for arg in result.args[1:])} exited with {result.returncode}\n"
        f"--- stderr ---\n{result.stderr}\n--- stdout ---\n{result.stdout}"
    )
    return result


def import_json(archive: Path, root: Path, *options: str) -> dict[str, Any]:
    result = ok(cargohold("image", "import", "--format", "json", *options, str(archive), root=root))
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def list_json(root: Path) -> dict[str, dict[str, Any]]:
    """``image ls --format json``, by image name."""
    entries = json.loads(ok(cargohold("image", "ls", "--format", "json", root=root)).stdout)
    assert isinstance(entries, list), entries
    return {entry["name"]: entry for entry in entries}


def export(root: Path, out: Path, *refs: str) -> Path:
    ok(cargohold("image", "export", str(out), *refs, root=root))
    return out


def layout_tar(layout: OciLayout, out: Path) -> Path:
    """The umoci layout directory as a plain tar: an OCI archive whose ref name is a bare tag."""
    with tarfile.open(out, "w") as archive:
        for entry in sorted(layout.path.iterdir()):
            archive.add(entry, arcname=entry.name)
    return out


def image_platform(layout: OciLayout) -> str:
    config: dict[str, Any] = json.loads(layout.blob(layout.manifest()["config"]["digest"]))
    return f"{config['os']}/{config['architecture']}"


def platform_names(value: object) -> set[str]:
    """Platforms as ``os/arch[/variant]``, whether listed as strings or as OCI platform objects."""
    names: set[str] = set()
    for platform in value if isinstance(value, list) else [value]:
        if isinstance(platform, str):
            names.add(platform)
        elif isinstance(platform, dict):
            parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
            names.add("/".join(str(part) for part in parts if part))
    return names


def blob_sizes(layout: OciLayout) -> int:
    """Bytes of the manifest, its config and its layers: the content of the image."""
    manifest = layout.manifest()
    sizes = [layout.manifest_descriptor()["size"], manifest["config"]["size"]]
    sizes += [layer["size"] for layer in manifest["layers"]]
    return sum(sizes)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def demo_store(store: Path, oci_archive: Path) -> Path:
    """A store holding the skopeo ``oci-archive:`` of the umoci image."""
    import_json(oci_archive, store)
    return store


@pytest.fixture
def demo_export(demo_store: Path, tmp_path: Path) -> Path:
    """cargohold's export of :data:`DEMO_REF`."""
    return export(demo_store, tmp_path / "cargohold-export.tar", DEMO_REF)


# --- a. skopeo → cargohold ----------------------------------------------------------------


def test_imports_skopeo_oci_archive(store: Path, umoci_image: OciLayout, oci_archive: Path) -> None:
    report = import_json(oci_archive, store)

    images = {image["name"]: image for image in report["images"]}
    assert list(images) == [DEMO_REF]
    assert images[DEMO_REF]["digest"] == umoci_image.manifest_digest
    assert isinstance(images[DEMO_REF]["action"], str)
    assert images[DEMO_REF]["action"]
    assert report["blobs"] == 2 + len(umoci_image.manifest()["layers"])
    assert report["bytesWritten"] == blob_sizes(umoci_image)
    assert report["bytesDeduplicated"] == 0

    listed = list_json(store)
    assert list(listed) == [DEMO_REF]
    entry = listed[DEMO_REF]
    assert entry["digest"] == umoci_image.manifest_digest
    assert entry["mediaType"] == OCI_MANIFEST
    assert isinstance(entry["size"], int)
    assert entry["size"] > 0
    assert image_platform(umoci_image) in platform_names(entry["platforms"])
    assert isinstance(entry["createdAt"], str)
    assert isinstance(entry["updatedAt"], str)
    assert isinstance(entry["labels"], dict)

    quiet = ok(cargohold("image", "ls", "-q", root=store)).stdout.split()
    assert quiet == [DEMO_REF]


def test_reimport_writes_nothing_new(
    demo_store: Path, umoci_image: OciLayout, oci_archive: Path
) -> None:
    report = import_json(oci_archive, demo_store)

    assert [image["digest"] for image in report["images"]] == [umoci_image.manifest_digest]
    assert report["bytesWritten"] == 0
    assert report["bytesDeduplicated"] == blob_sizes(umoci_image)
    assert list(list_json(demo_store)) == [DEMO_REF]


def test_bare_tag_takes_the_file_name_or_base_name(
    store: Path, umoci_image: OciLayout, tmp_path: Path
) -> None:
    # umoci's own layout names its image by the bare tag "1.0".
    archive = layout_tar(umoci_image, tmp_path / "demo-layout.tar")

    import_json(archive, store)
    import_json(archive, store, "--base-name", "example.com/other/app")

    listed = list_json(store)
    assert set(listed) == {"docker.io/library/demo-layout:1.0", "example.com/other/app:1.0"}
    assert {entry["digest"] for entry in listed.values()} == {umoci_image.manifest_digest}


# --- b. cargohold → containerd ------------------------------------------------------------


def test_export_imports_into_containerd(
    containerd: Containerd, ctr_namespace: str, umoci_image: OciLayout, demo_export: Path
) -> None:
    files = tar_members(demo_export)
    assert {"index.json", "oci-layout", "manifest.json"} <= set(files)
    [docker_entry] = json.loads(files["manifest.json"])
    assert DEMO_REF in docker_entry["RepoTags"]

    containerd.ctr("image", "import", "--no-unpack", str(demo_export), namespace=ctr_namespace)

    images = containerd.images(ctr_namespace)
    assert list(images) == [DEMO_REF]
    assert images[DEMO_REF].digest == umoci_image.manifest_digest
    assert images[DEMO_REF].media_type == OCI_MANIFEST
    assert image_platform(umoci_image) in images[DEMO_REF].platforms


def test_normalised_names_reach_containerd(
    containerd: Containerd,
    ctr_namespace: str,
    store: Path,
    umoci_image: OciLayout,
    tmp_path: Path,
) -> None:
    name = "docker.io/library/demo-layout:1.0"
    import_json(layout_tar(umoci_image, tmp_path / "demo-layout.tar"), store)
    exported = export(store, tmp_path / "export.tar", name)

    containerd.ctr("image", "import", "--no-unpack", str(exported), namespace=ctr_namespace)

    images = containerd.images(ctr_namespace)
    assert list(images) == [name]
    assert images[name].digest == umoci_image.manifest_digest


# --- c. containerd → cargohold ------------------------------------------------------------


def test_imports_ctr_export(
    containerd: Containerd,
    ctr_namespace: str,
    store: Path,
    umoci_image: OciLayout,
    oci_archive: Path,
    tmp_path: Path,
) -> None:
    containerd.ctr("image", "import", "--no-unpack", str(oci_archive), namespace=ctr_namespace)
    ctr_export = tmp_path / "ctr-export.tar"
    containerd.ctr("image", "export", str(ctr_export), DEMO_REF, namespace=ctr_namespace)

    report = import_json(ctr_export, store)

    assert [(i["name"], i["digest"]) for i in report["images"]] == [
        (DEMO_REF, umoci_image.manifest_digest)
    ]
    listed = list_json(store)
    assert list(listed) == [DEMO_REF]
    assert listed[DEMO_REF]["digest"] == umoci_image.manifest_digest
    assert listed[DEMO_REF]["digest"] == containerd.images(ctr_namespace)[DEMO_REF].digest


def test_imports_ctr_export_of_a_docker_image(
    containerd: Containerd,
    ctr_namespace: str,
    store: Path,
    docker_archive: Path,
    tmp_path: Path,
) -> None:
    # ctr turns skopeo's `docker save` archive into a Docker schema 2 manifest of its own.
    containerd.ctr("image", "import", "--no-unpack", str(docker_archive), namespace=ctr_namespace)
    ctr_image = containerd.images(ctr_namespace)[DEMO_REF]
    assert ctr_image.media_type == DOCKER_MANIFEST
    ctr_export = tmp_path / "ctr-export.tar"
    containerd.ctr("image", "export", str(ctr_export), DEMO_REF, namespace=ctr_namespace)

    import_json(ctr_export, store)

    listed = list_json(store)
    assert list(listed) == [DEMO_REF]
    assert listed[DEMO_REF]["digest"] == ctr_image.digest
    assert listed[DEMO_REF]["mediaType"] == DOCKER_MANIFEST


# --- d. cargohold → skopeo (and umoci) ----------------------------------------------------


def test_skopeo_reads_export(
    skopeo: Skopeo, umoci_image: OciLayout, demo_export: Path, tmp_path: Path
) -> None:
    source = f"oci-archive:{demo_export}"
    assert skopeo.inspect(source)["Digest"] == umoci_image.manifest_digest
    assert digest_of(skopeo.raw_manifest(source)) == umoci_image.manifest_digest

    copied = tmp_path / "copied"
    skopeo.copy(source, f"oci:{copied}:x")

    blobs = {f"sha256:{path.name}" for path in (copied / "blobs" / "sha256").iterdir()}
    assert umoci_image.manifest_digest in blobs
    manifest = umoci_image.manifest()
    assert manifest["config"]["digest"] in blobs
    for layer in manifest["layers"]:
        assert layer["digest"] in blobs
    index = json.loads((copied / "index.json").read_text())
    tagged = [
        descriptor["digest"]
        for descriptor in index["manifests"]
        if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == "x"
    ]
    assert tagged == [umoci_image.manifest_digest]


def test_skopeo_reads_export_as_docker_archive(
    skopeo: Skopeo, umoci_image: OciLayout, demo_export: Path, tmp_path: Path
) -> None:
    # docker and podman read the export through manifest.json, as skopeo's docker-archive does.
    source = f"docker-archive:{demo_export}"
    inspected = skopeo.inspect(source)
    assert inspected["RepoTags"] == []  # skopeo reports no tags for a docker-archive source
    copied = tmp_path / "copied"
    skopeo.copy(source, f"oci:{copied}:x")
    # skopeo rebuilds the manifest and converts the config: the image content must survive
    manifest = umoci_image.manifest()
    members = tar_members(demo_export)
    config_hex = manifest["config"]["digest"].split(":")[1]
    diff_ids = json.loads(members[f"blobs/sha256/{config_hex}"])["rootfs"]["diff_ids"]
    documents = [
        json.loads(p.read_bytes())
        for p in (copied / "blobs" / "sha256").iterdir()
        if p.stat().st_size < 65536 and p.read_bytes().startswith(b"{")
    ]
    [copied_config] = [d for d in documents if "rootfs" in d]
    assert copied_config["rootfs"]["diff_ids"] == diff_ids
    [copied_manifest] = [d for d in documents if "layers" in d]
    assert len(copied_manifest["layers"]) == len(manifest["layers"])
    [entry] = json.loads(members["manifest.json"])
    assert entry["RepoTags"] == ["example.com/umoci/demo:1.0"]


def test_umoci_unpacks_export(
    skopeo: Skopeo, umoci: Umoci, demo_export: Path, tmp_path: Path
) -> None:
    copied = tmp_path / "copied"
    skopeo.copy(f"oci-archive:{demo_export}", f"oci:{copied}:x")

    rootfs = umoci.unpack(f"{copied}:x", tmp_path / "bundle")

    assert (rootfs / "etc" / "motd").read_text() == "Hello from a umoci image.\n"
    assert (rootfs / "srv" / "app" / "VERSION").read_text() == "1.0\n"
    assert (rootfs / "srv" / "app" / "data" / "nested.txt").read_text() == "changed in layer two\n"
    assert not (rootfs / "srv" / "app" / "obsolete.txt").exists()
    assert (rootfs / "srv" / "current").readlink() == Path("app/data")
    assert os.access(rootfs / "bin" / "hello", os.X_OK)


# --- e. reproducibility -------------------------------------------------------------------


def test_export_round_trip_is_byte_identical(demo_export: Path, tmp_path: Path) -> None:
    second_store = tmp_path / "second-store"
    import_json(demo_export, second_store)
    again = export(second_store, tmp_path / "again.tar", DEMO_REF)

    assert again.read_bytes() == demo_export.read_bytes()


def test_skopeo_selects_the_full_ref_name_in_an_export(
    skopeo: Skopeo, umoci_image: OciLayout, demo_store: Path, tmp_path: Path
) -> None:
    ok(cargohold("image", "tag", DEMO_REF, "example.com/team/app:v1", root=demo_store))
    out = export(demo_store, tmp_path / "out.tar", DEMO_REF, "example.com/team/app:v1")
    copied = tmp_path / "somewhere"
    skopeo.copy(f"oci-archive:{out}:example.com/team/app:v1", f"oci:{copied}")
    [descriptor] = json.loads((copied / "index.json").read_text())["manifests"]
    assert descriptor["digest"] == umoci_image.manifest_digest


def test_umoci_lists_two_images_tagged_latest_apart(
    umoci: Umoci, demo_store: Path, tmp_path: Path
) -> None:
    names = ["example.com/a/app:latest", "example.com/b/app:latest"]
    for name in names:
        ok(cargohold("image", "tag", DEMO_REF, name, root=demo_store))
    layout = tmp_path / "layout"
    ok(cargohold("image", "export", f"oci:{layout}", *names, root=demo_store))
    assert sorted(umoci.run("ls", "--layout", str(layout)).stdout.split()) == names
