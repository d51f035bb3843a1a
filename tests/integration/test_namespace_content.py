"""What each namespace holds, and reachability: content is stored once, but a namespace only
uses the blobs it received; collection follows every way a digest is reached; a damaged copy in
the store is replaced by a verified one."""

from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cargohold.errors import CargoholdError, DamagedBlobError, InvalidArchiveError
from cargohold.oci.digests import Digest
from cargohold.operations.context import STORE_FORMAT
from cargohold.operations.store import Store
from clisupport import assert_one_error_line, run
from dockerimages import DockerImage, classic_save
from imagefactory import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    layer_tar,
)
from snapshots import HOST, snapshot
from streams import tar_bytes

NAMESPACES = ["default", "other"]


def blob_path(store: Store, digest: str) -> Path:
    return store.blobs.path(Digest.parse(digest))


def overwrite(path: Path, data: bytes) -> None:
    """Damage a stored blob as a disk fault or a careless hand would."""
    os.chmod(path, 0o644)
    path.write_bytes(data)


def victim_archive(tmp_path: Path, name: str = "example.com/victim:1") -> tuple[Path, Any]:
    builder = ArchiveBuilder()
    desc = builder.image(HOST, layers=2)
    builder.add(desc, name)
    return builder.write(tmp_path / f"{name.replace('/', '_')}.tar"), desc


def archive_naming_as_layer(tmp_path: Path, data: bytes, name: str) -> Path:
    """An image whose only layer is *data* (another image's manifest, byte for byte)."""
    builder = ArchiveBuilder()
    config = builder.blob(dumps({"architecture": "amd64", "os": "linux"}), OCI_CONFIG)
    layer = builder.blob(data, OCI_LAYER_GZIP)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    builder.add(builder.blob(dumps(manifest), OCI_MANIFEST), name)
    return builder.write(tmp_path / "names-a-manifest.tar")


def unrelated(store: Store, tmp_path: Path) -> None:
    """Import an unrelated image and remove it: the removal collects garbage."""
    builder = ArchiveBuilder()
    builder.add(builder.image(HOST, files={"unrelated": b"u"}), "example.com/unrelated:1")
    store.import_archive(builder.write(tmp_path / "unrelated.tar"))
    assert store.remove(["example.com/unrelated:1"]).gc is not None


def complete(store: Store, name: str) -> bool:
    return all(c.status == "complete" for c in store.check([name], verify=True))


# -- reachability: a digest reached as a layer and as a manifest ------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("victim_first", [True, False], ids=["victim-first", "victim-last"])
def test_gc_keeps_a_manifest_that_another_image_names_as_a_layer(
    tmp_path: Path, namespace: str, victim_first: bool
) -> None:
    victim, desc = victim_archive(tmp_path)
    claimer = archive_naming_as_layer(
        tmp_path, _manifest_bytes(victim, desc["digest"]), "example.com/claimer:1"
    )
    root = tmp_path / "root"
    with Store(root) as store, Store(root, namespace) as other:
        if victim_first:
            store.import_archive(victim)
        other.import_archive(claimer)
        if not victim_first:
            store.import_archive(victim)
        unrelated(store, tmp_path)
        assert complete(store, "example.com/victim:1")
        assert complete(other, "example.com/claimer:1")
        assert store.gc().removed == []


def test_gc_keeps_a_manifest_that_a_docker_layer_names_by_diff_id(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    data = _manifest_bytes(victim, desc["digest"])
    image = DockerImage([data], ["example.com/claimer:1"])
    docker = tmp_path / "docker.tar"
    docker.write_bytes(tar_bytes(classic_save([image])))
    with Store(tmp_path / "root") as store:
        store.import_archive(victim)
        store.import_archive(docker)
        unrelated(store, tmp_path)
        assert complete(store, "example.com/victim:1")
        assert complete(store, "example.com/claimer:1")


def _manifest_bytes(archive: Path, digest: str) -> bytes:
    import tarfile

    with tarfile.open(archive) as tar:
        member = tar.extractfile("blobs/" + digest.replace(":", "/"))
        assert member is not None
        return member.read()


# -- a namespace uses only what it received ---------------------------------------------------


def claiming_archive(tmp_path: Path, victim_desc: dict[str, Any], victim: Path) -> Path:
    """An archive that names the victim's layers and config without containing them."""
    builder = ArchiveBuilder()
    manifest = _manifest_bytes(victim, victim_desc["digest"])
    builder.add(builder.blob(manifest, OCI_MANIFEST), "example.com/claimed:1")
    return builder.write(tmp_path / "claimed.tar")


def test_an_archive_cannot_claim_content_another_namespace_holds(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(victim)
    claimed = claiming_archive(tmp_path, desc, victim)
    with Store(root, "other") as other:
        before = snapshot(other)
        with pytest.raises(InvalidArchiveError, match="is missing"):
            other.import_archive(claimed)
        assert snapshot(other) == before
        assert other.meta.list_images("other") == []


def test_the_same_archive_imports_where_the_namespace_holds_the_content(tmp_path: Path) -> None:
    """The namespace received those blobs before: the archive need not carry them again (what
    makes re-imports fast), and their bytes are not read."""
    victim, desc = victim_archive(tmp_path)
    with Store(tmp_path / "root") as store:
        store.import_archive(victim)
        result = store.import_archive(claiming_archive(tmp_path, desc, victim))
        assert [(i.name, i.action) for i in result.images] == [("example.com/claimed:1", "created")]
        assert result.blobs_written == 0
        assert complete(store, "example.com/claimed:1")


def test_cli_claim_from_another_namespace_fails_with_one_line(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    assert run(root, "image", "import", str(victim)).returncode == 0
    proc = run(
        root, "-n", "other", "image", "import", str(claiming_archive(tmp_path, desc, victim))
    )
    line = assert_one_error_line(proc)
    assert "missing" in line
    assert run(root, "-n", "other", "image", "ls", "-q").stdout == b""


def test_another_namespace_reads_and_verifies_the_bytes(tmp_path: Path) -> None:
    """A blob the store has for another namespace is read from the archive and verified: a
    wrong copy in the archive is refused even though the store's copy is right."""
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(victim)
    builder = ArchiveBuilder()
    builder.add(builder.blob(_manifest_bytes(victim, desc["digest"]), OCI_MANIFEST), "x/y:1")
    members = dict(builder.members())
    import tarfile

    with tarfile.open(victim) as tar:
        for info in tar.getmembers():
            if info.name.startswith("blobs/") and info.isfile():
                f = tar.extractfile(info)
                assert f is not None
                members.setdefault(info.name, f.read())
    wrong = next(n for n, d in members.items() if n.startswith("blobs/") and d[:2] == b"\x1f\x8b")
    members[wrong] = b"\x1f\x8b" + b"\0" * (len(members[wrong]) - 2)
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(tar_bytes(list(members.items())))
    with Store(root, "other") as other:
        before = snapshot(other)
        with pytest.raises(CargoholdError, match=wrong.split("/")[-1][:12]):
            other.import_archive(damaged)
        assert snapshot(other) == before


def test_a_docker_layer_is_skipped_by_diff_id_only_where_the_namespace_holds_it(
    tmp_path: Path,
) -> None:
    """A docker layer is recognised by its diff_id only in a namespace that holds that blob;
    elsewhere its bytes are read and must match the diff_id."""
    layer = layer_tar({"secret": b"s" * 100})
    root = tmp_path / "root"
    good = tmp_path / "good.tar"
    good.write_bytes(tar_bytes(classic_save([DockerImage([layer], ["example.com/a:1"])])))
    with Store(root) as store:
        store.import_archive(good)
    fake = layer_tar({"other": b"o" * 100})
    assert len(fake) == len(layer)
    forged = DockerImage([fake], ["example.com/b:1"], diff_ids_override=[digest_of(layer)])
    archive = tmp_path / "forged.tar"
    archive.write_bytes(tar_bytes(classic_save([forged])))
    with Store(root, "other") as other:
        before = snapshot(other)
        with pytest.raises(InvalidArchiveError, match="diff_id"):
            other.import_archive(archive)
        assert snapshot(other) == before


def test_namespace_rm_releases_what_it_held(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    with Store(root, "other") as other:
        other.import_archive(victim)
        other.remove(["example.com/victim:1"], collect_garbage=False)
        other.remove_namespace("other")
        assert other.meta.holdings("other") == set()
    with Store(root, "other") as other, pytest.raises(InvalidArchiveError, match="is missing"):
        other.import_archive(claiming_archive(tmp_path, desc, victim))


def test_image_rm_releases_what_no_image_of_the_namespace_reaches(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    with Store(root) as store, Store(root, "other") as other:
        store.import_archive(victim)  # the blobs stay on disk for this namespace's image
        other.import_archive(victim)
        other.remove(["example.com/victim:1"])
        assert other.meta.holdings("other") == set()
        with pytest.raises(InvalidArchiveError, match="is missing"):
            other.import_archive(claiming_archive(tmp_path, desc, victim))
        assert complete(store, "example.com/victim:1")


def test_pull_downloads_what_the_namespace_does_not_hold(tmp_path: Path) -> None:
    from fakeregistry import FakeRegistry, serve
    from registryhelpers import REPO, factory_for, publish

    registry = FakeRegistry()
    builder = ArchiveBuilder()
    top = builder.image(HOST, layers=2)
    publish(registry, builder, top, REPO, "v1")
    root = tmp_path / "root"
    with serve(registry) as server:
        ref = f"{server.netloc}/{REPO}:v1"
        with Store(root) as store:
            assert store.pull(ref, client_factory=factory_for()).blobs_downloaded == 3
            assert store.pull(ref, client_factory=factory_for()).blobs_downloaded == 0
        with Store(root, "other") as other:
            result = other.pull(ref, client_factory=factory_for())
            assert (result.blobs_downloaded, result.blobs_present) == (3, 0)
            assert complete(other, ref)


# -- format 1 stores ----------------------------------------------------------------------------


def test_a_format_1_store_is_upgraded_with_what_each_namespace_holds(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    with Store(root, "team") as store:
        store.import_archive(victim)
    db = sqlite3.connect(root / "metadata.db")
    db.execute("DROP TABLE namespace_content")
    db.commit()
    db.close()
    (root / "VERSION").write_text("1\n")
    with Store(root, "team") as store:
        assert (root / "VERSION").read_text() == f"{STORE_FORMAT}\n"
        held = store.meta.holdings("team")
        assert desc["digest"] in held
        assert len(held) == 4  # manifest, config, two layers
        store.import_archive(claiming_archive(tmp_path, desc, victim))
    with Store(root, "other") as other, pytest.raises(InvalidArchiveError):
        other.import_archive(claiming_archive(tmp_path, desc, victim))


# -- a damaged copy in the store ----------------------------------------------------------------


def test_reimport_replaces_a_damaged_document(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    with Store(tmp_path / "root") as store:
        store.import_archive(victim)
        path = blob_path(store, desc["digest"])
        overwrite(path, b"x" * path.stat().st_size)  # same size, not JSON
        with pytest.raises(DamagedBlobError, match=r"store's copy.*image check --verify"):
            store.raw_document("example.com/victim:1", "config")
        assert not complete(store, "example.com/victim:1")
        store.import_archive(victim)
        assert complete(store, "example.com/victim:1")


def test_reimport_replaces_a_blob_of_the_wrong_size(tmp_path: Path) -> None:
    victim, _ = victim_archive(tmp_path)
    with Store(tmp_path / "root") as store:
        store.import_archive(victim)
        layer = store.resolve("example.com/victim:1")
        manifest = store.raw_document(layer.name, "manifest")
        import json

        digest = json.loads(manifest)["layers"][0]["digest"]
        overwrite(blob_path(store, digest), b"short")
        store.import_archive(victim)
        assert complete(store, "example.com/victim:1")


def test_force_reimport_replaces_a_damaged_large_layer(tmp_path: Path) -> None:
    """A large blob the namespace holds is trusted by its size (re-hashing every stored layer
    would make every re-import read it all); --force reads and replaces everything."""
    builder = ArchiveBuilder()
    big = gzip.compress(os.urandom(3 << 20), compresslevel=1)
    layer = builder.blob(big, OCI_LAYER_GZIP)
    config = builder.blob(dumps({"architecture": "amd64", "os": "linux"}), OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    builder.add(builder.blob(dumps(manifest), OCI_MANIFEST), "example.com/big:1")
    archive = builder.write(tmp_path / "big.tar")
    with Store(tmp_path / "root") as store:
        store.import_archive(archive)
        overwrite(blob_path(store, layer["digest"]), b"\0" * len(big))
        store.import_archive(archive)
        assert not complete(store, "example.com/big:1")
        store.import_archive(archive, force=True)
        assert complete(store, "example.com/big:1")


def test_export_of_a_damaged_document_names_the_repair(tmp_path: Path) -> None:
    victim, desc = victim_archive(tmp_path)
    root = tmp_path / "root"
    assert run(root, "image", "import", str(victim)).returncode == 0
    with Store(root) as store:
        path = blob_path(store, desc["digest"])
    overwrite(path, b"{" + b" " * (path.stat().st_size - 2) + b"}")
    proc = run(root, "image", "export", str(tmp_path / "out.tar"), "example.com/victim:1")
    line = assert_one_error_line(proc)
    assert "store's copy" in line and desc["digest"] in line and "image check --verify" in line
    assert not (tmp_path / "out.tar").exists()


# -- the same bytes as a layer and as a manifest: siblings of the gc bug -----------------------


def layer_and_manifest_index(tmp_path: Path) -> tuple[Path, str, str]:
    """An archive whose image is an index of an index listing, in this order, a manifest C
    whose only layer is the bytes of a manifest M, and M itself (with a foreign-layer type for
    that layer, so that an export leaving out foreign layers must still keep M)."""
    builder = ArchiveBuilder()
    m_desc = builder.image(HOST, files={"m": b"m"})
    m_bytes = builder.blobs[m_desc["digest"]]
    config = builder.blob(dumps({"architecture": "amd64", "os": "linux"}), OCI_CONFIG)
    foreign = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    layer = {"mediaType": foreign, "digest": digest_of(m_bytes), "size": len(m_bytes)}
    claimer = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    c_desc = builder.blob(dumps(claimer), OCI_MANIFEST)
    inner = builder.index([c_desc, m_desc])
    outer = builder.index([inner])
    builder.add(outer, "example.com/nested:1")
    return builder.write(tmp_path / "nested.tar"), m_desc["digest"], outer["digest"]


def test_push_sends_a_manifest_that_is_also_a_layer_as_a_manifest(tmp_path: Path) -> None:
    from fakeregistry import FakeRegistry, serve
    from registryhelpers import factory_for

    archive, manifest, _ = layer_and_manifest_index(tmp_path)
    registry = FakeRegistry()
    with Store(tmp_path / "root") as store, serve(registry) as server:
        store.import_archive(archive, platforms="all")
        store.push(
            "example.com/nested:1", f"{server.netloc}/team/nested:1", client_factory=factory_for()
        )
    assert manifest in registry.manifests["team/nested"]
    assert manifest in registry.blobs["team/nested"]


def test_export_without_foreign_layers_keeps_a_manifest_named_as_one(tmp_path: Path) -> None:
    archive, manifest, _ = layer_and_manifest_index(tmp_path)
    with Store(tmp_path / "root") as store:
        store.import_archive(archive, platforms="all")
        out = tmp_path / "out.tar"
        store.export(out, ["example.com/nested:1"], platforms="all", skip_non_distributable=True)
    with Store(tmp_path / "again") as again:
        again.import_archive(out, platforms="all")
        assert complete(again, "example.com/nested:1")
        assert again.blobs.regular_size(Digest.parse(manifest)) is not None
