"""Archive shapes written by the real tools, imported by cargohold and compared with containerd.

A docker archive carries no manifest, so every importer has to build one; cargohold builds the
one containerd 1.6 builds, byte for byte, so that an image keeps its digest whichever of the two
imported it. The umoci layout directory is imported as it lies on disk.

skopeo 1.9.3 cannot write an archive holding two images: a second ``skopeo copy`` into an
existing ``docker-archive:`` fails with "docker-archive doesn't support modifying existing
images". What it can write is one image under several names (``--additional-tag``), which is
tested here; archives of several images are covered by tests/integration/test_archive_shapes.py.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zstandard

from cargohold import Store
from cargohold.oci.digests import Digest
from cargohold.oci.platforms import Platform
from imagefactory import digest_of
from streams import pipe_reader

if TYPE_CHECKING:
    from conftest import Containerd, OciLayout, Skopeo

pytestmark = pytest.mark.interop

DEMO_REF = "example.com/umoci/demo:1.0"
EXTRA_REF = "example.com/umoci/demo:extra"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def stored(store: Store, digest: str | Digest) -> bytes:
    return store.blobs.read_blob(Digest.parse(str(digest)), 1 << 24)


def ctr_blob(containerd: Containerd, namespace: str, digest: str) -> bytes:
    """The bytes of a blob in containerd's content store (JSON documents only)."""
    return containerd.ctr("content", "get", digest, namespace=namespace).stdout.encode()


def ctr_import(containerd: Containerd, namespace: str, archive: Path) -> dict[str, str]:
    """``ctr image import --no-unpack``; the digest of every image it created, by name."""
    containerd.ctr("image", "import", "--no-unpack", str(archive), namespace=namespace)
    return {name: image.digest for name, image in containerd.images(namespace).items()}


def umoci_config(layout: OciLayout) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(layout.blob(layout.manifest()["config"]["digest"]))
    return config


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as s:
        yield s


# --- skopeo docker-archive ----------------------------------------------------------------


def test_skopeo_docker_archive_gets_containerds_manifest(
    containerd: Containerd,
    ctr_namespace: str,
    store: Store,
    docker_archive: Path,
    umoci_image: OciLayout,
) -> None:
    result = store.import_archive(docker_archive)
    ctr_digests = ctr_import(containerd, ctr_namespace, docker_archive)

    [imported] = result.images
    assert imported.name == DEMO_REF
    assert ctr_digests == {DEMO_REF: str(imported.digest)}
    ours = stored(store, imported.digest)
    assert ours == ctr_blob(containerd, ctr_namespace, str(imported.digest))
    assert store.resolve(DEMO_REF).media_type == DOCKER_MANIFEST
    manifest = json.loads(ours)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    # skopeo keeps umoci's config and writes the layers uncompressed: their digests are the
    # config's diff_ids, and they are labelled as plain tars
    assert manifest["config"] == {
        "mediaType": DOCKER_CONFIG,
        "digest": umoci_image.manifest()["config"]["digest"],
        "size": umoci_image.manifest()["config"]["size"],
    }
    assert [layer["digest"] for layer in manifest["layers"]] == umoci_config(umoci_image)["rootfs"][
        "diff_ids"
    ]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER}


def test_skopeo_docker_archive_links_its_legacy_layer_paths(docker_archive: Path) -> None:
    # the shape the import relies on: layers stored once, legacy paths as symbolic links
    with tarfile.open(docker_archive) as tar:
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
        regular = {m.name for m in tar.getmembers() if m.isfile()}
    assert links, "skopeo wrote no <id>/layer.tar links"
    for name, target in links.items():
        assert name.endswith("/layer.tar")
        assert target.startswith("../")
        assert target.removeprefix("../") in regular


def test_skopeo_docker_archive_from_a_pipe(store: Store, docker_archive: Path) -> None:
    with Store(store.root.parent / "from-path") as by_path:
        expected = [(i.name, i.digest) for i in by_path.import_archive(docker_archive).images]

    with pipe_reader(docker_archive.read_bytes()) as reader:
        result = store.import_archive(reader)

    assert [(i.name, i.digest) for i in result.images] == expected


def test_skopeo_docker_archive_with_an_additional_tag(
    containerd: Containerd,
    ctr_namespace: str,
    store: Store,
    skopeo: Skopeo,
    umoci_image: OciLayout,
    docker_archive: Path,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "two-names.tar"
    skopeo.run(
        "copy",
        "--quiet",
        "--additional-tag",
        EXTRA_REF,
        f"oci:{umoci_image.image}",
        f"docker-archive:{archive}:{DEMO_REF}",
    )
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile("manifest.json")
        assert extracted is not None
        [entry] = json.loads(extracted.read())
    assert entry["RepoTags"] == [DEMO_REF, EXTRA_REF]
    with Store(tmp_path / "single") as single:
        [one] = single.import_archive(docker_archive).images

    result = store.import_archive(archive)
    ctr_digests = ctr_import(containerd, ctr_namespace, archive)

    assert [(i.name, i.digest) for i in result.images] == [
        (DEMO_REF, one.digest),
        (EXTRA_REF, one.digest),
    ]
    assert ctr_digests == {DEMO_REF: str(one.digest), EXTRA_REF: str(one.digest)}


def test_skopeo_cannot_add_a_second_image_to_a_docker_archive(
    skopeo: Skopeo, umoci_image: OciLayout, docker_archive: Path, tmp_path: Path
) -> None:
    # why no skopeo-written multi-image archive is tested: if skopeo learns to write one,
    # this fails and the multi-image case should be added here
    archive = tmp_path / "copy.tar"
    archive.write_bytes(docker_archive.read_bytes())

    with pytest.raises(
        subprocess.CalledProcessError, match="doesn't support modifying existing images"
    ):
        skopeo.copy(f"oci:{umoci_image.image}", f"docker-archive:{archive}:example.com/other:2")


# --- umoci layout directory ---------------------------------------------------------------


def test_umoci_layout_directory_imports_directly(store: Store, umoci_image: OciLayout) -> None:
    before = sorted(p.relative_to(umoci_image.path) for p in umoci_image.path.rglob("*"))

    result = store.import_archive(umoci_image.path)
    renamed = store.import_archive(umoci_image.path, base_name="example.com/umoci/direct")

    # umoci names its image by the bare tag: the directory's name is the repository
    base = f"docker.io/library/{umoci_image.path.name}"
    assert [(i.name, str(i.digest)) for i in result.images] == [
        (f"{base}:{umoci_image.tag}", umoci_image.manifest_digest)
    ]
    assert [(i.name, str(i.digest)) for i in renamed.images] == [
        (f"example.com/umoci/direct:{umoci_image.tag}", umoci_image.manifest_digest)
    ]
    manifest = umoci_image.manifest()
    for digest in [umoci_image.manifest_digest, manifest["config"]["digest"]] + [
        layer["digest"] for layer in manifest["layers"]
    ]:
        assert stored(store, digest) == umoci_image.blob(digest)
    config = umoci_config(umoci_image)
    listed = {info.record.name: info for info in store.list_images()}
    assert set(listed) == {
        f"{base}:{umoci_image.tag}",
        f"example.com/umoci/direct:{umoci_image.tag}",
    }
    for info in listed.values():
        assert Platform(config["os"], config["architecture"]) in info.platforms
    # the layout was read, never written
    assert sorted(p.relative_to(umoci_image.path) for p in umoci_image.path.rglob("*")) == before


# --- docker archives built here, against containerd ---------------------------------------


def _layer(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = name.encode() * 40
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _docker_archive(path: Path, compress: Callable[[bytes], bytes], suffix: str) -> Path:
    """A crane-style docker archive of a two-layer image for this host, named ``foo:1``."""
    host = Platform.host()
    layers = [_layer("a.txt"), _layer("b.txt")]
    config = json.dumps(
        {
            "architecture": host.architecture,
            "os": host.os,
            "config": {"Cmd": ["/bin/sh"]},
            "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer) for layer in layers]},
        }
    ).encode()
    members = [(digest_of(config).removeprefix("sha256:") + ".json", config)]
    for layer in layers:
        blob = compress(layer)
        members.append((digest_of(blob).removeprefix("sha256:") + suffix, blob))
    item = {"Config": members[0][0], "RepoTags": ["foo:1"], "Layers": [n for n, _ in members[1:]]}
    members.append(("manifest.json", json.dumps([item]).encode()))
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("compression", "layer_type"),
    [("none", DOCKER_LAYER), ("gzip", DOCKER_LAYER_GZIP)],
)
def test_built_docker_archive_gets_containerds_manifest(
    containerd: Containerd,
    ctr_namespace: str,
    store: Store,
    tmp_path: Path,
    compression: str,
    layer_type: str,
) -> None:
    compress: Callable[[bytes], bytes] = (
        (lambda data: data) if compression == "none" else (lambda d: gzip.compress(d, mtime=0))
    )
    archive = _docker_archive(tmp_path / "foo.tar", compress, ".tar")

    [imported] = store.import_archive(archive).images
    ctr_digests = ctr_import(containerd, ctr_namespace, archive)

    assert ctr_digests == {"docker.io/library/foo:1": str(imported.digest)}
    ours = stored(store, imported.digest)
    assert ours == ctr_blob(containerd, ctr_namespace, str(imported.digest))
    assert {layer["mediaType"] for layer in json.loads(ours)["layers"]} == {layer_type}


def test_zstd_docker_layers_differ_from_containerd_only_in_their_label(
    containerd: Containerd, ctr_namespace: str, store: Store, tmp_path: Path
) -> None:
    # containerd 1.6 labels every compressed docker-archive layer gzip, zstd included;
    # cargohold labels zstd layers zstd, so the manifests differ in exactly that
    archive = _docker_archive(tmp_path / "foo.tar", zstandard.ZstdCompressor().compress, ".tar")

    [imported] = store.import_archive(archive).images
    ctr_digest = ctr_import(containerd, ctr_namespace, archive)["docker.io/library/foo:1"]

    ours = stored(store, imported.digest)
    theirs = ctr_blob(containerd, ctr_namespace, ctr_digest)
    assert ctr_digest != str(imported.digest)
    assert DOCKER_LAYER_GZIP.encode() not in ours
    assert ours.replace(OCI_LAYER_ZSTD.encode(), DOCKER_LAYER_GZIP.encode()) == theirs
