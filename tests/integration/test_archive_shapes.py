"""Archive shapes found in the wild, built byte for byte here and imported through the library.

Docker archives (``docker save`` before 25, skopeo, crane) are converted into Docker schema 2
manifests the way containerd converts them, so the expected manifest is written out (in
:mod:`dockerimages`) as the exact compact JSON containerd would build and hashed independently
of cargohold. OCI archives (Docker 25+ hybrids, containerd-store saves, compressed tarballs,
layout directories) are built with :mod:`imagefactory`.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cargohold import ImportResult, InvalidArchiveError, Store
from cargohold.oci.digests import Digest
from dockerimages import (
    COMPRESSORS,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    HOST,
    OCI_LAYER_ZSTD,
    OTHER,
    DockerImage,
    classic_save,
    containerd_store_save,
    crane_save,
    demo_image,
    docker25_save,
    expected_manifest,
    hex_of,
    layer,
    manifest_item,
    oci_archive,
    oci_entries,
    plain_manifest,
    repositories_file,
    skopeo_save,
    write_archive,
)
from imagefactory import (
    MANY_LAYERS,
    OCI_INDEX,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    write_many_members,
)
from streams import DIR, Entry, Link, pipe_reader, tar_bytes

# --- the store -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as s:
        yield s


def snapshot(store: Store) -> tuple[list[tuple[str, str]], set[str], list[str]]:
    """Everything an import could change: names, blobs and staging leftovers."""
    images = [(r.name, str(r.digest)) for r in store.meta.list_images(store.namespace)]
    blobs = {str(d) for d in store.blobs.iter_digests()}
    return images, blobs, store.blobs.staging_names()


def names_and_digests(result: ImportResult) -> list[tuple[str, str]]:
    return [(i.name, str(i.digest)) for i in result.images]


def stored(store: Store, digest: str | Digest) -> bytes:
    return store.blobs.read_blob(Digest.parse(str(digest)), 1 << 24)


def stored_manifest(store: Store, name: str) -> dict[str, Any]:
    record = store.resolve(name)
    doc: dict[str, Any] = json.loads(stored(store, record.digest))
    return doc


def import_entries(
    store: Store, tmp_path: Path, entries: Sequence[Entry], name: str = "archive.tar", **kw: Any
) -> ImportResult:
    return store.import_archive(write_archive(tmp_path / name, entries), **kw)


# --- classic docker save -------------------------------------------------------------------


def test_classic_docker_save_becomes_containerds_schema2_manifest(
    store: Store, tmp_path: Path
) -> None:
    image = demo_image()
    expected = plain_manifest(image)

    result = import_entries(store, tmp_path, classic_save([image]))

    assert names_and_digests(result) == [("docker.io/library/foo:1", digest_of(expected))]
    assert result.images[0].action == "created"
    assert result.warnings == []
    record = store.resolve("foo:1")
    assert record.media_type == DOCKER_MANIFEST
    assert str(record.digest) == digest_of(expected)
    assert stored(store, record.digest) == expected
    manifest = stored_manifest(store, "foo:1")
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert [entry["mediaType"] for entry in manifest["layers"]] == [DOCKER_LAYER] * 2
    assert stored(store, digest_of(image.config)) == image.config
    for i, data in enumerate(image.layers):
        assert stored(store, manifest["layers"][i]["digest"]) == data
    # manifest, config and two layers; the legacy json and VERSION files are not kept
    assert result.blobs_written == 4
    assert snapshot(store)[1] == {digest_of(expected), digest_of(image.config)} | {
        digest_of(data) for data in image.layers
    }
    [info] = store.list_images()
    assert info.platforms == [HOST]


def test_compress_blobs_gzips_uncompressed_layers_on_the_way_in(
    store: Store, tmp_path: Path
) -> None:
    image = demo_image()

    result = import_entries(store, tmp_path, classic_save([image]), compress_blobs=True)

    assert any("--compress-blobs" in warning for warning in result.warnings)
    assert str(result.images[0].digest) != digest_of(plain_manifest(image))
    manifest = stored_manifest(store, "foo:1")
    assert [entry["mediaType"] for entry in manifest["layers"]] == [DOCKER_LAYER_GZIP] * 2
    for i, data in enumerate(image.layers):
        assert gzip.decompress(stored(store, manifest["layers"][i]["digest"])) == data
    # the uncompressed copies were staged only: no image needs them, so they are not stored
    assert not {digest_of(data) for data in image.layers} & snapshot(store)[1]


def test_classic_docker_save_from_a_pipe(store: Store) -> None:
    image = demo_image()

    with pipe_reader(tar_bytes(classic_save([image]))) as reader:
        result = store.import_archive(reader)

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(image)))
    ]


def test_one_image_with_several_repo_tags(store: Store, tmp_path: Path) -> None:
    image = demo_image(["foo:1", "example.com/team/foo:latest"])

    result = import_entries(store, tmp_path, classic_save([image]))

    digest = digest_of(plain_manifest(image))
    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest),
        ("example.com/team/foo:latest", digest),
    ]


def test_member_names_with_dot_slash_prefix(store: Store, tmp_path: Path) -> None:
    # an archive repacked with `tar -C dir .` names every member ./something
    image = demo_image()
    entries: list[Entry] = [("./", DIR)]
    entries += [(f"./{name}", content) for name, content in skopeo_save(image)]

    result = import_entries(store, tmp_path, entries)

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(image)))
    ]


# --- skopeo-style symbolic links -----------------------------------------------------------


@pytest.mark.parametrize(
    ("layers_via_link", "links_first"),
    [(True, False), (True, True), (False, False)],
    ids=["manifest-names-link", "links-before-targets", "manifest-names-file"],
)
def test_skopeo_style_layer_links_resolve_inside_the_archive(
    store: Store, tmp_path: Path, layers_via_link: bool, links_first: bool
) -> None:
    image = demo_image()
    entries = skopeo_save(image, layers_via_link=layers_via_link, links_first=links_first)
    assert any(isinstance(content, Link) for _, content in entries)

    result = import_entries(store, tmp_path, entries)

    # the same content as the classic save: the same manifest, whatever the member layout
    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(image)))
    ]
    manifest = stored_manifest(store, "foo:1")
    assert [stored(store, entry["digest"]) for entry in manifest["layers"]] == image.layers


def test_duplicate_layer_linked_to_its_first_copy(store: Store, tmp_path: Path) -> None:
    # older docker stored a layer that appears twice once, and linked the second directory
    same = layer("dup.txt")
    image = DockerImage([same, layer("middle.txt"), same], ["foo:1"])
    entries = classic_save([image])
    first, _, last = image.v1_ids()
    entries = [
        (name, Link(f"../{first}/layer.tar") if name == f"{last}/layer.tar" else content)
        for name, content in entries
    ]

    result = import_entries(store, tmp_path, entries)

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(image)))
    ]
    assert len(stored_manifest(store, "foo:1")["layers"]) == 3


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("../../etc/passwd", "leaves the archive"),
        ("../../../../../../etc/passwd", "leaves the archive"),
        ("../0000000000000000000000000000000000000000000000000000000000000000.tar", "not a"),
        ("../", "not a"),
    ],
    ids=["escapes", "escapes-far", "missing-member", "directory"],
)
def test_layer_link_outside_the_archive_or_to_nothing_is_rejected(
    store: Store, tmp_path: Path, target: str, message: str
) -> None:
    image = demo_image()
    entries = [
        (name, Link(target) if isinstance(content, Link) else content)
        for name, content in skopeo_save(image)
    ]
    before = snapshot(store)

    with pytest.raises(InvalidArchiveError, match=message):
        import_entries(store, tmp_path, entries)

    assert snapshot(store) == before


def test_absolute_layer_link_is_rejected(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    entries = [
        (name, Link("/etc/passwd") if isinstance(content, Link) else content)
        for name, content in skopeo_save(image)
    ]

    with pytest.raises(InvalidArchiveError, match="symbolic link"):
        import_entries(store, tmp_path, entries)

    assert snapshot(store) == ([], set(), [])


# --- names ---------------------------------------------------------------------------------


def test_names_come_from_repositories_when_repo_tags_are_missing(
    store: Store, tmp_path: Path
) -> None:
    named = demo_image(["foo:1"])
    image = DockerImage(named.layers, None)
    repositories = repositories_file([named])

    result = import_entries(store, tmp_path, classic_save([image], repositories))

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(image)))
    ]
    assert result.warnings == []


def test_repositories_name_each_image_of_a_multi_image_archive_by_its_top_layer(
    store: Store, tmp_path: Path
) -> None:
    first_named = demo_image(["example.com/first:1"], seed="one")
    second_named = demo_image(["example.com/second:2"], seed="two")
    first = DockerImage(first_named.layers, None)
    second = DockerImage(second_named.layers, None)
    # listed in the opposite order, so position cannot stand in for the layer id
    repositories = repositories_file([second_named, first_named])

    result = import_entries(store, tmp_path, classic_save([first, second], repositories))

    assert sorted(names_and_digests(result)) == [
        ("example.com/first:1", digest_of(plain_manifest(first))),
        ("example.com/second:2", digest_of(plain_manifest(second))),
    ]


def test_no_names_at_all_imports_by_digest_with_a_warning(store: Store, tmp_path: Path) -> None:
    image = DockerImage(demo_image().layers, None)
    digest = digest_of(plain_manifest(image))

    result = import_entries(store, tmp_path, classic_save([image], b"{}"), name="nameless.tar")

    name = f"docker.io/library/nameless@{digest}"
    assert names_and_digests(result) == [(name, digest)]
    assert len(result.warnings) == 1
    assert digest in result.warnings[0]
    assert name in result.warnings[0]
    assert str(store.resolve(name).digest) == digest


def test_no_names_and_no_repositories_file(store: Store, tmp_path: Path) -> None:
    image = DockerImage(demo_image().layers, None)
    entries = [e for e in classic_save([image]) if e[0] != "repositories"]
    digest = digest_of(plain_manifest(image))

    result = import_entries(store, tmp_path, entries, base_name="example.com/imported")

    assert names_and_digests(result) == [(f"example.com/imported@{digest}", digest)]
    assert any(digest in warning for warning in result.warnings)


# --- crane: compressed layers --------------------------------------------------------------


def test_crane_gzip_layers_keep_their_bytes_and_gzip_type(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    blobs = [gzip.compress(data, mtime=0) for data in image.layers]
    expected = expected_manifest(image.config, [(DOCKER_LAYER_GZIP, blob) for blob in blobs])

    result = import_entries(
        store, tmp_path, crane_save(image, lambda d: gzip.compress(d, mtime=0), ".tar.gz")
    )

    assert names_and_digests(result) == [("docker.io/library/foo:1", digest_of(expected))]
    assert stored(store, digest_of(expected)) == expected
    manifest = stored_manifest(store, "foo:1")
    assert [stored(store, entry["digest"]) for entry in manifest["layers"]] == blobs


def test_crane_zstd_layers_are_labelled_zstd_never_gzip(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    compress = zstandard.ZstdCompressor(level=3).compress
    blobs = [compress(data) for data in image.layers]
    expected = expected_manifest(image.config, [(OCI_LAYER_ZSTD, blob) for blob in blobs])

    result = import_entries(store, tmp_path, crane_save(image, compress, ".tar.zst"))

    assert names_and_digests(result) == [("docker.io/library/foo:1", digest_of(expected))]
    manifest = stored_manifest(store, "foo:1")
    assert [entry["mediaType"] for entry in manifest["layers"]] == [OCI_LAYER_ZSTD] * 2
    assert DOCKER_LAYER_GZIP not in stored(store, digest_of(expected)).decode()


def test_mixed_layer_compressions_are_labelled_one_by_one(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    plain, zstd_blob = image.layers[0], zstandard.ZstdCompressor().compress(image.layers[1])
    config = image.config
    entries: list[Entry] = [
        (f"{hex_of(config)}.json", config),
        ("a.tar", plain),
        ("b.tar.zst", zstd_blob),
        (
            "manifest.json",
            dumps([manifest_item(image, f"{hex_of(config)}.json", ["a.tar", "b.tar.zst"])]),
        ),
    ]
    expected = expected_manifest(config, [(DOCKER_LAYER, plain), (OCI_LAYER_ZSTD, zstd_blob)])

    result = import_entries(store, tmp_path, entries)

    assert names_and_digests(result) == [("docker.io/library/foo:1", digest_of(expected))]


def test_xz_compressed_layer_is_refused(store: Store, tmp_path: Path) -> None:
    image = demo_image()

    with pytest.raises(InvalidArchiveError, match="xz compressed layers are not supported"):
        import_entries(store, tmp_path, crane_save(image, lzma.compress, ".tar.xz"))

    assert snapshot(store) == ([], set(), [])


# --- diff_ids ------------------------------------------------------------------------------


def test_diff_ids_count_mismatch_is_an_error(store: Store, tmp_path: Path) -> None:
    base = demo_image()
    image = DockerImage(base.layers, ["foo:1"], diff_ids_override=base.diff_ids[:1])

    with pytest.raises(InvalidArchiveError, match="2 layers but the config lists 1 diff_ids"):
        import_entries(store, tmp_path, classic_save([image]))

    assert snapshot(store) == ([], set(), [])


def test_uncompressed_layer_must_match_its_diff_id(store: Store, tmp_path: Path) -> None:
    base = demo_image()
    wrong = digest_of(b"some other layer")
    image = DockerImage(base.layers, ["foo:1"], diff_ids_override=[base.diff_ids[0], wrong])

    with pytest.raises(InvalidArchiveError, match=f"diff_id {wrong}.: content has digest"):
        import_entries(store, tmp_path, classic_save([image]))

    assert snapshot(store) == ([], set(), [])


# --- several images ------------------------------------------------------------------------


def test_multi_image_docker_archive_imports_every_image(store: Store, tmp_path: Path) -> None:
    shared = layer("shared/base.txt")
    first = DockerImage([shared, layer("first/app.txt")], ["foo:1"])
    second = DockerImage([shared, layer("second/app.txt")], ["example.com/bar:2"])

    result = import_entries(store, tmp_path, classic_save([first, second]))

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(first))),
        ("example.com/bar:2", digest_of(plain_manifest(second))),
    ]
    assert (
        stored_manifest(store, "foo:1")["layers"][0]
        == stored_manifest(store, "example.com/bar:2")["layers"][0]
    )
    # two manifests, two configs, three distinct layers
    assert result.blobs_written == 7


# --- OCI archives with a manifest.json -----------------------------------------------------


def test_docker25_hybrid_archive_uses_the_oci_index(store: Store, tmp_path: Path) -> None:
    entries, oci_digest = docker25_save(ArchiveBuilder(), "foo:1", "foo:latest")

    result = import_entries(store, tmp_path, entries)

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", oci_digest),
        ("docker.io/library/foo:latest", oci_digest),
    ]
    record = store.resolve("foo:1")
    assert record.media_type == OCI_MANIFEST
    # what the manifest.json route would have built instead
    manifest = json.loads(stored(store, oci_digest))
    config = stored(store, manifest["config"]["digest"])
    converted = expected_manifest(
        config, [(DOCKER_LAYER, stored(store, manifest["layers"][0]["digest"]))]
    )
    assert digest_of(converted) != oci_digest
    assert digest_of(converted) not in snapshot(store)[1]


def test_docker25_hybrid_archive_from_a_pipe(store: Store) -> None:
    entries, oci_digest = docker25_save(ArchiveBuilder(), "foo:1")

    with pipe_reader(tar_bytes(entries)) as reader:
        result = store.import_archive(reader)

    assert names_and_digests(result) == [("docker.io/library/foo:1", oci_digest)]


def test_containerd_store_save_imports_the_host_platform(store: Store, tmp_path: Path) -> None:
    saved = containerd_store_save()

    result = import_entries(store, tmp_path, saved.entries)

    assert names_and_digests(result) == [("docker.io/library/multi:1", saved.index)]
    assert store.resolve("multi:1").media_type == OCI_INDEX
    blobs = snapshot(store)[1]
    assert {saved.index, saved.host_manifest} <= blobs
    assert saved.other_manifest not in blobs
    assert saved.attestation not in blobs
    [info] = store.list_images()
    assert HOST in info.platforms


@pytest.mark.parametrize(
    "options",
    [{"platforms": [str(OTHER)]}, {"platforms": "all"}],
    ids=["other-platform", "all-platforms"],
)
def test_containerd_store_save_fails_for_platforms_it_lacks(
    store: Store, tmp_path: Path, options: dict[str, Any]
) -> None:
    saved = containerd_store_save()
    before = snapshot(store)

    with pytest.raises(InvalidArchiveError, match="missing") as caught:
        import_entries(store, tmp_path, saved.entries, **options)

    message = str(caught.value)
    assert saved.other_manifest in message
    assert "--platform" in message
    if options.get("platforms") == "all":
        assert saved.attestation in message  # every absent manifest is named, not the first
    assert snapshot(store) == before


def test_skip_missing_imports_what_is_there_and_marks_the_image_partial(
    store: Store, tmp_path: Path
) -> None:
    saved = containerd_store_save()

    result = import_entries(store, tmp_path, saved.entries, platforms="all", skip_missing=True)

    assert any("partially" in warning for warning in result.warnings)
    [info] = store.list_images()
    assert info.record.partial
    blobs = {f"sha256:{p.name}" for p in (store.root / "content/blobs/sha256").iterdir()}
    assert saved.host_manifest in blobs
    assert saved.other_manifest not in blobs


# --- compressed archives -------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(COMPRESSORS))
@pytest.mark.parametrize("source", ["path", "pipe"])
@pytest.mark.parametrize("streams", [1, 3], ids=["one-stream", "concatenated-streams"])
def test_compressed_archive_gives_the_same_image(
    store: Store, tmp_path: Path, kind: str, source: str, streams: int
) -> None:
    data, digest = oci_archive()
    suffix, compress = COMPRESSORS[kind]
    # parallel compressors (pigz, pzstd, pbzip2, pixz) write several streams back to back
    step = -(-len(data) // streams)
    packed = b"".join(compress(data[i : i + step]) for i in range(0, len(data), step))
    assert (packed == data) == (kind == "none")

    if source == "path":
        path = tmp_path / f"oci{suffix}"
        path.write_bytes(packed)
        result = store.import_archive(path)
    else:
        with pipe_reader(packed) as reader:
            result = store.import_archive(reader)

    assert names_and_digests(result) == [("example.com/shapes/oci:1", digest)]
    assert len(snapshot(store)[1]) == 4


def test_compressed_docker_archive_from_a_pipe(store: Store) -> None:
    image = demo_image()

    with pipe_reader(zstandard.ZstdCompressor().compress(tar_bytes(skopeo_save(image)))) as r:
        result = store.import_archive(r)

    assert names_and_digests(result) == [
        ("docker.io/library/foo:1", digest_of(plain_manifest(image)))
    ]


def populated(store: Store, tmp_path: Path) -> None:
    """Give *store* an unrelated image, so "unchanged" means more than "empty"."""
    import_entries(store, tmp_path, classic_save([demo_image(["keep:1"], seed="keep")]), "keep.tar")
    assert len(snapshot(store)[0]) == 1


@pytest.mark.parametrize("kind", ["gzip", "none"])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("source", ["path", "pipe"])
def test_truncated_archive_is_invalid_and_changes_nothing(
    store: Store, tmp_path: Path, kind: str, fraction: float, source: str
) -> None:
    populated(store, tmp_path)
    # incompressible content, so every cut lands inside some member's data
    builder = ArchiveBuilder()
    builder.add(builder.image(str(HOST), files={"noise": os.urandom(1 << 16)}), name="x.io/t:1")
    data = tar_bytes(oci_entries(builder))
    packed = COMPRESSORS[kind][1](data)
    cut = packed[: int(len(packed) * fraction)]
    before = snapshot(store)

    with pytest.raises(InvalidArchiveError):
        if source == "path":
            path = tmp_path / f"cut{COMPRESSORS[kind][0]}"
            path.write_bytes(cut)
            store.import_archive(path)
        else:
            with pipe_reader(cut) as reader:
                store.import_archive(reader)

    assert snapshot(store) == before


def test_gzip_with_corrupt_data_is_invalid(store: Store, tmp_path: Path) -> None:
    data, _ = oci_archive()
    packed = bytearray(gzip.compress(data, mtime=0))
    packed[len(packed) // 2] ^= 0xFF
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(packed))

    with pytest.raises(InvalidArchiveError):
        store.import_archive(path)

    assert snapshot(store) == ([], set(), [])


# --- layout directories --------------------------------------------------------------------


def test_oci_layout_directory_imports_like_its_tarball(tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.multi_platform([str(HOST), str(OTHER)])
    builder.add(desc, ref_name="1.0")
    layout = tmp_path / "my-layout"
    builder.write_layout(layout)

    with Store(tmp_path / "from-dir") as from_dir, Store(tmp_path / "from-tar") as from_tar:
        dir_result = from_dir.import_archive(layout, platforms="all")
        tar_result = from_tar.import_archive(
            builder.write(tmp_path / "my-layout.tar"), platforms="all"
        )

        assert names_and_digests(dir_result) == [
            ("docker.io/library/my-layout:1.0", desc["digest"])
        ]
        assert names_and_digests(tar_result) == names_and_digests(dir_result)
        assert snapshot(from_dir)[1] == snapshot(from_tar)[1] == set(builder.blobs)


def test_layout_directory_with_a_symlinked_blob_is_refused(tmp_path: Path, store: Store) -> None:
    builder = ArchiveBuilder()
    desc = builder.image(str(HOST))
    builder.add(desc, name="example.com/linked:1")
    layout = tmp_path / "layout"
    builder.write_layout(layout)
    victim = layout / "blobs" / desc["digest"].replace(":", "/")
    outside = tmp_path / "outside"
    outside.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(outside)

    with pytest.raises(InvalidArchiveError):
        store.import_archive(layout)

    assert snapshot(store) == ([], set(), [])


# --- digests do not depend on the store ----------------------------------------------------


def docker_blob_paths_save(image: DockerImage) -> list[Entry]:
    """A docker archive (no oci-layout) whose config and layers live under ``blobs/``."""
    config = image.config
    entries: list[Entry] = [("blobs/" + digest_of(config).replace(":", "/"), config)]
    paths = []
    for data in image.layers:
        path = "blobs/" + digest_of(data).replace(":", "/")
        entries.append((path, data))
        paths.append(path)
    item = manifest_item(image, entries[0][0], paths)
    return [*entries, ("manifest.json", dumps([item]))]


def shapes() -> dict[str, tuple[list[Entry], str]]:
    """Archives of the same images in several shapes, with the digest each must import as."""
    image = demo_image()
    zstd_image = demo_image(["zstd:1"], seed="zstd")
    compress = zstandard.ZstdCompressor().compress
    zstd_manifest = expected_manifest(
        zstd_image.config, [(OCI_LAYER_ZSTD, compress(d)) for d in zstd_image.layers]
    )
    hybrid, hybrid_digest = docker25_save(ArchiveBuilder(), "hybrid:1")
    data, oci_digest = oci_archive()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        oci: list[Entry] = []
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            oci.append((member.name, extracted.read()))
    return {
        "classic": (classic_save([image]), digest_of(plain_manifest(image))),
        "skopeo": (skopeo_save(image), digest_of(plain_manifest(image))),
        "blob-paths": (docker_blob_paths_save(image), digest_of(plain_manifest(image))),
        "zstd": (crane_save(zstd_image, compress, ".tar.zst"), digest_of(zstd_manifest)),
        "docker25": (hybrid, hybrid_digest),
        "oci": (oci, oci_digest),
    }


@pytest.mark.parametrize("shape", list(shapes()))
def test_same_content_same_digest_whatever_the_store_holds(tmp_path: Path, shape: str) -> None:
    entries, digest = shapes()[shape]
    archive = write_archive(tmp_path / f"{shape}.tar", entries)

    with Store(tmp_path / "fresh") as fresh:
        fresh_result = fresh.import_archive(archive)
        fresh_blobs = snapshot(fresh)[1]

    with Store(tmp_path / "busy") as busy:
        # every other shape first: the busy store already holds most of these blobs
        for other, (other_entries, _) in shapes().items():
            if other != shape:
                busy.import_archive(write_archive(tmp_path / f"other-{other}.tar", other_entries))
        held = snapshot(busy)[1]
        busy_result = busy.import_archive(archive)
        busy_blobs = snapshot(busy)[1]
        manifest = stored(busy, digest)

    assert [str(i.digest) for i in fresh_result.images] == [digest]
    assert [str(i.digest) for i in busy_result.images] == [digest]
    assert fresh_blobs <= busy_blobs
    assert digest_of(manifest) == digest
    if shape in ("classic", "skopeo", "blob-paths"):
        assert held & fresh_blobs, "the busy store should already have held shared blobs"


def test_reimport_into_the_same_store_is_unchanged(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    archive = write_archive(tmp_path / "again.tar", classic_save([image]))

    first = store.import_archive(archive)
    second = store.import_archive(archive)

    assert names_and_digests(first) == names_and_digests(second)
    assert [i.action for i in second.images] == ["unchanged"]
    assert second.blobs_written == 0


def test_a_stored_layer_that_is_a_symlink_is_not_followed_but_replaced(
    store: Store, tmp_path: Path
) -> None:
    """A docker archive's layer that the store holds is looked at in the store, not in the
    archive (its first bytes tell its media type): the store's copy must be its own regular
    file, not whatever a link there points to. A link is not trusted: the archive's layer is
    read and replaces it."""
    image = demo_image()
    archive = write_archive(tmp_path / "blob-paths.tar", docker_blob_paths_save(image))
    store.import_archive(archive)
    blob = store.blobs.path(Digest.parse(digest_of(image.layers[0])))
    copy = tmp_path / "copy"
    copy.write_bytes(blob.read_bytes())  # the same bytes: only the kind of file is wrong
    blob.unlink()
    blob.symlink_to(copy)
    copy.write_bytes(b"\0" * len(image.layers[0]))  # what the link shows is not the layer
    result = store.import_archive(archive)
    assert [i.action for i in result.images] == ["unchanged"]
    assert not blob.is_symlink()
    assert blob.read_bytes() == image.layers[0]
    assert copy.read_bytes() == b"\0" * len(image.layers[0])
    assert all(c.ok for c in store.check(verify=True))


def _zeroed_layers(entries: list[Entry]) -> list[Entry]:
    """The same archive with every layer's bytes replaced by as many zero bytes."""
    return [
        (name, bytes(len(data)) if name.endswith("layer.tar") and isinstance(data, bytes) else data)
        for name, data in entries
    ]


def test_docker_layers_the_store_holds_are_not_read(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    first = import_entries(store, tmp_path, classic_save([image]))
    # Layers whose bytes no longer match their diff_id: an archive file's layer that the store
    # holds under its config's diff_id is never read, so the damage cannot be seen...
    damaged = _zeroed_layers(classic_save([image]))

    second = import_entries(store, tmp_path, damaged, name="damaged.tar")

    assert names_and_digests(second) == names_and_digests(first)
    assert second.blobs_written == 0
    for data in image.layers:
        assert stored(store, digest_of(data)) == data
    # ...while an import that must read them refuses them.
    with Store(tmp_path / "fresh") as fresh, pytest.raises(InvalidArchiveError, match="diff_id"):
        fresh.import_archive(tmp_path / "damaged.tar")


def test_docker_layers_are_read_from_a_pipe_even_when_stored(store: Store, tmp_path: Path) -> None:
    image = demo_image()
    import_entries(store, tmp_path, classic_save([image]))

    with (
        pipe_reader(tar_bytes(_zeroed_layers(classic_save([image])))) as reader,
        pytest.raises(InvalidArchiveError, match="diff_id"),
    ):
        store.import_archive(reader)


def test_compressed_docker_layer_is_read_although_its_diff_id_is_stored(tmp_path: Path) -> None:
    image = demo_image()
    gzipped = crane_save(image, lambda data: gzip.compress(data, mtime=0), ".tar.gz")
    with Store(tmp_path / "fresh") as fresh:
        [expected] = fresh.import_archive(write_archive(tmp_path / "gz.tar", gzipped)).images

    with Store(tmp_path / "busy") as busy:
        import_entries(busy, tmp_path, classic_save([image]))  # the uncompressed layers
        [imported] = busy.import_archive(tmp_path / "gz.tar").images
        manifest = json.loads(stored(busy, imported.digest))

    assert imported.digest == expected.digest
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER_GZIP] * 2


def test_manifest_json_describes_the_host_platform_first(store: Store, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.multi_platform([str(OTHER), str(HOST)]), name="example.com/multi:1")
    store.import_archive(builder.write(tmp_path / "multi.tar"), platforms="all")
    out = tmp_path / "out.tar"

    store.export(out, ["example.com/multi:1"], platforms=[str(OTHER), str(HOST)])

    with tarfile.open(out) as tar:
        members = {m.name: tar.extractfile(m) for m in tar if m.isreg()}
        [entry] = json.loads(members["manifest.json"].read())  # type: ignore[union-attr]
        config = json.loads(members[entry["Config"]].read())  # type: ignore[union-attr]
    assert (config["os"], config["architecture"]) == (HOST.os, HOST.architecture)


# --- archives of very many members ---------------------------------------------------------

#: Bytes of memory an import may hold per member of an archive of tiny blobs (its name, and
#: the staged blob's digest and place: some 460 bytes) and per layer of an image (that, its
#: descriptor, and its share of the manifest and config being read: some 1,300 bytes).
PER_MEMBER = 1000
PER_LAYER = 2500


def _import_peak(tmp_path: Path, count: int, referenced: bool, source: str) -> int:
    """The peak of the memory Python allocated while importing an archive of *count* tiny
    blobs (a fresh store each time), the archive's own bytes not counted."""
    import tracemalloc

    from cargohold.limits import Limits

    directory = tmp_path / f"{count}-{referenced}-{source}"
    directory.mkdir()
    archive = write_many_members(
        directory / "many.tar", count, referenced=referenced, repository="example.com/many"
    )
    data = archive.read_bytes() if source == "pipe" else b""
    with Store(directory / "store") as store, pipe_reader(data) as pipe:
        tracemalloc.start()
        try:
            result = store.import_archive(
                pipe if source == "pipe" else archive, limits=Limits(document_bytes=8 << 20)
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        tags = -(-count // MANY_LAYERS) if referenced else 1
        assert [image.name for image in result.images] == [
            f"example.com/many:{tag}" for tag in range(tags)
        ]
        assert result.blobs_written == (count if referenced else 1) + 2 * tags
        assert len(list(store.blobs.iter_digests())) == result.blobs_written
        assert store.blobs.staging_names() == []
    return peak


@pytest.mark.parametrize("source", ["path", "pipe"])
@pytest.mark.parametrize(
    ("referenced", "count", "bound"),
    [(False, 1000, PER_MEMBER), (True, 500, PER_LAYER)],
    ids=["unreferenced-blobs", "layers"],
)
def test_memory_stays_flat_in_the_number_of_members(
    tmp_path: Path, source: str, referenced: bool, count: int, bound: int
) -> None:
    """Four times the members may cost only a small, fixed amount more per member: no header,
    future, path or lease transaction kept per member (tracemalloc counts what Python
    allocates, the same on every run, so the bound has room and no timing in it)."""
    _import_peak(tmp_path, 3, referenced, source)  # modules imported on first use
    small = _import_peak(tmp_path, count, referenced, source)
    large = _import_peak(tmp_path, 4 * count, referenced, source)
    assert (large - small) / (3 * count) < bound


# --- sizes claimed by headers --------------------------------------------------------------


def _import_limited(
    root: Path, archive: Path, source: str, file_size_limit: int
) -> subprocess.CompletedProcess[bytes]:
    """The real CLI importing *archive*, unable to make any file larger than the limit (as a
    disk that small would be): reserving what a header claims would fail."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    args = [sys.executable, "-m", "cargohold", "--root", str(root), "image", "import", "-q"]
    return subprocess.run(
        [*args, str(archive) if source == "path" else "-"],
        input=archive.read_bytes() if source == "pipe" else None,
        capture_output=True,
        preexec_fn=limit,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("source", ["path", "pipe"])
def test_a_header_claiming_gigabytes_reserves_nothing_it_cannot_fill(
    tmp_path: Path, source: str
) -> None:
    """A 3.5 KB archive whose blob member claims 8 GiB: from a file it is refused, naming the
    member, before anything is reserved; from a pipe, room is reserved a bounded step ahead
    of the bytes that arrive, and the member is found truncated."""
    name = "blobs/sha256/" + "a" * 64
    header = tarfile.TarInfo(name)
    header.size = 8 << 30
    archive = tmp_path / "claims.tar"
    archive.write_bytes(
        tar_bytes([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')], tail=b"")
        + header.tobuf(tarfile.GNU_FORMAT)
        + b"x" * 1024
    )

    proc = _import_limited(tmp_path / "root", archive, source, 256 << 20)

    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert stderr.startswith(f"cargohold: error: member '{name}': truncated"), stderr
    assert stderr.count("\n") == 1, stderr


def test_a_full_disk_during_an_import_is_reported_as_such(tmp_path: Path) -> None:
    """Not as a corrupt archive: the archive is fine, the store's disk is not."""
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"big": os.urandom(4 << 20)}), name="example.com/big:1")
    archive = builder.write(tmp_path / "big.tar")

    proc = _import_limited(tmp_path / "root", archive, "path", 1 << 20)

    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "File too large while writing it to the store" in stderr, stderr
    assert "corrupt" not in stderr, stderr
