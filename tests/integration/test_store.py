"""The store through its library API: import, export, tag, remove, gc, namespaces."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cargohold.archive.compression import Compression
from cargohold.errors import (
    AlreadyExistsError,
    CargoholdError,
    DamagedBlobError,
    InvalidArchiveError,
    InvalidReferenceError,
    NoStoreError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreFormatError,
)
from cargohold.oci.digests import Digest
from cargohold.operations.results import ImportResult
from cargohold.operations.store import Store
from imagefactory import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    write_tar,
)
from snapshots import HOST, OTHER, Snapshot, snapshot

ABSENT = next(p for p in ("linux/s390x", "linux/riscv64") if p not in (HOST, OTHER))


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "root") as s:
        yield s


def stored_blobs(store: Store) -> set[str]:
    """Digests of the blobs under content/blobs, as ``sha256:<hex>`` strings."""
    blobs_dir = store.root / "content" / "blobs"
    if not blobs_dir.exists():
        return set()
    return {f"{p.parent.name}:{p.name}" for p in blobs_dir.glob("*/*") if p.is_file()}


def names(store: Store) -> dict[str, str]:
    return {r.name: str(r.digest) for r in store.meta.list_images(store.namespace)}


def actions(result: ImportResult) -> dict[str, str]:
    return {i.name: i.action for i in result.images}


def image_blobs(builder: ArchiveBuilder, desc: dict[str, Any]) -> dict[str, set[str]]:
    """Blob digests below *desc* per platform ("" for a plain manifest), manifests included."""
    doc = json.loads(builder.blobs[desc["digest"]])
    if desc["mediaType"] == OCI_INDEX:
        out: dict[str, set[str]] = {}
        for child in doc["manifests"]:
            platform = child["platform"]
            key = f"{platform['os']}/{platform['architecture']}"
            if "variant" in platform:
                key += "/" + platform["variant"]
            out[key] = image_blobs(builder, child)[""]
        return out
    return {"": {desc["digest"], doc["config"]["digest"], *(d["digest"] for d in doc["layers"])}}


def layers_of(builder: ArchiveBuilder, manifest_digest: str) -> list[str]:
    doc = json.loads(builder.blobs[manifest_digest])
    return [d["digest"] for d in doc["layers"]]


def config_of(builder: ArchiveBuilder, manifest_digest: str) -> str:
    digest: str = json.loads(builder.blobs[manifest_digest])["config"]["digest"]
    return digest


def child_for(builder: ArchiveBuilder, index_desc: dict[str, Any], platform: str) -> str:
    doc = json.loads(builder.blobs[index_desc["digest"]])
    for child in doc["manifests"]:
        p = child["platform"]
        if "/".join(filter(None, (p["os"], p["architecture"], p.get("variant")))) == platform:
            digest: str = child["digest"]
            return digest
    raise AssertionError(f"no {platform} in index")


def single(path: Path, name: str = "example.com/team/app:1.0", **image: Any) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(**image), name=name)
    return builder.write(path)


def custom_manifest(
    builder: ArchiveBuilder, layer: bytes, layer_size: int | None = None
) -> dict[str, Any]:
    """A manifest whose one layer descriptor may declare a size other than the layer's."""
    layer_desc = builder.blob(layer, OCI_LAYER_GZIP)
    if layer_size is not None:
        layer_desc["size"] = layer_size
    config = builder.blob(
        dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}), OCI_CONFIG
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [layer_desc],
    }
    return builder.blob(dumps(manifest), OCI_MANIFEST)


def read_tar(path: Path) -> dict[str, bytes]:
    files = {}
    with tarfile.open(path) as tar:
        for member in tar:
            data = tar.extractfile(member)
            if data is not None:
                files[member.name] = data.read()
    return files


def populate(store: Store, tmp_path: Path) -> None:
    """Give a store some images and blobs, so failures are checked against a non-empty store."""
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"existing": b"1"}), name="example.com/existing:1")
    builder.add(builder.multi_platform([HOST, OTHER]), name="example.com/existing:multi")
    store.import_archive(builder.write(tmp_path / "existing.tar"))


# -- naming ---------------------------------------------------------------------------------


def test_import_names_from_containerd_annotation(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc, name="example.com/team/app:1.0", ref_name="ignored")
    result = store.import_archive(builder.write(tmp_path / "whatever.tar"))
    assert actions(result) == {"example.com/team/app:1.0": "created"}
    assert names(store) == {"example.com/team/app:1.0": desc["digest"]}
    assert str(store.resolve("example.com/team/app:1.0").digest) == desc["digest"]
    assert result.warnings == []


def test_containerd_name_is_normalised(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(), name="alpine")
    store.import_archive(builder.write(tmp_path / "a.tar"))
    assert list(names(store)) == ["docker.io/library/alpine:latest"]
    assert store.resolve("alpine").name == "docker.io/library/alpine:latest"


def test_bare_ref_name_tag_goes_under_the_file_name(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(), ref_name="1.0")
    result = store.import_archive(builder.write(tmp_path / "my-app.tar"))
    assert actions(result) == {"docker.io/library/my-app:1.0": "created"}


def test_bare_ref_name_tag_goes_under_base_name(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(), ref_name="1.0")
    result = store.import_archive(
        builder.write(tmp_path / "my-app.tar"), base_name="registry.example.com/team/tool"
    )
    assert actions(result) == {"registry.example.com/team/tool:1.0": "created"}


def test_full_ref_name(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"a": b"a"}), ref_name="ghcr.io/owner/tool:2")
    builder.add(builder.image(files={"b": b"b"}), ref_name="busybox:1.36")
    result = store.import_archive(builder.write(tmp_path / "my-app.tar"))
    assert actions(result) == {
        "ghcr.io/owner/tool:2": "created",
        "docker.io/library/busybox:1.36": "created",
    }


def test_tags_rename_the_image(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc, name="example.com/original:1")
    builder.add(desc, ref_name="2")  # a second name for the same image
    result = store.import_archive(
        builder.write(tmp_path / "a.tar"), tags=["example.com/renamed:1", "other:2"]
    )
    assert actions(result) == {
        "example.com/renamed:1": "created",
        "docker.io/library/other:2": "created",
    }
    assert names(store) == {
        "example.com/renamed:1": desc["digest"],
        "docker.io/library/other:2": desc["digest"],
    }


def test_tags_refuse_an_archive_with_two_images(store: Store, tmp_path: Path) -> None:
    populate(store, tmp_path)
    before = snapshot(store)
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"a": b"a"}), name="example.com/a:1")
    builder.add(builder.image(files={"b": b"b"}), name="example.com/b:1")
    with pytest.raises(InvalidArchiveError, match="2 images"):
        store.import_archive(builder.write(tmp_path / "two.tar"), tags=["example.com/c:1"])
    assert snapshot(store) == before


def test_digests_adds_digest_names(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    named = builder.image(files={"a": b"a"})
    unnamed = builder.image(files={"b": b"b"})
    builder.add(named, name="example.com/app:1")
    builder.add(unnamed)
    result = store.import_archive(builder.write(tmp_path / "bundle.tar"), digests=True)
    assert names(store) == {
        "example.com/app:1": named["digest"],
        f"docker.io/library/bundle@{named['digest']}": named["digest"],
        f"docker.io/library/bundle@{unnamed['digest']}": unnamed["digest"],
    }
    assert result.warnings == []


def test_digest_names_use_base_name(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc, name="example.com/app:1")
    store.import_archive(builder.write(tmp_path / "x.tar"), digests=True, base_name="ghcr.io/o/r")
    assert f"ghcr.io/o/r@{desc['digest']}" in names(store)


def test_index_name_keeps_the_index(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc, name="example.com/app:1")
    path = builder.write(tmp_path / "a.tar")
    index_json = builder.index_json()
    result = store.import_archive(path, index_name="example.com/bundle:all")
    record = store.resolve("example.com/bundle:all")
    assert record.media_type == OCI_INDEX
    assert str(record.digest) == digest_of(index_json)
    assert record.size == len(index_json)
    assert digest_of(index_json) in stored_blobs(store)
    assert actions(result) == {"example.com/app:1": "created", "example.com/bundle:all": "created"}
    # The kept index is a whole image: it exports and protects its content from gc.
    store.remove(["example.com/app:1"])
    assert desc["digest"] in stored_blobs(store)
    store.export(tmp_path / "out.tar", ["example.com/bundle:all"])
    assert f"blobs/sha256/{desc['digest'].removeprefix('sha256:')}" in read_tar(
        tmp_path / "out.tar"
    )


def test_index_name_claiming_a_digest_must_be_the_index(store: Store, tmp_path: Path) -> None:
    """As for `image tag`: otherwise the export of the image would be refused by an import."""
    builder = ArchiveBuilder()
    builder.add(builder.image(), name="example.com/app:1")
    path = builder.write(tmp_path / "a.tar")
    index_digest = digest_of(builder.index_json())
    other = f"sha256:{'0' * 64}"
    with pytest.raises(InvalidReferenceError, match=rf"--index-name: .* claims digest {other}"):
        store.import_archive(path, index_name=f"example.com/bundle@{other}")
    assert names(store) == {}
    store.import_archive(path, index_name=f"example.com/bundle@{index_digest}")
    store.export(tmp_path / "out.tar", [f"example.com/bundle@{index_digest}"])
    store.remove([f"example.com/bundle@{index_digest}", "example.com/app:1"])
    store.import_archive(tmp_path / "out.tar")
    assert f"example.com/bundle@{index_digest}" in names(store)


def test_index_name_cannot_take_an_image_name_of_the_archive(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(), name="example.com/app:1")
    path = builder.write(tmp_path / "a.tar")
    with pytest.raises(InvalidArchiveError, match=r"--index-name example\.com/app:1 is also"):
        store.import_archive(path, index_name="example.com/app:1")
    assert names(store) == {}


def test_unnamed_image_gets_a_digest_name_and_a_warning(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc)
    result = store.import_archive(builder.write(tmp_path / "nameless.tar"))
    expected = f"docker.io/library/nameless@{desc['digest']}"
    assert actions(result) == {expected: "created"}
    assert len(result.warnings) == 1
    assert desc["digest"] in result.warnings[0]
    assert expected in result.warnings[0]


def test_stream_import(store: Store, tmp_path: Path) -> None:
    path = single(tmp_path / "a.tar")
    result = store.import_archive(io.BytesIO(path.read_bytes()), base_name="example.com/x")
    assert actions(result) == {"example.com/team/app:1.0": "created"}


# -- platforms ------------------------------------------------------------------------------


def multi_platform_archive(tmp_path: Path) -> tuple[Path, ArchiveBuilder, dict[str, Any]]:
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER])
    builder.add(index, name="example.com/multi:1")
    return builder.write(tmp_path / "multi.tar"), builder, index


def test_multi_platform_import_takes_the_host_platform_by_default(
    store: Store, tmp_path: Path
) -> None:
    path, builder, index = multi_platform_archive(tmp_path)
    per_platform = image_blobs(builder, index)
    result = store.import_archive(path)
    blobs = stored_blobs(store)
    assert per_platform[HOST] <= blobs
    assert index["digest"] in blobs
    assert not per_platform[OTHER] & blobs
    assert blobs == per_platform[HOST] | {index["digest"]}
    assert result.blobs_written == len(blobs)
    other_layers = layers_of(builder, child_for(builder, index, OTHER))
    assert other_layers and not set(other_layers) & blobs


def test_import_of_a_chosen_platform(store: Store, tmp_path: Path) -> None:
    path, builder, index = multi_platform_archive(tmp_path)
    per_platform = image_blobs(builder, index)
    store.import_archive(path, platforms=[OTHER])
    assert stored_blobs(store) == per_platform[OTHER] | {index["digest"]}


def test_import_of_all_platforms(store: Store, tmp_path: Path) -> None:
    path, builder, index = multi_platform_archive(tmp_path)
    per_platform = image_blobs(builder, index)
    store.import_archive(path, platforms="all")
    assert stored_blobs(store) == per_platform[HOST] | per_platform[OTHER] | {index["digest"]}
    info = store.list_images()[0]
    assert sorted(str(p) for p in info.platforms) == sorted([HOST, OTHER])


def test_import_of_a_platform_the_archive_lacks(store: Store, tmp_path: Path) -> None:
    path, _, _ = multi_platform_archive(tmp_path)
    before = snapshot(store)
    with pytest.raises(NotFoundError, match=ABSENT):
        store.import_archive(path, platforms=[ABSENT])
    assert snapshot(store) == before


def test_archive_without_other_platforms_blobs(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER])
    builder.add(index, name="example.com/multi:1")
    other_layer = layers_of(builder, child_for(builder, index, OTHER))[0]
    path = builder.write(tmp_path / "partial.tar", omit=frozenset({other_layer}))

    populate(store, tmp_path)
    before = snapshot(store)
    with pytest.raises(InvalidArchiveError, match=other_layer):
        store.import_archive(path, platforms="all")
    assert snapshot(store) == before

    result = store.import_archive(path)
    assert actions(result) == {"example.com/multi:1": "created"}


def test_missing_selected_blob_fails_naming_it(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER])
    builder.add(index, name="example.com/multi:1")
    host_manifest = child_for(builder, index, HOST)
    for missing in (layers_of(builder, host_manifest)[0], config_of(builder, host_manifest)):
        path = builder.write(tmp_path / "broken.tar", omit=frozenset({missing}))
        before = snapshot(store)
        with pytest.raises(InvalidArchiveError, match=missing):
            store.import_archive(path)
        assert snapshot(store) == before


def test_blob_with_wrong_bytes_fails(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image(files={"tampered": b"t"})
    builder.add(desc, name="example.com/app:1")
    layer = layers_of(builder, desc["digest"])[0]
    members = [
        (name, data[:-1] + bytes([data[-1] ^ 1]) if name.endswith(layer[7:]) else data)
        for name, data in builder.members()
    ]
    path = write_tar(tmp_path / "tampered.tar", members)
    populate(store, tmp_path)
    before = snapshot(store)
    with pytest.raises(InvalidArchiveError, match=layer.removeprefix("sha256:")):
        store.import_archive(path)
    assert snapshot(store) == before


@pytest.mark.parametrize("delta", [1, -1])
def test_descriptor_size_must_match_the_blob(store: Store, tmp_path: Path, delta: int) -> None:
    builder = ArchiveBuilder()
    layer = b"\x1f\x8b not really a gzip layer"
    desc = custom_manifest(builder, layer, layer_size=len(layer) + delta)
    builder.add(desc, name="example.com/app:1")
    path = builder.write(tmp_path / "sizes.tar")
    populate(store, tmp_path)
    before = snapshot(store)
    with pytest.raises(CargoholdError, match=digest_of(layer)):
        store.import_archive(path)
    assert snapshot(store) == before


def test_members_in_any_order(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER])
    builder.add(index, name="example.com/multi:1")
    path = builder.write(tmp_path / "reversed.tar", index_first=False)
    with tarfile.open(path) as tar:
        assert tar.getnames()[-2:] == ["oci-layout", "index.json"]
    result = store.import_archive(path, platforms="all")
    assert actions(result) == {"example.com/multi:1": "created"}
    assert stored_blobs(store) == set(builder.blobs)


# -- re-import, newer and older images ------------------------------------------------------


def test_reimport_is_unchanged_and_deduplicated(store: Store, tmp_path: Path) -> None:
    path, _, _ = multi_platform_archive(tmp_path)
    first = store.import_archive(path)
    blobs = stored_blobs(store)
    second = store.import_archive(path)
    assert actions(second) == {"example.com/multi:1": "unchanged"}
    assert second.blobs_written == 0
    assert second.bytes_written == 0
    assert second.bytes_deduplicated == first.bytes_written > 0
    assert stored_blobs(store) == blobs


def test_older_image_is_kept_unless_forced(store: Store, tmp_path: Path) -> None:
    name = "example.com/app:1"
    new = single(tmp_path / "new.tar", name, created="2024-06-01T00:00:00Z")
    old = single(tmp_path / "old.tar", name, created="2023-06-01T00:00:00Z")
    store.import_archive(new)
    new_digest = names(store)[name]

    result = store.import_archive(old)
    assert actions(result) == {name: "kept"}
    assert names(store)[name] == new_digest
    assert len(result.warnings) == 1
    assert name in result.warnings[0]

    forced = store.import_archive(old, force=True)
    assert actions(forced) == {name: "updated"}
    assert names(store)[name] != new_digest
    assert names(store)[name] == str(forced.images[0].digest)


def test_newer_image_updates_the_name(store: Store, tmp_path: Path) -> None:
    name = "example.com/app:1"
    store.import_archive(single(tmp_path / "old.tar", name, created="2023-06-01T00:00:00Z"))
    result = store.import_archive(
        single(tmp_path / "new.tar", name, created="2024-06-01T00:00:00Z")
    )
    assert actions(result) == {name: "updated"}
    assert names(store)[name] == str(result.images[0].digest)
    assert result.warnings == []


def test_update_keeps_the_creation_time(store: Store, tmp_path: Path) -> None:
    name = "example.com/app:1"
    store.import_archive(single(tmp_path / "old.tar", name, created="2023-06-01T00:00:00Z"))
    first = store.resolve(name)
    store.import_archive(single(tmp_path / "new.tar", name, created="2024-06-01T00:00:00Z"))
    second = store.resolve(name)
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert second.digest != first.digest


# -- failed imports leave no trace ----------------------------------------------------------


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.tar"
    path.write_bytes(b"this is not a tar archive" * 100)
    return path


def _truncated(tmp_path: Path) -> Path:
    whole = single(tmp_path / "whole.tar", files={"new": b"new"})
    with tarfile.open(whole) as tar:
        last = tar.getmembers()[-1]
    path = tmp_path / "truncated.tar"
    path.write_bytes(whole.read_bytes()[: last.offset_data + last.size // 2])
    return path


def _two_images_one_name(tmp_path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"a": b"a"}), name="example.com/same:1")
    builder.add(builder.image(files={"b": b"b"}), name="example.com/same:1")
    return builder.write(tmp_path / "conflict.tar")


def _invalid_name(tmp_path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"new": b"new"}), name="Not A Name")
    return builder.write(tmp_path / "badname.tar")


def _ambiguous_manifest(tmp_path: Path) -> Path:
    builder = ArchiveBuilder()
    inner = builder.image(files={"new": b"new"})
    manifest = json.loads(builder.blobs[inner["digest"]])
    manifest["manifests"] = []
    desc = builder.blob(dumps(manifest), OCI_MANIFEST)
    builder.add(desc, name="example.com/ambiguous:1")
    return builder.write(tmp_path / "ambiguous.tar")


def _path_traversal(tmp_path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"new": b"new"}), name="example.com/new:1")
    return builder.write(tmp_path / "evil.tar", extra=[("../escape", b"x")])


def _new_image(tmp_path: Path) -> Path:
    return single(tmp_path / "new.tar", files={"new": b"new"})


def _no_layout(tmp_path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"new": b"new"}), name="example.com/new:1")
    members = [m for m in builder.members() if m[0] != "oci-layout"]
    return write_tar(tmp_path / "nolayout.tar", members)


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        pytest.param(_garbage, {}, id="not-a-tar"),
        pytest.param(_truncated, {}, id="truncated"),
        pytest.param(_two_images_one_name, {}, id="one-name-two-images"),
        pytest.param(_invalid_name, {}, id="invalid-name"),
        pytest.param(_ambiguous_manifest, {}, id="ambiguous-manifest"),
        pytest.param(_path_traversal, {}, id="path-traversal"),
        pytest.param(_no_layout, {}, id="no-oci-layout"),
        pytest.param(_new_image, {"tags": ["Bad Tag"]}, id="invalid-tag"),
        pytest.param(_new_image, {"index_name": "Bad Name"}, id="invalid-index-name"),
        pytest.param(lambda p: p / "absent.tar", {}, id="missing-file"),
    ],
)
def test_failed_import_leaves_the_store_unchanged(
    store: Store, tmp_path: Path, make: Any, kwargs: dict[str, Any]
) -> None:
    populate(store, tmp_path)
    path = make(tmp_path)
    before = snapshot(store)
    assert before.images and before.blobs
    with pytest.raises(CargoholdError):
        store.import_archive(path, **kwargs)
    after = snapshot(store)
    assert after == before
    assert after.ingest == ()
    assert after.leases == ()
    assert after.lock_files == ()


def test_failed_import_into_a_fresh_store_leaves_it_empty(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidArchiveError):
        store.import_archive(_two_images_one_name(tmp_path))
    assert snapshot(store) == Snapshot((), frozenset(), frozenset(), (), (), ())


# -- export ---------------------------------------------------------------------------------


def export_fixture(store: Store, tmp_path: Path) -> tuple[ArchiveBuilder, dict[str, Any]]:
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER])
    builder.add(index, name="example.com/multi:1")
    single_desc = builder.image(files={"only": b"only"}, layers=3)
    builder.add(single_desc, name="docker.io/library/three:layers")
    store.import_archive(builder.write(tmp_path / "in.tar"), platforms="all")
    store.tag("three:layers", ["ghcr.io/o/three:v1"])
    return builder, single_desc


def test_export_is_reproducible(store: Store, tmp_path: Path) -> None:
    export_fixture(store, tmp_path)
    refs = ["example.com/multi:1", "three:layers", "ghcr.io/o/three:v1"]
    store.export(tmp_path / "a.tar", refs)
    store.export(tmp_path / "b.tar", refs)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_export_headers_are_fixed(store: Store, tmp_path: Path) -> None:
    export_fixture(store, tmp_path)
    store.export(tmp_path / "out.tar", ["example.com/multi:1", "three:layers"], platforms="all")
    with tarfile.open(tmp_path / "out.tar") as tar:
        members = tar.getmembers()
    member_names = [m.name for m in members]
    assert member_names == sorted(member_names)
    assert {"oci-layout", "index.json", "manifest.json"} <= set(member_names)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
        if m.isdir():
            continue
        assert m.isfile(), m.name
        if m.name.startswith("blobs/") or m.name == "oci-layout":
            assert m.mode == 0o444, m.name
        else:
            assert m.name.endswith(".json")
            assert m.mode == 0o644, m.name


def test_export_members_are_sorted_with_two_algorithms(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    layer = b"layer addressed by sha512"
    layer_digest = "sha512:" + hashlib.sha512(layer).hexdigest()
    builder.blobs[layer_digest] = layer
    config = builder.blob(dumps({"architecture": "amd64", "os": "linux"}), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}],
    }
    builder.add(builder.blob(dumps(manifest), OCI_MANIFEST), name="example.com/sha512:1")
    store.import_archive(builder.write(tmp_path / "in.tar"))
    assert (store.root / "content" / "blobs" / "sha512" / layer_digest[7:]).is_file()
    store.export(tmp_path / "out.tar", ["example.com/sha512:1"])
    with tarfile.open(tmp_path / "out.tar") as tar:
        member_names = tar.getnames()
    assert f"blobs/sha512/{layer_digest[7:]}" in member_names
    assert member_names == sorted(member_names)


def test_export_index_json_has_one_entry_per_name(store: Store, tmp_path: Path) -> None:
    _, single_desc = export_fixture(store, tmp_path)
    store.export(
        tmp_path / "out.tar", ["example.com/multi:1", "three:layers", "ghcr.io/o/three:v1"]
    )
    index = json.loads(read_tar(tmp_path / "out.tar")["index.json"])
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    entries = [
        (
            e["digest"],
            e["annotations"]["io.containerd.image.name"],
            e["annotations"]["org.opencontainers.image.ref.name"],
        )
        for e in index["manifests"]
    ]
    multi_digest = store.resolve("example.com/multi:1").digest
    # the OCI ref name is the full reference by default (``--ref-name tag`` writes the tag)
    assert entries == [
        (str(multi_digest), "example.com/multi:1", "example.com/multi:1"),
        (single_desc["digest"], "docker.io/library/three:layers", "docker.io/library/three:layers"),
        (single_desc["digest"], "ghcr.io/o/three:v1", "ghcr.io/o/three:v1"),
    ]
    assert [e["mediaType"] for e in index["manifests"]] == [OCI_INDEX, OCI_MANIFEST, OCI_MANIFEST]


def test_export_manifest_json_for_docker(store: Store, tmp_path: Path) -> None:
    builder, single_desc = export_fixture(store, tmp_path)
    store.export(
        tmp_path / "out.tar", ["example.com/multi:1", "three:layers", "ghcr.io/o/three:v1"]
    )
    files = read_tar(tmp_path / "out.tar")
    manifest_json = json.loads(files["manifest.json"])
    layers = layers_of(builder, single_desc["digest"])
    assert len(layers) == 3
    host_manifest = child_for(builder, builder_index(builder), HOST)

    def path(digest: str) -> str:
        return "blobs/" + digest.replace(":", "/")

    assert manifest_json == [
        {
            "Config": path(config_of(builder, host_manifest)),
            "RepoTags": ["example.com/multi:1"],
            "Layers": [path(d) for d in layers_of(builder, host_manifest)],
        },
        {
            "Config": path(config_of(builder, single_desc["digest"])),
            "RepoTags": ["three:layers", "ghcr.io/o/three:v1"],
            "Layers": [path(d) for d in layers],
        },
    ]
    for entry in manifest_json:
        assert entry["Config"] in files
        assert all(layer in files for layer in entry["Layers"])


def builder_index(builder: ArchiveBuilder) -> dict[str, Any]:
    for entry in builder.entries:
        if entry["mediaType"] == OCI_INDEX:
            return entry
    raise AssertionError("no index")


def test_export_of_a_missing_platform_leaves_no_file(store: Store, tmp_path: Path) -> None:
    path, _, _ = multi_platform_archive(tmp_path)
    store.import_archive(path)  # host platform only
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(NotFoundError, match=OTHER.split("/")[1]):
        store.export(out_dir / "image.tar", ["example.com/multi:1"], platforms=[OTHER])
    assert list(out_dir.iterdir()) == []
    with pytest.raises(NotFoundError):
        store.export(out_dir / "image.tar", ["example.com/multi:1"], platforms="all")
    assert list(out_dir.iterdir()) == []
    with pytest.raises(NotFoundError, match=ABSENT):
        store.export(out_dir / "image.tar", ["example.com/multi:1"], platforms=[ABSENT])
    assert list(out_dir.iterdir()) == []
    # The host platform is whole and exports.
    store.export(out_dir / "image.tar", ["example.com/multi:1"])
    assert [p.name for p in out_dir.iterdir()] == ["image.tar"]


def test_export_of_damaged_content_leaves_no_file(store: Store, tmp_path: Path) -> None:
    builder, single_desc = export_fixture(store, tmp_path)
    layer = layers_of(builder, single_desc["digest"])[-1]
    blob = store.root / "content" / "blobs" / "sha256" / layer.removeprefix("sha256:")
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1])  # the store's copy lost a byte
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CargoholdError, match=layer.removeprefix("sha256:")):
        store.export(out_dir / "image.tar", ["three:layers"])
    assert list(out_dir.iterdir()) == []


def change_last_byte(store: Store, digest: str) -> None:
    """Damage a stored blob without changing its size: only hashing can tell."""
    blob = store.root / "content" / "blobs" / "sha256" / digest.removeprefix("sha256:")
    data = blob.read_bytes()
    blob.chmod(0o644)
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))


@pytest.mark.parametrize("layout_dir", [False, True], ids=["archive", "layout-directory"])
def test_export_verify_leaves_nothing_for_a_changed_blob(
    store: Store, tmp_path: Path, layout_dir: bool
) -> None:
    builder, single_desc = export_fixture(store, tmp_path)
    layer = layers_of(builder, single_desc["digest"])[1]
    change_last_byte(store, layer)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    store.export(out_dir / "unverified", ["three:layers"], layout_dir=layout_dir)  # sizes only
    with pytest.raises(DamagedBlobError, match=f"{layer} in the store does not match") as caught:
        store.export(out_dir / "image", ["three:layers"], layout_dir=layout_dir, verify=True)
    assert caught.value.digest == Digest.parse(layer)
    assert [p.name for p in out_dir.iterdir()] == ["unverified"]


def test_export_verify_of_intact_blobs_writes_the_same_archive(
    store: Store, tmp_path: Path
) -> None:
    export_fixture(store, tmp_path)
    refs = ["example.com/multi:1", "three:layers"]
    store.export(tmp_path / "plain.tar", refs, platforms="all")
    store.export(tmp_path / "verified.tar", refs, platforms="all", verify=True)
    assert (tmp_path / "verified.tar").read_bytes() == (tmp_path / "plain.tar").read_bytes()


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_a_compressed_stream_cut_short_does_not_end_cleanly(
    store: Store, tmp_path: Path, compress: Compression
) -> None:
    builder, single_desc = export_fixture(store, tmp_path)
    change_last_byte(store, layers_of(builder, single_desc["digest"])[1])
    stream = io.BytesIO()
    with pytest.raises(DamagedBlobError):
        store.export(stream, ["three:layers"], compress=compress, verify=True)
    # What was written so far may be there; the compressed stream's end must not be.
    if compress == "gzip":
        with pytest.raises(EOFError):
            gzip.decompress(stream.getvalue())
    else:
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        decompressor.decompress(stream.getvalue())
        assert not decompressor.eof, "the zstd stream ended cleanly"


def test_failed_export_keeps_an_existing_file(store: Store, tmp_path: Path) -> None:
    path, _, _ = multi_platform_archive(tmp_path)
    store.import_archive(path)
    out = tmp_path / "out.tar"
    out.write_bytes(b"previous")
    with pytest.raises(NotFoundError):
        store.export(out, ["example.com/multi:1"], platforms=[OTHER])
    assert out.read_bytes() == b"previous"


def test_export_of_an_unknown_name(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nosuch"):
        store.export(tmp_path / "out.tar", ["nosuch:1"])
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize("all_platforms", [False, True])
def test_export_import_export_round_trips(
    store: Store, tmp_path: Path, all_platforms: bool
) -> None:
    export_fixture(store, tmp_path)
    refs = ["example.com/multi:1", "three:layers", "ghcr.io/o/three:v1"]
    first = tmp_path / "first.tar"
    platforms = "all" if all_platforms else ()
    store.export(first, refs, platforms=platforms)
    with Store(tmp_path / "fresh") as fresh:
        result = fresh.import_archive(first, platforms=platforms)
        assert {i.name: i.action for i in result.images} == {
            "example.com/multi:1": "created",
            "docker.io/library/three:layers": "created",
            "ghcr.io/o/three:v1": "created",
        }
        assert result.warnings == []
        second = tmp_path / "second.tar"
        fresh.export(second, refs, platforms=platforms)
    assert second.read_bytes() == first.read_bytes()


def test_export_to_a_stream(store: Store, tmp_path: Path) -> None:
    export_fixture(store, tmp_path)
    store.export(tmp_path / "file.tar", ["three:layers"])
    expected = (tmp_path / "file.tar").read_bytes()
    with (tmp_path / "stream.tar").open("wb") as f:
        store.export(f, ["three:layers"])
    assert (tmp_path / "stream.tar").read_bytes() == expected
    memory = io.BytesIO()
    result = store.export(memory, ["three:layers"])
    assert memory.getvalue() == expected
    assert result.bytes_written == len(expected)


@pytest.mark.parametrize("sync", [False, True])
def test_export_flushes_the_archive_to_disk_only_with_sync(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/app:1"))
    out = tmp_path / "out.tar"
    synced: list[int] = []  # the import's fsyncs are over: any now is the export's
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store.export(out, ["example.com/app:1"], sync=sync)
    assert out.is_file()
    assert bool(synced) == sync


# -- tag ------------------------------------------------------------------------------------


def test_tag_adds_names(store: Store, tmp_path: Path) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/app:1"))
    digest = names(store)["example.com/app:1"]
    assert store.tag("example.com/app:1", ["app:2", "example.com/app:3"]) == [
        "docker.io/library/app:2",
        "example.com/app:3",
    ]
    assert names(store) == {
        "example.com/app:1": digest,
        "docker.io/library/app:2": digest,
        "example.com/app:3": digest,
    }


def test_tag_moves_an_existing_name_only_with_force(store: Store, tmp_path: Path) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/a:1", files={"a": b"a"}))
    store.import_archive(single(tmp_path / "b.tar", "example.com/b:1", files={"b": b"b"}))
    before = names(store)
    with pytest.raises(AlreadyExistsError, match=r"example\.com/b:1"):
        store.tag("example.com/a:1", ["example.com/new:1", "example.com/b:1"])
    assert names(store) == before  # all or nothing: the new name was not added either
    store.tag("example.com/a:1", ["example.com/b:1"], force=True)
    assert names(store)["example.com/b:1"] == before["example.com/a:1"]


def test_tag_refuses_a_digest_name_of_other_content(store: Store, tmp_path: Path) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/app:1"))
    digest = names(store)["example.com/app:1"]
    other = "sha256:" + "0" * 64
    with pytest.raises(InvalidReferenceError, match="claims digest"):
        store.tag("example.com/app:1", [f"example.com/app@{other}"])
    assert store.tag("example.com/app:1", [f"example.com/app@{digest}"])


def test_tag_of_an_unknown_image(store: Store) -> None:
    with pytest.raises(NotFoundError, match="nosuch"):
        store.tag("nosuch:1", ["other:1"])
    assert names(store) == {}


# -- remove and gc --------------------------------------------------------------------------


def test_remove_frees_exactly_the_unshared_blobs(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    shared = {"shared": b"shared layer"}
    a = builder.image(files=shared, created="2024-01-01T00:00:00Z", layers=2)
    b = builder.image(files=shared, created="2024-02-02T00:00:00Z", layers=1)
    builder.add(a, name="example.com/a:1")
    builder.add(b, name="example.com/b:1")
    store.import_archive(builder.write(tmp_path / "ab.tar"))
    a_blobs = image_blobs(builder, a)[""]
    b_blobs = image_blobs(builder, b)[""]
    shared_layer = layers_of(builder, a["digest"])[0]
    assert shared_layer == layers_of(builder, b["digest"])[0]
    assert stored_blobs(store) == a_blobs | b_blobs

    result = store.remove(["example.com/a:1"])

    assert result.removed == ["example.com/a:1"]
    assert result.missing == []
    assert result.gc is not None
    assert {str(d) for d, _ in result.gc.removed} == a_blobs - b_blobs
    assert result.gc.bytes_freed == sum(len(builder.blobs[d]) for d in a_blobs - b_blobs)
    assert stored_blobs(store) == b_blobs
    assert shared_layer in stored_blobs(store)
    assert names(store) == {"example.com/b:1": b["digest"]}


def test_remove_keeps_content_while_another_name_uses_it(store: Store, tmp_path: Path) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/a:1"))
    store.tag("example.com/a:1", ["example.com/a:2"])
    blobs = stored_blobs(store)
    result = store.remove(["example.com/a:1"])
    assert result.gc is not None and result.gc.removed == []
    assert stored_blobs(store) == blobs
    store.remove(["example.com/a:2"])
    assert stored_blobs(store) == set()


def test_remove_reports_missing_names_and_removes_the_others(store: Store, tmp_path: Path) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/a:1"))
    result = store.remove(["nosuch:1", "example.com/a:1"])
    assert result.removed == ["example.com/a:1"]
    assert result.missing == ["nosuch:1"]
    assert names(store) == {}


def test_remove_without_gc_leaves_content(store: Store, tmp_path: Path) -> None:
    store.import_archive(single(tmp_path / "a.tar", "example.com/a:1"))
    blobs = stored_blobs(store)
    result = store.remove(["example.com/a:1"], collect_garbage=False)
    assert result.gc is None
    assert stored_blobs(store) == blobs
    assert {str(d) for d, _ in store.gc(dry_run=True).removed} == blobs
    assert stored_blobs(store) == blobs
    store.gc()
    assert stored_blobs(store) == set()


def commit_loose_blob(store: Store, data: bytes) -> Digest:
    staged = store.blobs.stage_bytes(data, store.blobs.staging_dir("manual"))
    store.blobs.commit(staged)
    store.blobs.remove_staging("manual")
    return staged.digest


def test_gc_removes_the_leftovers_of_a_dead_lease(store: Store) -> None:
    lease = "0123456789abcdef0123456789abcdef"
    loose = commit_loose_blob(store, b"written by a killed import")
    store.meta.create_lease(lease)
    store.meta.add_to_lease(lease, [loose])
    staging = store.blobs.staging_dir(lease)
    (staging / "partial").write_bytes(b"half a layer")
    (store.root / "leases").mkdir(exist_ok=True)
    lock = store.leases.path(lease)
    lock.write_bytes(b"")  # a lock file whose holder is gone: nobody holds the lock

    result = store.gc()

    assert result.leases_removed == 1
    assert store.meta.lease_ids() == []
    assert not staging.exists()
    assert not lock.exists()
    assert [d for d, _ in result.removed] == [loose]
    assert stored_blobs(store) == set()


def test_gc_removes_staging_directories_without_a_lease(store: Store) -> None:
    staging = store.blobs.staging_dir("orphan")
    (staging / "x").write_bytes(b"x")
    store.gc()
    assert not staging.exists()


def test_gc_keeps_the_blobs_of_a_live_lease(store: Store) -> None:
    lease = "fedcba9876543210fedcba9876543210"
    fd = store.leases.hold(lease)
    try:
        store.meta.create_lease(lease)
        protected = commit_loose_blob(store, b"committed by an import in progress")
        unprotected = commit_loose_blob(store, b"nobody needs this")
        store.meta.add_to_lease(lease, [protected])
        staging = store.blobs.staging_dir(lease)
        (staging / "in-flight").write_bytes(b"being written")

        result = store.gc()

        assert [d for d, _ in result.removed] == [unprotected]
        assert result.leases_removed == 0
        assert stored_blobs(store) == {str(protected)}
        assert store.meta.lease_ids() == [lease]
        assert (staging / "in-flight").exists()
    finally:
        store.leases.release(lease, fd)
    # Once the holder is gone, the lease is dead and its blob goes.
    result = store.gc()
    assert [d for d, _ in result.removed] == [protected]
    assert store.meta.lease_ids() == []


def test_gc_keeps_every_platform_of_a_stored_index(store: Store, tmp_path: Path) -> None:
    path, builder, _ = multi_platform_archive(tmp_path)
    store.import_archive(path, platforms="all")
    assert store.gc().removed == []
    assert stored_blobs(store) == set(builder.blobs)


def test_gc_keeps_what_a_leased_manifest_lists(store: Store, tmp_path: Path) -> None:
    """A manifest an import in progress has leased (its reuse check said yes) keeps its config
    and layers through a collection: otherwise the manifest outlives them, and an image whose
    index lists it (a host-only import of the same index, committed next) reads as incomplete."""
    path, builder, index = multi_platform_archive(tmp_path)
    other = child_for(builder, index, OTHER)
    store.import_archive(path, platforms="all", tags=["example.com/all:1"])
    with store.lease() as lease_id:
        assert store.reusable(lease_id, Digest.parse(other), len(builder.blobs[other]))
        store.remove(["example.com/all:1"])  # collects while the lease holds the manifest
        assert image_blobs(builder, index)[OTHER] <= stored_blobs(store)
    store.import_archive(path, tags=["example.com/host:1"])
    assert [r.summary() for r in store.check(["example.com/host:1"]) if not r.ok] == []


# -- store format and namespaces ------------------------------------------------------------


def test_store_from_the_future_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Store(root) as s:
        s.import_archive(single(tmp_path / "a.tar"))
    (root / "VERSION").write_text("999\n")
    with pytest.raises(StoreFormatError, match="999"):
        Store(root)


def test_directory_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "precious.txt").write_text("not a store")
    with pytest.raises(StoreFormatError):
        Store(root)
    assert [p.name for p in root.iterdir()] == ["precious.txt"]


def test_opening_to_read_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(NoStoreError, match="no cargohold store at"):
        Store(root, mode="read")
    assert not root.exists()
    root.mkdir()
    with pytest.raises(NoStoreError):
        Store(root, mode="read")
    assert list(root.iterdir()) == []


def test_a_store_opened_to_read_reads_and_refuses_writes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Store(root) as s:
        s.import_archive(single(tmp_path / "a.tar", "example.com/app:1"))
    before = sorted(p.name for p in root.iterdir())
    with Store(root, mode="read") as s:
        assert s.list_names() == ["example.com/app:1"]
        with pytest.raises(ReadOnlyStoreError):
            s.tag("example.com/app:1", ["example.com/app:2"])
        with pytest.raises(ReadOnlyStoreError):
            s.gc()
        assert s.list_names() == ["example.com/app:1"]
    assert sorted(p.name for p in root.iterdir()) == before


def test_a_store_from_the_future_is_refused_to_readers_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Store(root).close()
    (root / "VERSION").write_text("999\n")
    with pytest.raises(StoreFormatError, match="999"):
        Store(root, mode="read")


@pytest.mark.parametrize("text", ["0", "-1", "2.5", "1e3"])
def test_a_version_that_is_not_a_format_is_refused(tmp_path: Path, text: str) -> None:
    root = tmp_path / "root"
    Store(root).close()
    (root / "VERSION").write_text(text)
    with pytest.raises(StoreFormatError, match="unreadable store format"):
        Store(root, mode="read")
    with pytest.raises(StoreFormatError, match="unreadable store format"):
        Store(root, mode="write")


def test_store_reopens(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Store(root) as s:
        s.import_archive(single(tmp_path / "a.tar", "example.com/app:1"))
    with Store(root) as s:
        assert [i.record.name for i in s.list_images()] == ["example.com/app:1"]


def test_namespaces_isolate_names_and_share_blobs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = single(tmp_path / "a.tar", "example.com/app:1")
    with Store(root, "one") as one, Store(root, "two") as two:
        first = one.import_archive(path)
        assert first.blobs_written > 0
        assert names(one) == {"example.com/app:1": str(first.images[0].digest)}
        assert names(two) == {}
        with pytest.raises(NotFoundError):
            two.resolve("example.com/app:1")

        second = two.import_archive(path)
        assert actions(second) == {"example.com/app:1": "created"}
        assert second.blobs_written == 0
        assert second.bytes_deduplicated == first.bytes_written

        blobs = stored_blobs(one)
        one.remove(["example.com/app:1"])
        assert names(one) == {}
        assert stored_blobs(two) == blobs  # still used in namespace two
        two.export(tmp_path / "out.tar", ["example.com/app:1"])
        two.remove(["example.com/app:1"])
        assert stored_blobs(two) == set()


def test_invalid_namespace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CargoholdError):
        Store(tmp_path / "root", "../escape")
