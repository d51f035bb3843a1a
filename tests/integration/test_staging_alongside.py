"""Large blobs of an archive file staged alongside the next members (on another core).

An OCI layout's ``blobs/sha256/<hex>`` names its digest before the bytes are read, so a large
one is copied and hashed on a thread of its own while the import reads on. These tests hold
that to the same promises as any import: every blob verified before anything is committed, and
a wrong one refused with its digest named and the store left as it was, whichever thread
staged it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.errors import InvalidArchiveError
from cargohold.operations.store import Store
from cargohold.storage import writers
from cargohold.storage.ingest import ALONGSIDE_MIN
from imagefactory import OCI_CONFIG, OCI_MANIFEST, ArchiveBuilder, digest_of, dumps, write_tar
from snapshots import snapshot

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
NAME = "example.com/big/app:1"
#: Large enough to be staged alongside, small enough to keep the tests quick.
LAYER_SIZE = ALONGSIDE_MIN + 4096


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "root") as s:
        yield s


def layer_tar(seed: int) -> bytes:
    """An uncompressed layer tar of LAYER_SIZE-ish bytes that differs by *seed*."""
    data = seed.to_bytes(4, "big") + os.urandom(LAYER_SIZE - 4)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data{seed}.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def big_image(layers: int) -> tuple[ArchiveBuilder, list[bytes]]:
    builder = ArchiveBuilder()
    contents = [layer_tar(i) for i in range(layers)]
    descs = [builder.blob(data, OCI_LAYER) for data in contents]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(data) for data in contents]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": builder.blob(dumps(config), OCI_CONFIG),
        "layers": descs,
    }
    builder.add(builder.blob(dumps(manifest), OCI_MANIFEST), name=NAME)
    return builder, contents


def damaged(builder: ArchiveBuilder, layer: bytes) -> str:
    """Flip a byte in the middle of *layer*'s member, keeping its name; its digest."""
    digest = digest_of(layer)
    data = bytearray(layer)
    data[len(data) // 2] ^= 0x40
    builder.blobs[digest] = bytes(data)
    return digest


def test_large_layers_staged_alongside_are_stored_intact(store: Store, tmp_path: Path) -> None:
    builder, layers = big_image(3)
    archive = builder.write(tmp_path / "big.tar")

    result = store.import_archive(archive)

    assert [image.name for image in result.images] == [NAME]
    assert [check.status for check in store.check(verify=True)] == ["complete"]
    for data in layers:
        with store.read_content(digest_of(data), verify=True) as f:
            assert f.read() == data
    assert not list((store.root / "content" / "ingest").iterdir())


@pytest.mark.parametrize("which", [0, 1, 2], ids=["first", "second", "last"])
def test_a_wrong_large_layer_fails_the_import_and_leaves_the_store(
    store: Store, tmp_path: Path, which: int
) -> None:
    # The first large member is staged alongside, the second on the importing thread while
    # the first is hashed, the last alongside again or not: whichever is wrong, the import
    # fails naming it, and nothing it staged stays behind.
    builder, layers = big_image(3)
    bad = damaged(builder, layers[which])
    archive = builder.write(tmp_path / "bad.tar")
    before = snapshot(store)

    with pytest.raises(InvalidArchiveError, match=bad.split(":")[1]):
        store.import_archive(archive)

    assert snapshot(store) == before


def test_docker_layers_staged_alongside_are_stored_intact(store: Store, tmp_path: Path) -> None:
    # docker save (25 and later) writes layers as blobs/sha256/<hex> members named in
    # manifest.json: staged alongside like an OCI layout's, then sniffed for compression.
    layers = [layer_tar(i) for i in range(2)]
    config = dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(data) for data in layers]},
        }
    )

    def blob_name(data: bytes) -> str:
        return "blobs/" + digest_of(data).replace(":", "/")

    manifest = [
        {
            "Config": blob_name(config),
            "RepoTags": ["example.com/docker/app:1"],
            "Layers": [blob_name(data) for data in layers],
        }
    ]
    members = [(blob_name(data), data) for data in layers]
    members += [(blob_name(config), config), ("manifest.json", json.dumps(manifest).encode())]
    archive = write_tar(tmp_path / "docker.tar", members)

    result = store.import_archive(archive)

    assert [image.name for image in result.images] == ["example.com/docker/app:1"]
    assert [check.status for check in store.check(verify=True)] == ["complete"]
    for data in layers:
        with store.read_content(digest_of(data), verify=True) as f:
            assert f.read() == data


def classic_docker_archive(path: Path, layers: list[bytes], diff_ids: list[str]) -> Path:
    """A docker archive as ``docker save`` wrote it before version 25: ``<id>/layer.tar``."""
    config = dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    )
    names = [f"{digest_of(data).split(':')[1]}/layer.tar" for data in layers]
    manifest = [{"Config": "config.json", "RepoTags": ["example.com/classic:1"], "Layers": names}]
    members = list(zip(names, layers, strict=True))
    members += [("config.json", config), ("manifest.json", json.dumps(manifest).encode())]
    return write_tar(path, members)


def test_classic_docker_layers_are_staged_as_their_diff_ids(store: Store, tmp_path: Path) -> None:
    layers = [layer_tar(i) for i in range(3)]
    archive = classic_docker_archive(
        tmp_path / "classic.tar", layers, [digest_of(data) for data in layers]
    )

    store.import_archive(archive)

    assert [check.status for check in store.check(verify=True)] == ["complete"]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["first", "second", "last"])
def test_a_classic_docker_layer_unlike_its_diff_id_fails_the_import(
    store: Store, tmp_path: Path, which: int
) -> None:
    layers = [layer_tar(i) for i in range(3)]
    diff_ids = [digest_of(data) for data in layers]
    wrong = diff_ids[which] = digest_of(b"another layer")
    archive = classic_docker_archive(tmp_path / "classic.tar", layers, diff_ids)
    before = snapshot(store)

    with pytest.raises(InvalidArchiveError, match=f"diff_id {wrong}.: content has digest"):
        store.import_archive(archive)

    assert snapshot(store) == before


def test_a_failed_import_stops_a_large_blob_staged_alongside_at_its_next_chunk(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong member ends the import at once: a large layer being copied and hashed on
    another thread stops at its next chunk rather than running to its end first (a layer of
    several GB would hold the error, or Ctrl-C, for seconds)."""
    builder, layers = big_image(1)
    config = next(d for d, data in builder.blobs.items() if data.startswith(b'{"architecture"'))
    builder.blobs[config] = builder.blobs[config].replace(b"amd64", b"arm64")
    big = "blobs/sha256/" + digest_of(layers[0]).split(":")[1]
    members = builder.members()
    members = [m for m in members if m[0] == big] + [m for m in members if m[0] != big]
    archive = write_tar(tmp_path / "bad.tar", members)
    before = snapshot(store)
    cancelled = threading.Event()
    copied: list[int] = []
    real_copy, real_cancel = writers._copy, getattr(writers.Alongside, "cancel", None)

    def copy(source: writers.FileRange, fd: int, start: int, length: int) -> int:
        copied.append(start)
        if start:  # every chunk after the first waits until the import has given up
            assert cancelled.wait(timeout=10), "the failed import did not stop the copy"
        return real_copy(source, fd, start, length)

    def cancel(self: writers.Alongside) -> None:
        if real_cancel is not None:
            real_cancel(self)
        cancelled.set()

    monkeypatch.setattr(writers, "_copy", copy)
    monkeypatch.setattr(writers.Alongside, "cancel", cancel, raising=False)

    with pytest.raises(InvalidArchiveError, match=config.split(":")[1]):
        store.import_archive(archive)

    assert 2 * writers.PIPELINE_CHUNK not in copied  # nor the last chunk, of three
    assert snapshot(store) == before
